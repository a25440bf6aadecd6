//! The SCIM HTTP endpoints under `/scim/v2`. The bearer token (scope `scim`) decides the workspace.

use actix_web::dev::{Payload, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing_actix_web::RequestId;

use super::error::{MEDIA_TYPE, ScimError, ScimType};
use super::filter::{self, parse_filter};
use super::resource::{self, Document, Projection};
use super::schema::{self, ResourceKind};
use super::store::{Page, etag, matches_version};
use super::users::{self, StoredUser};
use super::{patch, query};
use crate::audit::{Actor, AuditContext};
use crate::config::BaseUrl;
use crate::db::Store;
use crate::tokens::Scope;
use crate::tokens::auth::{AuthError, authenticate_request};

const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const DEFAULT_COUNT: i64 = 100;
pub const MAX_COUNT: i64 = 1000;
/// Request bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 1024 * 1024;

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/scim/v2")
            .wrap(ErrorHandlers::new().default_handler(scim_error_body))
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route(
                "/ServiceProviderConfig",
                web::get().to(service_provider_config),
            )
            .route("/ResourceTypes", web::get().to(resource_types))
            .route("/ResourceTypes/{id}", web::get().to(resource_type))
            .route("/Schemas", web::get().to(schemas))
            .route("/Schemas/{id}", web::get().to(schema_by_id))
            .route("/Users", web::get().to(list_users))
            .route("/Users", web::post().to(create_user))
            .route("/Users/.search", web::post().to(search_users))
            .route("/Users/{id}", web::get().to(get_user))
            .route("/Users/{id}", web::put().to(replace_user))
            .route("/Users/{id}", web::patch().to(patch_user))
            .route("/Users/{id}", web::delete().to(delete_user))
            .configure(super::groups_api::routes)
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ScimError::NotFound("no such SCIM endpoint".to_owned()))
            })),
    );
}

/// Errors raised before a SCIM handler runs (a body over the limit, a wrong method) come from actix
/// as plain text; they get the SCIM Error body like every other SCIM error.
fn scim_error_body<B>(response: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_scim = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == MEDIA_TYPE);
    if is_scim {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let status = response.status();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ScimError::PayloadTooLarge(format!("the request body is larger than {MAX_BODY} bytes"))
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            ScimError::Http(status, "method not allowed here".to_owned())
        }
        status => ScimError::Http(
            status,
            status.canonical_reason().unwrap_or("error").to_owned(),
        ),
    };
    let (request, _) = response.into_parts();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, error.error_response()).map_into_right_body(),
    ))
}

/// A request authenticated by a token with the `scim` scope; its workspace is the token's.
pub struct ScimClient {
    pub workspace_id: String,
    pub audit: AuditContext,
}

impl FromRequest for ScimClient {
    type Error = ScimError;
    type Future = LocalBoxFuture<'static, Result<Self, ScimError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let (token, workspace) = authenticate_request(&request).await?;
            if !token.scopes.contains(Scope::Scim) {
                return Err(AuthError::MissingScope(Scope::Scim).into());
            }
            let request_id = request
                .extensions()
                .get::<RequestId>()
                .map(ToString::to_string);
            Ok(ScimClient {
                workspace_id: workspace.id,
                audit: AuditContext {
                    actor: Actor::Token(token.id),
                    request_id,
                },
            })
        })
    }
}

/// `{base}/scim/v2`, the prefix of every `meta.location`.
pub fn scim_base(base_url: &BaseUrl) -> String {
    format!("{}/scim/v2", base_url.as_str())
}

pub fn scim_json(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(MEDIA_TYPE)
        .body(body.to_string())
}

/// Parses a request body, accepting `application/scim+json` and `application/json`.
pub fn parse_body(body: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(body).map_err(|e| {
        ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

pub fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// 304 when `If-None-Match` names the current version.
pub fn not_modified(headers: &HeaderMap, version: i64) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| matches_version(tag.trim(), version))
        })
}

