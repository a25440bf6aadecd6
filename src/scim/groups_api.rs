//! `/scim/v2/Groups`: the group endpoints, with membership changes taken out of PATCH and PUT and
//! applied as row changes.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::api::{
    ListParams, ScimClient, if_match, list_response, meta, not_modified, parse_body, schemas_of,
    scim_base, scim_json, search_params,
};
use super::error::{ScimError, ScimType};
use super::filter::{CompValue, CompareOp, Filter};
use super::groups::{self, Member, MemberChange, StoredGroup};
use super::patch::{self, Op, Operation};
use super::resource::{self, Document, Projection};
use super::schema::ResourceKind;
use super::store::etag;
use crate::config::BaseUrl;
use crate::db::Store;

const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/Groups", web::get().to(list))
        .route("/Groups", web::post().to(create))
        .route("/Groups/.search", web::post().to(search))
        .route("/Groups/{id}", web::get().to(get))
        .route("/Groups/{id}", web::put().to(replace))
        .route("/Groups/{id}", web::patch().to(patch_group))
        .route("/Groups/{id}", web::delete().to(delete));
}

/// Splits `members` out of a group body: the document without it, and the member ids.
fn split_members(input: &Value) -> Result<(Document, Vec<String>), ScimError> {
    let mut body = input.clone();
    let members = match body.as_object_mut() {
        Some(fields) => {
            let key = fields
                .keys()
                .find(|key| key.eq_ignore_ascii_case("members"))
                .cloned();
            key.and_then(|key| fields.remove(&key))
        }
        None => None,
    };
    let document = resource::normalize(ResourceKind::Group, &body)?;
    Ok((document, member_ids(members.as_ref())?))
}

/// The ids of a `members` value: `[{"value": "id", "type"?: ..., "$ref"?: ...}]`.
fn member_ids(members: Option<&Value>) -> Result<Vec<String>, ScimError> {
    let items = match members {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
        Some(single @ Value::Object(_)) => vec![single],
        Some(_) => {
            return Err(ScimError::invalid_value(
                "members must be an array of {\"value\": id}",
            ));
        }
    };
    items
        .into_iter()
        .map(|item| match item.get("value") {
            Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
            _ => Err(ScimError::invalid_value(
                "each member needs a value: the member's id",
            )),
        })
        .collect()
}

/// The ids a `members[...]` filter names: `value eq "id"`, joined by `or`.
fn filtered_ids(filter: &Filter) -> Result<Vec<String>, ScimError> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::String(id),
        } if path.name.eq_ignore_ascii_case("value") && path.sub.is_none() => Ok(vec![id.clone()]),
        Filter::Or(left, right) => {
            let mut ids = filtered_ids(left)?;
            ids.extend(filtered_ids(right)?);
            Ok(ids)
        }
        _ => Err(ScimError::bad(
            ScimType::InvalidPath,
            "a members filter names members by value eq \"id\", joined by or",
        )),
    }
}

fn is_members(name: &str) -> bool {
    name.eq_ignore_ascii_case("members")
        || name.eq_ignore_ascii_case("urn:ietf:params:scim:schemas:core:2.0:Group:members")
}

/// Takes membership operations out of a PATCH: what they do to members, and the other operations.
fn membership_operations(
    operations: Vec<Operation>,
) -> Result<(MemberChange, Vec<Operation>), ScimError> {
    let mut change = MemberChange::default();
    let mut others = Vec::new();
    for mut operation in operations {
        match &operation.path {
            Some(path) if path.attr.name.eq_ignore_ascii_case("members") => {
                if path.attr.sub.is_some() || path.sub.is_some() {
                    return Err(ScimError::bad(
                        ScimType::Mutability,
                        "member sub-attributes are immutable",
                    ));
                }
                match (operation.op, &path.filter) {
                    (Op::Remove, Some(filter)) => change.remove.extend(filtered_ids(filter)?),
                    // Entra without aadOptscim062020: remove exactly the members listed in the value.
                    (Op::Remove, None) if operation.value.is_some() => {
                        change.remove.extend(member_ids(operation.value.as_ref())?)
                    }
                    (Op::Remove, None) => change.remove_all = true,
                    (Op::Add, None) => change.add.extend(member_ids(operation.value.as_ref())?),
                    (Op::Replace, None) => {
                        change.replace = Some(member_ids(operation.value.as_ref())?)
                    }
                    (_, Some(_)) => {
                        return Err(ScimError::bad(
                            ScimType::InvalidPath,
                            "members filters apply to remove only",
                        ));
                    }
                }
            }
            None => {
                // A no-path value may carry members beside other attributes.
                if let Some(Value::Object(fields)) = operation.value.as_mut() {
                    let key = fields.keys().find(|key| is_members(key)).cloned();
                    if let Some(members) = key.and_then(|key| fields.remove(&key)) {
                        let ids = member_ids(Some(&members))?;
                        match operation.op {
                            Op::Replace => change.replace = Some(ids),
                            _ => change.add.extend(ids),
                        }
                    }
                    if fields.is_empty() {
                        continue;
                    }
                }
                others.push(operation);
            }
            Some(_) => others.push(operation),
        }
    }
    Ok((change, others))
}

