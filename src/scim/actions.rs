//! What each SCIM request does, apart from HTTP: the handlers and `/Bulk` both call these, so a
//! bulk operation behaves exactly as the same request sent alone.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use super::error::{ScimError, ScimType};
use super::filter::{CompValue, CompareOp, Filter};
use super::groups::{self, Member, MemberChange, StoredGroup};
use super::patch::{self, Op, Operation};
use super::resource::{self, Document, Projection};
use super::schema::ResourceKind;
use super::store::{Page, etag};
use super::users::{self, StoredUser};
use crate::audit::AuditContext;
use crate::db::Store;

pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Who is asking, in which workspace, and where resources live (`{base_url}/scim/v2`).
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub base: String,
    pub workspace_id: String,
    pub audit: AuditContext,
}

/// The outcome of an action: status, body, and the resource's version and location where there is one.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub version: Option<i64>,
    pub location: Option<String>,
}

impl Reply {
    fn resource(status: StatusCode, body: Value, version: i64) -> Reply {
        let location = body["meta"]["location"].as_str().map(str::to_owned);
        Reply {
            status,
            body: Some(body),
            version: Some(version),
            location,
        }
    }
}

pub fn location(base: &str, kind: ResourceKind, id: &str) -> String {
    format!("{base}/{}/{id}", kind.endpoint())
}