/// The list parameters shared by GET (query string) and POST `.search` (body).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub filter: Option<String>,
    pub start_index: Option<Value>,
    pub count: Option<Value>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub attributes: Option<Value>,
    pub excluded_attributes: Option<Value>,
}

impl ListParams {
    /// Query-string values arrive as text; `.search` bodies as JSON numbers and arrays.
    fn integer(value: &Option<Value>, name: &str) -> Result<Option<i64>, ScimError> {
        match value {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
            Some(Value::String(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer"))),
            Some(_) => Err(ScimError::invalid_value(format!(
                "{name} must be an integer"
            ))),
        }
    }

    fn list(value: &Option<Value>) -> Option<String> {
        match value {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        }
    }

    pub fn projection(&self) -> Projection {
        Projection::parse(
            Self::list(&self.attributes).as_deref(),
            Self::list(&self.excluded_attributes).as_deref(),
        )
    }

    /// Checks the parameters and turns them into SQL over `kind`'s resources in the workspace.
    pub fn page(&self, workspace_id: &str, kind: ResourceKind) -> Result<(Page, i64), ScimError> {
        let scope = query::Scope { workspace_id, kind };
        let condition = match self
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            Some(text) => {
                let parsed = parse_filter(text).map_err(|e| {
                    ScimError::bad(ScimType::InvalidFilter, format!("invalid filter {e}"))
                })?;
                Some(query::condition(scope, &parsed)?)
            }
            None => None,
        };
        let sort = match self.sort_by.as_deref() {
            Some(path) => {
                let parsed = filter::parse_path(path)
                    .ok()
                    .filter(|p| p.filter.is_none())
                    .ok_or_else(|| ScimError::invalid_value(format!("cannot sort by {path:?}")))?;
                let (missing_last, key) = query::sort_key(scope, &parsed.attr)?;
                let descending = match self
                    .sort_order
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("ascending") => false,
                    Some("descending") => true,
                    Some(other) => {
                        return Err(ScimError::invalid_value(format!(
                            "sortOrder {other:?} must be ascending or descending"
                        )));
                    }
                };
                Some((missing_last, key, descending))
            }
            None => None,
        };
        // RFC 7644 §3.4.2.4: startIndex below 1 means 1; a negative count means 0.
        let start_index = Self::integer(&self.start_index, "startIndex")?
            .unwrap_or(1)
            .max(1);
        let count = Self::integer(&self.count, "count")?
            .unwrap_or(DEFAULT_COUNT)
            .clamp(0, MAX_COUNT);
        Ok((
            Page {
                condition,
                sort,
                offset: start_index - 1,
                limit: count,
            },
            start_index,
        ))
    }
}

