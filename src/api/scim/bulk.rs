//! `POST /Bulk` (RFC 7644 §3.7): several operations in one request, each run as the same request
//! sent alone would run, in order. `bulkId:` references in later operations' paths and data are
//! replaced by the ids earlier operations created.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::actions::{self, Context, Reply};
use super::{parse_body, scim_json};
use crate::scim::error::{ScimError, ScimType};
use crate::scim::schema::ResourceKind;

pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkRequest {
    schemas: Vec<String>,
    fail_on_errors: Option<i64>,
    #[serde(rename = "Operations")]
    operations: Vec<BulkOperation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkOperation {
    method: String,
    bulk_id: Option<String>,
    version: Option<String>,
    path: String,
    data: Option<Value>,
}

pub async fn bulk(ctx: Context, body: web::Bytes) -> Result<HttpResponse, ScimError> {
    let request: BulkRequest = serde_json::from_value(parse_body(&body)?)
        .map_err(|e| ScimError::invalid_value(format!("invalid bulk request: {e}")))?;
    if !request.schemas.iter().any(|schema| schema == BULK_REQUEST) {
        return Err(ScimError::invalid_value(format!(
            "a bulk request names the schema {BULK_REQUEST}"
        )));
    }
    if request.operations.len() > MAX_OPERATIONS {
        return Err(ScimError::PayloadTooLarge(format!(
            "at most {MAX_OPERATIONS} operations per bulk request"
        )));
    }
    let fail_on_errors = request
        .fail_on_errors
        .filter(|n| *n > 0)
        .map(|n| n as usize);
    let mut created: HashMap<String, String> = HashMap::new();
    let mut results = Vec::new();
    let mut errors = 0;
    for operation in &request.operations {
        if fail_on_errors.is_some_and(|limit| errors >= limit) {
            break;
        }
        let outcome = run(&ctx, operation, &created).await;
        let mut result = json!({ "method": operation.method.to_ascii_uppercase() });
        if let Some(bulk_id) = &operation.bulk_id {
            result["bulkId"] = json!(bulk_id);
        }
        match outcome {
            Ok(reply) => {
                if let (Some(bulk_id), Some(body)) = (&operation.bulk_id, &reply.body)
                    && let Some(id) = body["id"].as_str()
                {
                    created.insert(bulk_id.clone(), id.to_owned());
                }
                result["status"] = json!(reply.status.as_u16().to_string());
                if let Some(location) = &reply.location {
                    result["location"] = json!(location);
                }
                if let Some(version) = reply.version {
                    result["version"] = json!(crate::directory::store::etag(version));
                }
            }
            Err(error) => {
                errors += 1;
                result["status"] = json!(error.status_code().as_u16().to_string());
                result["response"] = error_body(&error);
            }
        }
        results.push(result);
    }
    Ok(scim_json(
        StatusCode::OK,
        &json!({ "schemas": [BULK_RESPONSE], "Operations": results }),
    ))
}

fn error_body(error: &ScimError) -> Value {
    let response = error.error_response();
    let body = response.into_body();
    match actix_web::body::MessageBody::try_into_bytes(body) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn run(
    ctx: &Context,
    operation: &BulkOperation,
    created: &HashMap<String, String>,
) -> Result<Reply, ScimError> {
    let path = resolve_text(&operation.path, created)?;
    let data = operation
        .data
        .as_ref()
        .map(|data| resolve(data, created))
        .transpose()?;
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let kind = match segments.next() {
        Some("Users") => ResourceKind::User,
        Some("Groups") => ResourceKind::Group,
        _ => {
            return Err(ScimError::bad(
                ScimType::InvalidPath,
                format!("bulk paths start /Users or /Groups, got {path:?}"),
            ));
        }
    };
    let id = segments
        .next()
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let data = || {
        data.as_ref()
            .ok_or_else(|| ScimError::invalid_value(format!("{} needs data", operation.method)))
    };
    let version = operation.version.clone();
    let (operation, result) = match (operation.method.to_ascii_uppercase().as_str(), id) {
        ("POST", None) => ("create", actions::create(ctx, kind, data()?).await),
        ("PUT", Some(id)) => (
            "replace",
            actions::replace(ctx, kind, id, data()?, version).await,
        ),
        ("PATCH", Some(id)) => (
            "patch",
            actions::patch(ctx, kind, id, data()?, version).await,
        ),
        ("DELETE", Some(id)) => ("delete", actions::delete(ctx, kind, id).await),
        (method, _) => {
            return Err(ScimError::invalid_value(format!(
                "{method} {path} is not a bulk operation"
            )));
        }
    };
    actions::count_write(kind, operation, &result);
    result
}

/// Replaces `bulkId:NAME` with the id the operation with that bulkId created.
fn resolve_text(text: &str, created: &HashMap<String, String>) -> Result<String, ScimError> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("bulkId:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "bulkId:".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(after.len());
        let name = &after[..end];
        let id = created.get(name).ok_or_else(|| {
            ScimError::bad(
                ScimType::InvalidValue,
                format!(
                    "bulkId:{name} names no operation that has run successfully before this one"
                ),
            )
        })?;
        out.push_str(id);
        rest = &after[end..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(value: &Value, created: &HashMap<String, String>) -> Result<Value, ScimError> {
    Ok(match value {
        Value::String(text) => Value::String(resolve_text(text, created)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| resolve(item, created))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, created)?)))
                .collect::<Result<_, ScimError>>()?,
        ),
        other => other.clone(),
    })
}