fn meta(
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
fn schemas_of(kind: ResourceKind, document: &Document) -> Value {
    let mut schemas = vec![kind.core_schema()];
    schemas.extend(
        kind.extensions()
            .iter()
            .map(|(urn, _)| *urn)
            .filter(|urn| document.contains_key(*urn)),
    );
    json!(schemas)
}

fn envelope(kind: ResourceKind, id: &str, document: Document) -> Document {
    let mut out = Document::new();
    out.insert("schemas".into(), schemas_of(kind, &document));
    out.insert("id".into(), json!(id));
    out.extend(document);
    out
}

/// A user as returned; `groups` holds (user id, group id, group name) rows, any user's.
pub fn render_user(
    base: &str,
    user: &StoredUser,
    groups: &[(String, String, String)],
    projection: &Projection,
) -> Value {
    let kind = ResourceKind::User;
    let mut out = envelope(kind, &user.id, user.document());
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

pub fn render_member(base: &str, member: &Member) -> Value {
    let kind = if member.member_type == "User" {
        ResourceKind::User
    } else {
        ResourceKind::Group
    };
    json!({ "value": member.member_id, "$ref": location(base, kind, &member.member_id), "type": member.member_type })
}

/// A group as returned; `members` holds membership rows, any group's. With `members` None the
/// attribute is left out (the caller streams it, or the projection excludes it).
pub fn render_group(
    base: &str,
    group: &StoredGroup,
    members: Option<&[Member]>,
    projection: &Projection,
) -> Value {
    let kind = ResourceKind::Group;
    let mut out = envelope(kind, &group.id, group.document());
    if let Some(members) = members {
        let members: Vec<Value> = members
            .iter()
            .filter(|m| m.group_id == group.id)
            .map(|m| render_member(base, m))
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

/// Splits `members` out of a group body: the document without it, and the member ids.
fn split_members(input: &Value) -> Result<(Document, Vec<String>), ScimError> {
    let mut body = input.clone();
    let members = body.as_object_mut().and_then(|fields| {
        let key = fields
            .keys()
            .find(|key| key.eq_ignore_ascii_case("members"))
            .cloned();
        key.and_then(|key| fields.remove(&key))
    });
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

/// Takes membership operations out of a group PATCH: what they do to members, and the rest.
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

/// The user, then every group row for it, loaded in one blocking task.
async fn user_with_groups(
    ctx: &Context,
    work: impl FnOnce(&mut crate::db::DbConnection) -> Result<StoredUser, ScimError> + Send + 'static,
) -> Result<(StoredUser, Vec<(String, String, String)>), ScimError> {
    ctx.store
        .run(move |conn| {
            let user = work(conn)?;
            let groups = users::groups_of(conn, std::slice::from_ref(&user.id))?;
            Ok((user, groups))
        })
        .await
}

async fn group_with_members(
    ctx: &Context,
    work: impl FnOnce(&mut crate::db::DbConnection) -> Result<StoredGroup, ScimError> + Send + 'static,
) -> Result<(StoredGroup, Vec<Member>), ScimError> {
    ctx.store
        .run(move |conn| {
            let group = work(conn)?;
            let members = groups::members_of(conn, std::slice::from_ref(&group.id), None, None)?;
            Ok((group, members))
        })
        .await
}

pub async fn create(ctx: &Context, kind: ResourceKind, body: &Value) -> Result<Reply, ScimError> {
    let (workspace_id, audit) = (ctx.workspace_id.clone(), ctx.audit.clone());
    match kind {
        ResourceKind::User => {
            let document = resource::normalize(kind, body)?;
            let (user, groups) = user_with_groups(ctx, move |conn| {
                users::create(conn, &workspace_id, document, &audit)
            })
            .await?;
            Ok(Reply::resource(
                StatusCode::CREATED,
                render_user(&ctx.base, &user, &groups, &Projection::default()),
                user.version,
            ))
        }
        ResourceKind::Group => {
            let (document, member_ids) = split_members(body)?;
            let (group, members) = group_with_members(ctx, move |conn| {
                groups::create(conn, &workspace_id, document, member_ids, &audit)
            })
            .await?;
            let body = render_group(&ctx.base, &group, Some(&members), &Projection::default());
            Ok(Reply::resource(StatusCode::CREATED, body, group.version))
        }
    }
}

pub async fn replace(
    ctx: &Context,
    kind: ResourceKind,
    id: &str,
    body: &Value,
    if_match: Option<String>,
) -> Result<Reply, ScimError> {
    let (workspace_id, audit, id) = (ctx.workspace_id.clone(), ctx.audit.clone(), id.to_owned());
    match kind {
        ResourceKind::User => {
            let document = resource::normalize(kind, body)?;
            // PUT replaces every writable attribute; read-only ones were dropped by normalize.
            let (user, groups) = user_with_groups(ctx, move |conn| {
                users::update(
                    conn,
                    &workspace_id,
                    &id,
                    if_match.as_deref(),
                    &audit,
                    |_| Ok(document),
                )
            })
            .await?;
            Ok(Reply::resource(
                StatusCode::OK,
                render_user(&ctx.base, &user, &groups, &Projection::default()),
                user.version,
            ))
        }
        ResourceKind::Group => {
            let (document, member_ids) = split_members(body)?;
            let change = MemberChange {
                replace: Some(member_ids),
                ..MemberChange::default()
            };
            let (group, members) = group_with_members(ctx, move |conn| {
                groups::update(
                    conn,
                    &workspace_id,
                    &id,
                    if_match.as_deref(),
                    &audit,
                    |_| Ok((document, change)),
                )
            })
            .await?;
            Ok(Reply::resource(
                StatusCode::OK,
                render_group(&ctx.base, &group, Some(&members), &Projection::default()),
                group.version,
            ))
        }
    }
}

/// A user PATCH answers 200 with the user (Okta reads it); a group PATCH answers 204, so that a
/// large member list is never echoed.
pub async fn patch(
    ctx: &Context,
    kind: ResourceKind,
    id: &str,
    body: &Value,
    if_match: Option<String>,
) -> Result<Reply, ScimError> {
    let operations = patch::parse_request(body, PATCH_SCHEMA)?;
    let (workspace_id, audit, id) = (ctx.workspace_id.clone(), ctx.audit.clone(), id.to_owned());
    match kind {
        ResourceKind::User => {
            let (user, groups) = user_with_groups(ctx, move |conn| {
                users::update(
                    conn,
                    &workspace_id,
                    &id,
                    if_match.as_deref(),
                    &audit,
                    |current| patch::apply(ResourceKind::User, current.document(), &operations),
                )
            })
            .await?;
            Ok(Reply::resource(
                StatusCode::OK,
                render_user(&ctx.base, &user, &groups, &Projection::default()),
                user.version,
            ))
        }
        ResourceKind::Group => {
            let (change, others) = membership_operations(operations)?;
            let group = ctx
                .store
                .run(move |conn| {
                    groups::update(
                        conn,
                        &workspace_id,
                        &id,
                        if_match.as_deref(),
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
            let location = Some(location(&ctx.base, kind, &group.id));
            Ok(Reply {
                status: StatusCode::NO_CONTENT,
                body: None,
                version: Some(group.version),
                location,
            })
        }
    }
}

pub async fn delete(ctx: &Context, kind: ResourceKind, id: &str) -> Result<Reply, ScimError> {
    let (workspace_id, audit, id) = (ctx.workspace_id.clone(), ctx.audit.clone(), id.to_owned());
    ctx.store
        .run(move |conn| match kind {
            ResourceKind::User => users::delete(conn, &workspace_id, &id, &audit),
            ResourceKind::Group => groups::delete(conn, &workspace_id, &id, &audit),
        })
        .await?;
    Ok(Reply {
        status: StatusCode::NO_CONTENT,
        body: None,
        version: None,
        location: None,
    })
}

/// One user or group. A group comes without `members`: the handler streams them, since a group
/// may have more than fit comfortably in one response buffer.
pub async fn get(
    ctx: &Context,
    kind: ResourceKind,
    id: &str,
    projection: &Projection,
) -> Result<(Value, i64), ScimError> {
    let (workspace_id, id) = (ctx.workspace_id.clone(), id.to_owned());
    match kind {
        ResourceKind::User => {
            let (user, groups) =
                user_with_groups(ctx, move |conn| users::load(conn, &workspace_id, &id)).await?;
            Ok((
                render_user(&ctx.base, &user, &groups, projection),
                user.version,
            ))
        }
        ResourceKind::Group => {
            let group = ctx
                .store
                .run(move |conn| groups::load(conn, &workspace_id, &id))
                .await?;
            Ok((
                render_group(&ctx.base, &group, None, projection),
                group.version,
            ))
        }
    }
}

/// A page of users or groups.
pub struct Listing {
    /// How many resources match, over all pages.
    pub total: i64,
    pub resources: Vec<Value>,
    /// The creation number of the page's last resource, for the next cursor.
    pub last_seq: Option<i64>,
}

pub async fn list(
    ctx: &Context,
    kind: ResourceKind,
    page: Page,
    projection: &Projection,
) -> Result<Listing, ScimError> {
    let workspace_id = ctx.workspace_id.clone();
    let wants_related = projection.wants(
        kind,
        if kind == ResourceKind::User {
            "groups"
        } else {
            "members"
        },
    );
    match kind {
        ResourceKind::User => {
            let (total, found, groups) = ctx
                .store
                .run(move |conn| {
                    let (total, found) = users::list(conn, &workspace_id, &page)?;
                    let ids: Vec<String> = found.iter().map(|user| user.id.clone()).collect();
                    let groups = if wants_related && !ids.is_empty() {
                        users::groups_of(conn, &ids)?
                    } else {
                        Vec::new()
                    };
                    Ok::<_, ScimError>((total, found, groups))
                })
                .await?;
            let resources = found
                .iter()
                .map(|user| render_user(&ctx.base, user, &groups, projection))
                .collect();
            Ok(Listing {
                total,
                resources,
                last_seq: found.last().map(|user| user.seq),
            })
        }
        ResourceKind::Group => {
            let (total, found, members) = ctx
                .store
                .run(move |conn| {
                    let (total, found) = groups::list(conn, &workspace_id, &page)?;
                    let ids: Vec<String> = found.iter().map(|group| group.id.clone()).collect();
                    let members = if wants_related && !ids.is_empty() {
                        Some(groups::members_of(conn, &ids, None, None)?)
                    } else {
                        None
                    };
                    Ok::<_, ScimError>((total, found, members))
                })
                .await?;
            let resources = found
                .iter()
                .map(|group| render_group(&ctx.base, group, members.as_deref(), projection))
                .collect();
            Ok(Listing {
                total,
                resources,
                last_seq: found.last().map(|group| group.seq),
            })
        }
    }
}