pub fn list_response(total: i64, start_index: i64, resources: Vec<Value>) -> HttpResponse {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

fn location(base: &str, kind: ResourceKind, id: &str) -> String {
    format!("{base}/{}/{id}", kind.endpoint())
}

pub fn meta(
    base: &str,
    kind: ResourceKind,
    id: &str,
    created: &chrono::NaiveDateTime,
    updated: &chrono::NaiveDateTime,
    version: i64,
) -> Value {
    json!({
        "resourceType": kind.name(),
        "created": crate::time::rfc3339(created),
        "lastModified": crate::time::rfc3339(updated),
        "location": location(base, kind, id),
        "version": etag(version),
    })
}

/// The `schemas` of a response: the core schema, then each extension the document uses.
pub fn schemas_of(kind: ResourceKind, document: &Document) -> Value {
    let mut schemas = vec![kind.core_schema()];
    schemas.extend(
        kind.extensions()
            .iter()
            .map(|(urn, _)| *urn)
            .filter(|urn| document.contains_key(*urn)),
    );
    json!(schemas)
}

fn render_user(
    base: &str,
    user: &StoredUser,
    groups: &[(String, String, String)],
    projection: &Projection,
) -> Value {
    let kind = ResourceKind::User;
    let document = user.document();
    let mut out = Document::new();
    out.insert("schemas".into(), schemas_of(kind, &document));
    out.insert("id".into(), json!(user.id));
    out.extend(document);
    let groups: Vec<Value> = groups
        .iter()
        .filter(|(member, _, _)| *member == user.id)
        .map(|(_, id, display)| json!({ "value": id, "$ref": location(base, ResourceKind::Group, id), "display": display, "type": "direct" }))
        .collect();
    if !groups.is_empty() {
        out.insert("groups".into(), Value::Array(groups));
    }
    out.insert(
        "meta".into(),
        meta(
            base,
            kind,
            &user.id,
            &user.created_at,
            &user.updated_at,
            user.version,
        ),
    );
    Value::Object(projection.apply(kind, out))
}

fn user_response(
    status: StatusCode,
    base: &str,
    user: &StoredUser,
    groups: &[(String, String, String)],
    projection: &Projection,
) -> HttpResponse {
    let mut response = scim_json(status, &render_user(base, user, groups, projection));
    response.headers_mut().insert(
        header::ETAG,
        etag(user.version)
            .parse()
            .expect("an ETag is a valid header"),
    );
    if status == StatusCode::CREATED {
        let location = location(base, ResourceKind::User, &user.id);
        response.headers_mut().insert(
            header::LOCATION,
            location.parse().expect("a URL is a valid header"),
        );
    }
    response
}

async fn service_provider_config(base_url: web::Data<BaseUrl>) -> HttpResponse {
    let base = scim_base(&base_url);
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{}/", base_url.as_str()),
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": MAX_COUNT },
            "changePassword": { "supported": false },
            "sort": { "supported": true },
            "etag": { "supported": true },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "An idgate API token with the scim scope, sent as Authorization: Bearer TOKEN.",
                "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig") },
        }),
    )
}

async fn resource_types(_: ScimClient, base_url: web::Data<BaseUrl>) -> HttpResponse {
    let types = schema::resource_type_documents(&scim_base(&base_url));
    list_response(types.len() as i64, 1, types)
}

async fn resource_type(
    _: ScimClient,
    base_url: web::Data<BaseUrl>,
    id: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    schema::resource_type_documents(&scim_base(&base_url))
        .into_iter()
        .find(|document| document["id"] == id.as_str())
        .map(|document| scim_json(StatusCode::OK, &document))
        .ok_or_else(|| ScimError::NotFound(format!("no resource type {id}")))
}

async fn schemas(_: ScimClient, base_url: web::Data<BaseUrl>) -> HttpResponse {
    let documents = schema::schema_documents(&scim_base(&base_url));
    list_response(documents.len() as i64, 1, documents)
}

async fn schema_by_id(
    _: ScimClient,
    base_url: web::Data<BaseUrl>,
    id: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    schema::schema_documents(&scim_base(&base_url))
        .into_iter()
        .find(|document| document["id"] == id.as_str())
        .map(|document| scim_json(StatusCode::OK, &document))
        .ok_or_else(|| ScimError::NotFound(format!("no schema {id}")))
}

async fn list_users(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    let params = web::Query::<ListParams>::from_query(request.query_string())
        .map_err(|e| ScimError::invalid_value(format!("invalid query string: {e}")))?
        .into_inner();
    users_page(client, store, base_url, params).await
}

async fn search_users(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    users_page(client, store, base_url, search_params(&body)?).await
}