fn render(base: &str, group: &StoredGroup, members: &[Member], projection: &Projection) -> Value {
    let kind = ResourceKind::Group;
    let document = group.document();
    let mut out = Document::new();
    out.insert("schemas".into(), schemas_of(kind, &document));
    out.insert("id".into(), json!(group.id));
    out.extend(document);
    if projection.wants(kind, "members") {
        let members: Vec<Value> = members
            .iter()
            .filter(|member| member.group_id == group.id)
            .map(|member| {
                let endpoint = if member.member_type == "User" {
                    "Users"
                } else {
                    "Groups"
                };
                let mut value = json!({
                    "value": member.member_id,
                    "$ref": format!("{base}/{endpoint}/{}", member.member_id),
                    "type": member.member_type,
                });
                if let Some(display) = &member.display {
                    value["display"] = json!(display);
                }
                value
            })
            .collect();
        out.insert("members".into(), Value::Array(members));
    }
    out.insert(
        "meta".into(),
        meta(
            base,
            kind,
            &group.id,
            &group.created_at,
            &group.updated_at,
            group.version,
        ),
    );
    Value::Object(projection.apply(kind, out))
}

fn respond(
    status: StatusCode,
    base: &str,
    group: &StoredGroup,
    members: &[Member],
    projection: &Projection,
) -> HttpResponse {
    let mut response = scim_json(status, &render(base, group, members, projection));
    response.headers_mut().insert(
        header::ETAG,
        etag(group.version)
            .parse()
            .expect("an ETag is a valid header"),
    );
    if status == StatusCode::CREATED {
        let location = format!("{base}/Groups/{}", group.id);
        response.headers_mut().insert(
            header::LOCATION,
            location.parse().expect("a URL is a valid header"),
        );
    }
    response
}

async fn list(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    let params = web::Query::<ListParams>::from_query(request.query_string())
        .map_err(|e| ScimError::invalid_value(format!("invalid query string: {e}")))?
        .into_inner();
    page(client, store, base_url, params).await
}

async fn search(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    page(client, store, base_url, search_params(&body)?).await
}

async fn page(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    params: ListParams,
) -> Result<HttpResponse, ScimError> {
    let (page, start_index) = params.page(&client.workspace_id, ResourceKind::Group)?;
    let projection = params.projection();
    let wants_members = projection.wants(ResourceKind::Group, "members");
    let workspace_id = client.workspace_id;
    let (total, found, members) = store
        .run(move |conn| {
            let (total, found) = groups::list(conn, &workspace_id, &page)?;
            let ids: Vec<String> = found.iter().map(|group| group.id.clone()).collect();
            let members = if wants_members && !ids.is_empty() {
                groups::members_of(conn, &ids)?
            } else {
                Vec::new()
            };
            Ok::<_, ScimError>((total, found, members))
        })
        .await?;
    let base = scim_base(&base_url);
    Ok(list_response(
        total,
        start_index,
        found
            .iter()
            .map(|group| render(&base, group, &members, &projection))
            .collect(),
    ))
}

async fn get(
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
    let wants_members = projection.wants(ResourceKind::Group, "members");
    let workspace_id = client.workspace_id;
    let (group, members) = store
        .run(move |conn| {
            let group = groups::load(conn, &workspace_id, &id)?;
            let members = if wants_members {
                groups::members_of(conn, std::slice::from_ref(&group.id))?
            } else {
                Vec::new()
            };
            Ok::<_, ScimError>((group, members))
        })
        .await?;
    if not_modified(request.headers(), group.version) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag(group.version)))
            .finish());
    }
    Ok(respond(
        StatusCode::OK,
        &scim_base(&base_url),
        &group,
        &members,
        &projection,
    ))
}

async fn create(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let (document, member_ids) = split_members(&parse_body(&body)?)?;
    let ScimClient {
        workspace_id,
        audit,
    } = client;
    let (group, members) = store
        .run(move |conn| {
            let group = groups::create(conn, &workspace_id, document, member_ids, &audit)?;
            let members = groups::members_of(conn, std::slice::from_ref(&group.id))?;
            Ok::<_, ScimError>((group, members))
        })
        .await?;
    Ok(respond(
        StatusCode::CREATED,
        &scim_base(&base_url),
        &group,
        &members,
        &Projection::default(),
    ))
}

async fn replace(
    client: ScimClient,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let (document, member_ids) = split_members(&parse_body(&body)?)?;
    let expected = if_match(request.headers());
    let ScimClient {
        workspace_id,
        audit,
    } = client;
    let (group, members) = store
        .run(move |conn| {
            let change = MemberChange {
                replace: Some(member_ids),
                ..MemberChange::default()
            };
            let group = groups::update(
                conn,
                &workspace_id,
                &id,
                expected.as_deref(),
                &audit,
                |_| Ok((document, change)),
            )?;
            let members = groups::members_of(conn, std::slice::from_ref(&group.id))?;
            Ok::<_, ScimError>((group, members))
        })
        .await?;
    Ok(respond(
        StatusCode::OK,
        &scim_base(&base_url),
        &group,
        &members,
        &Projection::default(),
    ))
}

/// Answers 204: IdPs do not need the group back, and a large member list should not be echoed.
async fn patch_group(
    client: ScimClient,
    store: web::Data<Store>,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let operations = patch::parse_request(&parse_body(&body)?, PATCH_SCHEMA)?;
    let (change, others) = membership_operations(operations)?;
    let expected = if_match(request.headers());
    let ScimClient {
        workspace_id,
        audit,
    } = client;
    let group = store
        .run(move |conn| {
            groups::update(
                conn,
                &workspace_id,
                &id,
                expected.as_deref(),
                &audit,
                |current| {
                    let document = if others.is_empty() {
                        current.document()
                    } else {
                        patch::apply(ResourceKind::Group, current.document(), &others)?
                    };
                    Ok((document, change))
                },
            )
        })
        .await?;
    Ok(HttpResponse::NoContent()
        .insert_header((header::ETAG, etag(group.version)))
        .finish())
}

async fn delete(
    client: ScimClient,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    let ScimClient {
        workspace_id,
        audit,
    } = client;
    store
        .run(move |conn| groups::delete(conn, &workspace_id, &id, &audit))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