pub fn search_params(body: &[u8]) -> Result<ListParams, ScimError> {
    let value = parse_body(body)?;
    let schemas_ok = value["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == SEARCH_SCHEMA));
    if !schemas_ok {
        return Err(ScimError::invalid_value(format!(
            "a search request names the schema {SEARCH_SCHEMA}"
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| ScimError::invalid_value(format!("invalid search request: {e}")))
}

async fn users_page(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    params: ListParams,
) -> Result<HttpResponse, ScimError> {
    let (page, start_index) = params.page(&client.workspace_id, ResourceKind::User)?;
    let projection = params.projection();
    let wants_groups = projection.wants(ResourceKind::User, "groups");
    let workspace_id = client.workspace_id;
    let (total, found, groups) = store
        .run(move |conn| {
            let (total, found) = users::list(conn, &workspace_id, &page)?;
            let ids: Vec<String> = found.iter().map(|user| user.id.clone()).collect();
            let groups = if wants_groups && !ids.is_empty() {
                users::groups_of(conn, &ids)?
            } else {
                Vec::new()
            };
            Ok::<_, ScimError>((total, found, groups))
        })
        .await?;
    let base = scim_base(&base_url);
    let resources = found
        .iter()
        .map(|user| render_user(&base, user, &groups, &projection))
        .collect();
    Ok(list_response(total, start_index, resources))
}

async fn get_user(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    let params = web::Query::<ListParams>::from_query(request.query_string())
        .map_err(|e| ScimError::invalid_value(format!("invalid query string: {e}")))?
        .into_inner();
    let projection = params.projection();
    let workspace_id = client.workspace_id;
    let (user, groups) = store
        .run(move |conn| {
            let user = users::load(conn, &workspace_id, &id)?;
            let groups = users::groups_of(conn, std::slice::from_ref(&user.id))?;
            Ok::<_, ScimError>((user, groups))
        })
        .await?;
    if not_modified(request.headers(), user.version) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag(user.version)))
            .finish());
    }
    Ok(user_response(
        StatusCode::OK,
        &scim_base(&base_url),
        &user,
        &groups,
        &projection,
    ))
}

async fn create_user(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let document = resource::normalize(ResourceKind::User, &parse_body(&body)?)?;
    let ScimClient {
        workspace_id,
        audit,
    } = client;
    let user = store
        .run(move |conn| users::create(conn, &workspace_id, document, &audit))
        .await?;
    Ok(user_response(
        StatusCode::CREATED,
        &scim_base(&base_url),
        &user,
        &[],
        &Projection::default(),
    ))
}

async fn replace_user(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let input = parse_body(&body)?;
    let document = resource::normalize(ResourceKind::User, &input)?;
    let expected = if_match(request.headers());
    let ScimClient {
        workspace_id,
        audit,
    } = client;
    let (user, groups) = store
        .run(move |conn| {
            // PUT replaces every writable attribute; read-only ones were dropped by normalize.
            let user = users::update(
                conn,
                &workspace_id,
                &id,
                expected.as_deref(),
                &audit,
                |_| Ok(document),
            )?;
            let groups = users::groups_of(conn, std::slice::from_ref(&user.id))?;
            Ok::<_, ScimError>((user, groups))
        })
        .await?;
    Ok(user_response(
        StatusCode::OK,
        &scim_base(&base_url),
        &user,
        &groups,
        &Projection::default(),
    ))
}

async fn patch_user(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let operations = patch::parse_request(&parse_body(&body)?, PATCH_SCHEMA)?;
    let expected = if_match(request.headers());
    let ScimClient {
        workspace_id,
        audit,
    } = client;
    let (user, groups) = store
        .run(move |conn| {
            let user = users::update(
                conn,
                &workspace_id,
                &id,
                expected.as_deref(),
                &audit,
                |current| patch::apply(ResourceKind::User, current.document(), &operations),
            )?;
            let groups = users::groups_of(conn, std::slice::from_ref(&user.id))?;
            Ok::<_, ScimError>((user, groups))
        })
        .await?;
    Ok(user_response(
        StatusCode::OK,
        &scim_base(&base_url),
        &user,
        &groups,
        &Projection::default(),
    ))
}

async fn delete_user(
    client: ScimClient,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    let ScimClient {
        workspace_id,
        audit,
    } = client;
    store
        .run(move |conn| users::delete(conn, &workspace_id, &id, &audit))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
