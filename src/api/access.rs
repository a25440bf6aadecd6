//! The access-model admin API under `/api/v1/workspaces/{ws}`: members and their roles and
//! effective permissions, IdP-group and attribute mappings, resources, labels and write keys,
//! grants, authorization decisions and the access-review export. Reads need `workspace:read`
//! (resources: `sources:read`, or `tracking_plan:read` for tracking plans), changes
//! `workspace:write` (resources: `sources:write` / `tracking_plan:write`), the export `audit:read`.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};

use crate::directory;
use crate::error::json_error;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::access::attributes::{self, MappingChange};
use crate::access::authorize::{Check, decide_all};
use crate::access::cache::DecisionCache;
use crate::access::decide::{Decision, Principal, Resource, Target};
use crate::access::grants::{self, NewGrant};
use crate::access::members::{self, OwnerAuthority};
use crate::access::resources::{self, NewResource, ResourceChanges};
use crate::access::{AccessError, parse};
use crate::auth::{Authorized, needs};
use crate::csv_export::CsvExport;
use crate::db::{DbConnection, Store};
use crate::permissions::Scope;
use crate::permissions::{Action, Label, Level, ResourceKind, Role};
use crate::tokens;
use crate::workspaces::Workspace;

/// The most checks one `/authorize` request may carry.
const MAX_CHECKS: usize = 1000;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/members").get(list_members))
        .service(web::resource("/members/{member}/permissions").get(permissions))
        .service(web::resource("/members/{member}/roles").put(set_roles))
        .service(web::resource("/group-mappings").get(list_mappings))
        .service(
            web::resource("/group-mappings/{group}")
                .put(set_mapping)
                .delete(remove_mapping),
        )
        .service(
            web::resource("/attribute-mapping")
                .get(show_attributes)
                .put(set_attributes),
        )
        .service(
            web::resource("/resources")
                .get(list_resources)
                .post(create_resource),
        )
        .service(
            web::resource("/resources/{id}")
                .get(show_resource)
                .patch(change_resource)
                .delete(delete_resource),
        )
        .service(web::resource("/resources/{id}/write-key").post(rotate_write_key))
        .service(web::resource("/grants").get(list_grants).post(create_grant))
        .service(web::resource("/grants/{id}").delete(revoke_grant))
        .service(web::resource("/authorize").post(authorize))
        .service(web::resource("/access-review").get(access_review))
        .service(web::resource("/ownership/transfer").post(transfer_ownership));
}

/// Routes outside a workspace: a write key is its own credential.
pub fn write_key_routes(config: &mut web::ServiceConfig) {
    config.service(web::resource("/write-keys/verify").post(verify_write_key));
}

#[derive(Serialize)]
struct MemberView<'a> {
    id: &'a str,
    user_name: &'a str,
    active: bool,
    roles: &'a [crate::access::decide::RoleAssignment],
}

impl<'a> MemberView<'a> {
    fn of(principal: &'a Principal) -> Self {
        MemberView {
            id: &principal.member_id,
            user_name: &principal.user_name,
            active: principal.active,
            roles: &principal.roles,
        }
    }
}

async fn list_members(
    auth: Authorized<needs::WorkspaceRead>,
    store: web::Data<Store>,
) -> actix_web::Result<HttpResponse> {
    let workspace_id = auth.workspace.id;
    let principals = store
        .run(move |conn| {
            let members = directory::list(conn, &workspace_id)?;
            Ok::<_, AccessError>(members::principals(conn, &workspace_id, &members)?)
        })
        .await?;
    let members: Vec<MemberView> = principals.iter().map(MemberView::of).collect();
    Ok(HttpResponse::Ok().json(json!({ "members": members })))
}

/// Everything one person may do: roles and where they came from, the matrix, and per resource
/// the level with the grants behind it.
async fn permissions(
    auth: Authorized<needs::WorkspaceRead>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    let (_, member) = path.into_inner();
    let viewer = Viewer::of(&auth);
    let workspace = auth.workspace;
    let body = store
        .run(move |conn| {
            let member = members::require(conn, &workspace.id, &member)?;
            let principal = members::principal(conn, &workspace.id, &member)?;
            let all = resources::list(conn, &workspace.id)?;
            Ok::<_, AccessError>(explain(&workspace, &principal, &all, &viewer))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `principal`'s permissions, with the resources `viewer` may learn about.
fn explain(
    workspace: &Workspace,
    principal: &Principal,
    all: &[Resource],
    viewer: &Viewer,
) -> Value {
    let now = crate::time::now();
    let by_id: BTreeMap<&str, &Resource> = all.iter().map(|r| (r.id.as_str(), r)).collect();
    let matrix: BTreeMap<&str, Decision> = Action::ALL
        .iter()
        .map(|action| {
            let decision = principal
                .decide(*action, None, workspace.tracking_plan_approval, now)
                .expect("no resource, so no kind to mismatch");
            (action.as_str(), decision)
        })
        .collect();
    let resources: Vec<Value> = all
        .iter()
        .map(|resource| target_of(resource, &by_id))
        .filter(|target| viewer.sees(*target, now))
        .map(|target| {
            let effective = principal.level_on(target, now);
            json!({
                "resource": target.resource,
                "level": effective.level,
                "basis": effective.basis,
                "grants": effective.grants,
            })
        })
        .collect();
    json!({
        "member": MemberView::of(principal),
        "permissions": matrix,
        "resources": resources,
    })
}

fn target_of<'a>(resource: &'a Resource, by_id: &BTreeMap<&str, &'a Resource>) -> Target<'a> {
    Target::with_source(resource, |id| by_id.get(id).copied())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesBody {
    roles: Vec<Role>,
}

async fn set_roles(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
    body: web::Json<RolesBody>,
) -> actix_web::Result<HttpResponse> {
    let (_, member) = path.into_inner();
    let roles: BTreeSet<Role> = body.into_inner().roles.into_iter().collect();
    let (workspace_id, acting_for, audit) = (auth.workspace.id, auth.acting_for, auth.audit);
    let (member, roles) = store
        .run(move |conn| {
            let authority = OwnerAuthority::of(conn, &workspace_id, acting_for.as_deref())?;
            members::set_roles(conn, &workspace_id, &member, &roles, authority, &audit)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "id": member.id, "user_name": member.user_name, "roles": roles })))
}

async fn list_mappings(
    auth: Authorized<needs::WorkspaceRead>,
    store: web::Data<Store>,
) -> actix_web::Result<HttpResponse> {
    let workspace_id = auth.workspace.id;
    let mappings = store
        .run(move |conn| Ok::<_, AccessError>(members::mappings(conn, &workspace_id)?))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "mappings": mappings })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingBody {
    role: Role,
}

async fn set_mapping(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
    body: web::Json<MappingBody>,
) -> actix_web::Result<HttpResponse> {
    let (_, group) = path.into_inner();
    let role = body.into_inner().role;
    let (workspace_id, acting_for, audit) = (auth.workspace.id, auth.acting_for, auth.audit);
    let mapping = store
        .run(move |conn| {
            let authority = OwnerAuthority::of(conn, &workspace_id, acting_for.as_deref())?;
            members::set_mapping(conn, &workspace_id, &group, role, authority, &audit)
        })
        .await?;
    Ok(HttpResponse::Ok().json(mapping))
}

async fn remove_mapping(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    let (_, group) = path.into_inner();
    let (workspace_id, acting_for, audit) = (auth.workspace.id, auth.acting_for, auth.audit);
    store
        .run(move |conn| {
            let authority = OwnerAuthority::of(conn, &workspace_id, acting_for.as_deref())?;
            members::remove_mapping(conn, &workspace_id, &group, authority, &audit)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn show_attributes(
    auth: Authorized<needs::WorkspaceRead>,
    store: web::Data<Store>,
) -> actix_web::Result<HttpResponse> {
    let workspace_id = auth.workspace.id;
    let mapping = store
        .run(move |conn| Ok::<_, AccessError>(attributes::get(conn, &workspace_id)?))
        .await?;
    let presets: BTreeMap<&str, _> = attributes::PRESETS
        .iter()
        .map(|name| (*name, attributes::preset(name)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "mapping": mapping, "presets": presets })))
}

async fn set_attributes(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    body: web::Json<MappingChange>,
) -> actix_web::Result<HttpResponse> {
    let workspace_id = auth.workspace.id;
    let audit = auth.audit;
    let change = body.into_inner();
    let mapping = store
        .run(move |conn| attributes::set(conn, &workspace_id, change, &audit))
        .await?;
    Ok(HttpResponse::Ok().json(mapping))
}

/// The token scope reading (or changing) resources of a kind needs.
fn resource_scope(kind: ResourceKind, write: bool) -> Scope {
    let (read, change) = kind.scopes();
    if write { change } else { read }
}

/// What of the workspace's resources a caller may learn about, whoever the answer concerns: the
/// kinds its scopes read, and for a person only what their own levels do not hide (No Access).
/// A resource outside that is not named to them, in lists, explanations or decisions.
struct Viewer {
    readable: BTreeSet<ResourceKind>,
    person: Option<Principal>,
}

impl Viewer {
    fn of<S>(auth: &Authorized<S>) -> Viewer {
        Viewer {
            readable: ResourceKind::ALL
                .iter()
                .copied()
                .filter(|kind| auth.scopes.contains(resource_scope(*kind, false)))
                .collect(),
            person: auth.person.clone(),
        }
    }

    fn sees(&self, target: Target<'_>, now: NaiveDateTime) -> bool {
        self.readable.contains(&target.resource.kind)
            && self
                .person
                .as_ref()
                .is_none_or(|person| person.level_on(target, now).level > Level::NoAccess)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceQuery {
    kind: Option<String>,
    label: Option<String>,
    /// A member id or email: only what that person can see, each with their level.
    visible_to: Option<String>,
}

async fn list_resources(
    auth: Authorized<needs::AnyScope>,
    store: web::Data<Store>,
    query: web::Query<ResourceQuery>,
) -> actix_web::Result<HttpResponse> {
    let query = query.into_inner();
    let kind: Option<ResourceKind> = query.kind.as_deref().map(parse).transpose()?;
    let label: Option<Label> = query.label.as_deref().map(parse).transpose()?;
    let kinds: Vec<ResourceKind> = match kind {
        Some(kind) => vec![kind],
        None => ResourceKind::ALL.to_vec(),
    };
    // A caller sees the kinds its scopes let it read; asking for one it cannot read is a 403.
    let viewer = Viewer::of(&auth);
    if !kinds.iter().any(|kind| viewer.readable.contains(kind)) {
        auth.require(resource_scope(kinds[0], false))?;
    }
    let workspace_id = auth.workspace.id;
    let listed = store
        .run(move |conn| {
            let all = resources::list(conn, &workspace_id)?;
            // Whose levels to show: `visible_to`'s, else a person's own. Either way only what
            // the caller may see is listed.
            let subject = match &query.visible_to {
                Some(member) => {
                    let member = members::require(conn, &workspace_id, member)?;
                    Some(members::principal(conn, &workspace_id, &member)?)
                }
                None => viewer.person.clone(),
            };
            let now = crate::time::now();
            let by_id: BTreeMap<&str, &Resource> = all.iter().map(|r| (r.id.as_str(), r)).collect();
            let listed: Vec<Value> = all
                .iter()
                .filter(|r| kinds.contains(&r.kind))
                .filter(|r| label.as_ref().is_none_or(|label| r.labels.contains(label)))
                .map(|r| target_of(r, &by_id))
                .filter(|target| viewer.sees(*target, now))
                .filter_map(|target| match &subject {
                    None => Some(json!(target.resource)),
                    Some(subject) => {
                        let level = subject.level_on(target, now).level;
                        let mut shown = json!(target.resource);
                        shown["level"] = json!(level);
                        (level > Level::NoAccess).then_some(shown)
                    }
                })
                .collect();
            Ok::<_, AccessError>(listed)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "resources": listed })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewResourceBody {
    kind: ResourceKind,
    name: String,
    source_id: Option<String>,
    #[serde(default)]
    labels: BTreeSet<Label>,
}

async fn create_resource(
    auth: Authorized<needs::AnyScope>,
    store: web::Data<Store>,
    body: web::Json<NewResourceBody>,
) -> actix_web::Result<HttpResponse> {
    let body = body.into_inner();
    auth.require(resource_scope(body.kind, true))?;
    if let (Some(_), Some(source_id)) = (&auth.person, &body.source_id) {
        // For a person, connecting a destination is editing its source.
        authorized_resource(&auth, &store, source_id.clone(), Level::ReadWrite).await?;
    }
    let (workspace_id, person, audit) = (auth.workspace.id, auth.person, auth.audit);
    let new = NewResource {
        kind: body.kind,
        name: body.name,
        source_id: body.source_id,
        labels: body.labels,
    };
    let (resource, write_key) = store
        .run(move |conn| {
            if let Some(person) = &person {
                let unlabelled = Resource {
                    id: String::new(),
                    kind: new.kind,
                    name: new.name.clone(),
                    source_id: new.source_id.clone(),
                    labels: Vec::new(),
                };
                check_labels(conn, &workspace_id, person, &unlabelled, &new.labels)?;
            }
            resources::create(conn, &workspace_id, new, &audit)
        })
        .await?;
    let mut shown = json!(resource);
    if let Some(key) = write_key {
        shown["write_key"] = json!(key);
    }
    Ok(HttpResponse::Created().json(shown))
}

/// Labels grant access, so a person may give a resource only labels that give them no more on
/// it than they hold now (Read & Write cannot move a source under a label where they have Full
/// Access); and only an Owner brings a new label into use, as Owners manage the workspace's labels.
fn check_labels(
    conn: &mut DbConnection,
    workspace_id: &str,
    person: &Principal,
    resource: &Resource,
    labels: &BTreeSet<Label>,
) -> Result<(), AccessError> {
    let source = match &resource.source_id {
        Some(source_id) => resources::find(conn, workspace_id, source_id)?,
        None => None,
    };
    let now = crate::time::now();
    let level = |resource: &Resource| {
        let target = Target {
            resource,
            source: source.as_ref(),
        };
        person.level_on(target, now).level
    };
    let relabelled = Resource {
        labels: labels.iter().cloned().collect(),
        ..resource.clone()
    };
    let (before, after) = (level(resource), level(&relabelled));
    if after > before {
        return Err(AccessError::Forbidden(format!(
            "these labels would give you {after} on the resource, where you hold {before}; \
             changing labels needs the level they grant"
        )));
    }
    let is_owner = person.roles.iter().any(|r| r.role == Role::Owner);
    if !is_owner {
        let in_use = resources::labels_in_use(conn, workspace_id)?;
        if let Some(new) = labels.difference(&in_use).next() {
            return Err(AccessError::Forbidden(format!(
                "only an Owner brings a new label into use ({})",
                new.as_str()
            )));
        }
    }
    Ok(())
}

/// Loads a resource and checks the caller may act on it with `needed`: a token by the scope of
/// its kind; a person by that scope and their level on it (a resource they have No Access to is
/// answered as absent, as lists hide it).
async fn authorized_resource<S>(
    auth: &Authorized<S>,
    store: &Store,
    id: String,
    needed: Level,
) -> actix_web::Result<Resource> {
    let workspace_id = auth.workspace.id.clone();
    let person = auth.person.clone();
    let resource = store
        .run(move |conn| {
            let resource = resources::require(conn, &workspace_id, &id)?;
            if let Some(person) = person {
                let source = match &resource.source_id {
                    Some(source_id) => resources::find(conn, &workspace_id, source_id)?,
                    None => None,
                };
                let target = Target {
                    resource: &resource,
                    source: source.as_ref(),
                };
                let level = person.level_on(target, crate::time::now()).level;
                if level == Level::NoAccess {
                    return Err(AccessError::NotFound(format!(
                        "no resource {id:?} in this workspace"
                    )));
                }
                if level < needed {
                    return Err(AccessError::Forbidden(format!(
                        "this needs {needed} on the resource; you have {level}"
                    )));
                }
            }
            Ok(resource)
        })
        .await?;
    auth.require(resource_scope(resource.kind, needed > Level::ReadOnly))?;
    Ok(resource)
}

async fn show_resource(
    auth: Authorized<needs::AnyScope>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    let (_, id) = path.into_inner();
    let resource = authorized_resource(&auth, &store, id, Level::ReadOnly).await?;
    Ok(HttpResponse::Ok().json(resource))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceChangeBody {
    name: Option<String>,
    labels: Option<BTreeSet<Label>>,
}

async fn change_resource(
    auth: Authorized<needs::AnyScope>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
    body: web::Json<ResourceChangeBody>,
) -> actix_web::Result<HttpResponse> {
    let (_, id) = path.into_inner();
    let current = authorized_resource(&auth, &store, id.clone(), Level::ReadWrite).await?;
    let body = body.into_inner();
    let changes = ResourceChanges {
        name: body.name,
        labels: body.labels,
    };
    let (workspace_id, person, audit) = (auth.workspace.id, auth.person, auth.audit);
    let resource = store
        .run(move |conn| {
            if let (Some(person), Some(labels)) = (&person, &changes.labels) {
                check_labels(conn, &workspace_id, person, &current, labels)?;
            }
            resources::update(conn, &workspace_id, &id, changes, &audit)
        })
        .await?;
    Ok(HttpResponse::Ok().json(resource))
}

async fn delete_resource(
    auth: Authorized<needs::AnyScope>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    let (_, id) = path.into_inner();
    authorized_resource(&auth, &store, id.clone(), Level::FullAccess).await?;
    let workspace_id = auth.workspace.id;
    let audit = auth.audit;
    store
        .run(move |conn| resources::delete(conn, &workspace_id, &id, &audit))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn rotate_write_key(
    auth: Authorized<needs::SourcesWrite>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    let (_, id) = path.into_inner();
    authorized_resource(&auth, &store, id.clone(), Level::ReadWrite).await?;
    let workspace_id = auth.workspace.id;
    let audit = auth.audit;
    let key = store
        .run(move |conn| resources::rotate_write_key(conn, &workspace_id, &id, &audit))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "write_key": key })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    write_key: String,
    source_id: String,
}

/// Whether a write key may send data to a source: only to its own.
async fn verify_write_key(
    store: web::Data<Store>,
    body: web::Json<VerifyBody>,
) -> actix_web::Result<HttpResponse> {
    let VerifyBody {
        write_key,
        source_id,
    } = body.into_inner();
    let owner = store
        .run(move |conn| Ok::<_, AccessError>(resources::source_of_write_key(conn, &write_key)?))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "valid": owner.as_deref() == Some(source_id.as_str()) })))
}

async fn list_grants(
    auth: Authorized<needs::WorkspaceRead>,
    store: web::Data<Store>,
) -> actix_web::Result<HttpResponse> {
    let workspace_id = auth.workspace.id;
    let grants = store
        .run(move |conn| Ok::<_, AccessError>(grants::list(conn, &workspace_id)?))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "grants": grants })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    member: Option<String>,
    group: Option<String>,
    resource: Option<String>,
    label: Option<Label>,
    level: Level,
    /// RFC 3339.
    expires_at: Option<String>,
    /// A duration such as `4h` or `7d`, instead of `expires_at`.
    expires_in: Option<String>,
    justification: Option<String>,
    approver: Option<String>,
    review_date: Option<String>,
}

fn expiry(body: &GrantBody) -> Result<Option<NaiveDateTime>, AccessError> {
    match (&body.expires_at, &body.expires_in) {
        (Some(_), Some(_)) => Err(AccessError::Invalid(
            "give expires_at or expires_in, not both".to_owned(),
        )),
        (Some(at), None) => crate::time::parse_rfc3339(at)
            .map(Some)
            .map_err(AccessError::Invalid),
        (None, Some(lifetime)) => grants::expiry_after(lifetime).map(Some),
        (None, None) => Ok(None),
    }
}

async fn create_grant(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    body: web::Json<GrantBody>,
) -> actix_web::Result<HttpResponse> {
    let body = body.into_inner();
    let new = NewGrant {
        expires_at: expiry(&body)?,
        member: body.member,
        group: body.group,
        resource: body.resource,
        label: body.label,
        level: body.level,
        justification: body.justification,
        approver: body.approver,
        review_date: body.review_date,
    };
    let workspace_id = auth.workspace.id;
    let audit = auth.audit;
    let grant = store
        .run(move |conn| grants::create(conn, &workspace_id, new, &audit))
        .await?;
    Ok(HttpResponse::Created().json(grant))
}

async fn revoke_grant(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    let (_, id) = path.into_inner();
    let workspace_id = auth.workspace.id;
    let audit = auth.audit;
    store
        .run(move |conn| grants::revoke(conn, &workspace_id, &id, &audit))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AuthorizeBody {
    Batch { checks: Vec<Check> },
    One(Check),
}

async fn authorize(
    auth: Authorized<needs::WorkspaceRead>,
    store: web::Data<Store>,
    cache: web::Data<DecisionCache>,
    body: web::Json<Value>,
) -> actix_web::Result<HttpResponse> {
    let body: AuthorizeBody = serde_json::from_value(body.into_inner()).map_err(|_| {
        AccessError::Invalid(
            "the body is {\"subject\", \"action\", \"resource\"?} or {\"checks\": [...]} of those"
                .to_owned(),
        )
    })?;
    let viewer = Viewer::of(&auth);
    let workspace = auth.workspace;
    let (checks, batch) = match body {
        AuthorizeBody::One(check) => (vec![check], false),
        AuthorizeBody::Batch { checks } if checks.len() > MAX_CHECKS => {
            return Err(
                AccessError::Invalid(format!("at most {MAX_CHECKS} checks per request")).into(),
            );
        }
        AuthorizeBody::Batch { checks } => (checks, true),
    };
    let mut decisions = store
        .run(move |conn| {
            let now = crate::time::now();
            let visible = |target: Target<'_>| viewer.sees(target, now);
            decide_all(conn, &cache, &workspace.id, checks, &visible)
        })
        .await?;
    Ok(if batch {
        HttpResponse::Ok().json(json!({ "results": decisions }))
    } else {
        HttpResponse::Ok().json(decisions.remove(0))
    })
}

/// The access review: every member with roles and grants (with justification, approver and review
/// date), and every token with its scopes, as JSON or CSV (`?format=csv`).
async fn access_review(
    auth: Authorized<needs::AuditRead>,
    store: web::Data<Store>,
    query: web::Query<ReviewQuery>,
) -> actix_web::Result<HttpResponse> {
    let csv = match query.into_inner().format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(
                AccessError::Invalid(format!("format {other:?} must be json or csv")).into(),
            );
        }
    };
    let workspace = auth.workspace;
    let slug = workspace.slug.clone();
    let review = store.run(move |conn| review(conn, &workspace)).await?;
    if !csv {
        return Ok(HttpResponse::Ok().json(review));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{slug}-access-review.csv\""),
        ))
        .body(review_csv(&review)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewQuery {
    format: Option<String>,
}

#[derive(Serialize)]
struct Review {
    workspace: String,
    #[serde(serialize_with = "crate::time::serialize")]
    generated_at: NaiveDateTime,
    members: Vec<ReviewedMember>,
    group_grants: Vec<crate::access::decide::Grant>,
    tokens: Vec<tokens::ApiToken>,
}

#[derive(Serialize)]
struct ReviewedMember {
    id: String,
    user_name: String,
    active: bool,
    roles: Vec<crate::access::decide::RoleAssignment>,
    grants: Vec<crate::access::decide::Grant>,
}

fn review(conn: &mut DbConnection, workspace: &Workspace) -> Result<Review, AccessError> {
    let everyone = directory::list(conn, &workspace.id)?;
    let principals = members::principals(conn, &workspace.id, &everyone)?;
    let group_grants = grants::list(conn, &workspace.id)?
        .into_iter()
        .filter(|g| matches!(g.subject, crate::access::decide::GrantSubject::Group(_)))
        .collect();
    let tokens = tokens::list(conn, &workspace.id)?;
    Ok(Review {
        workspace: workspace.slug.clone(),
        generated_at: crate::time::now(),
        members: principals
            .into_iter()
            .map(|p| ReviewedMember {
                grants: p
                    .grants
                    .into_iter()
                    .filter(|g| matches!(g.subject, crate::access::decide::GrantSubject::Member(_)))
                    .collect(),
                id: p.member_id,
                user_name: p.user_name,
                active: p.active,
                roles: p.roles,
            })
            .collect(),
        group_grants,
        tokens,
    })
}

/// One row per fact: a member's role, a grant (to a member or a group), or a token.
fn review_csv(review: &Review) -> Vec<u8> {
    let mut csv = CsvExport::default();
    let header = [
        "record",
        "subject",
        "subject_id",
        "active",
        "role",
        "via",
        "resource",
        "label",
        "level",
        "expires_at",
        "justification",
        "approver",
        "review_date",
        "scopes",
        "created_at",
    ];
    csv.row(header);
    let time = |t: &Option<NaiveDateTime>| t.as_ref().map(crate::time::rfc3339).unwrap_or_default();
    let grant_row =
        |subject: &str, subject_id: &str, active: &str, grant: &crate::access::decide::Grant| {
            let (resource, label) = match &grant.target {
                crate::access::decide::GrantTarget::Resource(id) => (id.clone(), String::new()),
                crate::access::decide::GrantTarget::Label(label) => {
                    (String::new(), label.as_str().to_owned())
                }
            };
            [
                "grant".to_owned(),
                subject.to_owned(),
                subject_id.to_owned(),
                active.to_owned(),
                String::new(),
                String::new(),
                resource,
                label,
                grant.level.to_string(),
                time(&grant.expires_at),
                grant.justification.clone().unwrap_or_default(),
                grant.approver.clone().unwrap_or_default(),
                grant.review_date.clone().unwrap_or_default(),
                String::new(),
                crate::time::rfc3339(&grant.created_at),
            ]
        };
    for member in &review.members {
        let active = member.active.to_string();
        for assignment in &member.roles {
            let via = match &assignment.source {
                crate::access::decide::RoleSource::Direct => "direct".to_owned(),
                crate::access::decide::RoleSource::Group { group } => format!("group:{group}"),
            };
            let mut row: [String; 15] = Default::default();
            row[0] = "role".to_owned();
            row[1] = member.user_name.clone();
            row[2] = member.id.clone();
            row[3] = active.clone();
            row[4] = assignment.role.to_string();
            row[5] = via;
            csv.row(&row);
        }
        for grant in &member.grants {
            csv.row(grant_row(&member.user_name, &member.id, &active, grant));
        }
    }
    for grant in &review.group_grants {
        let group = match &grant.subject {
            crate::access::decide::GrantSubject::Group(name)
            | crate::access::decide::GrantSubject::Member(name) => name.as_str(),
        };
        csv.row(grant_row(&format!("group:{group}"), "", "", grant));
    }
    let now = crate::time::now();
    for token in &review.tokens {
        let mut row: [String; 15] = Default::default();
        row[0] = "token".to_owned();
        row[1] = token.name.clone();
        row[2] = token.id.clone();
        row[3] = (token.status(now) == "active").to_string();
        row[9] = time(&token.expires_at);
        row[13] = token.scopes.to_string();
        row[14] = crate::time::rfc3339(&token.created_at);
        csv.row(&row);
    }
    csv.into_bytes()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: String,
}

/// Hands the caller's direct Owner role to another member. Only a person can hold a role, so only
/// a session can transfer ownership over HTTP (`ownership.transfer`, Owners alone).
async fn transfer_ownership(
    auth: Authorized<needs::AnyScope>,
    store: web::Data<Store>,
    body: web::Json<TransferBody>,
) -> actix_web::Result<HttpResponse> {
    let Some(person) = auth.person else {
        return Err(AccessError::Forbidden(
            "ownership is transferred by an Owner signed in, or with `idgate role transfer-ownership`"
                .to_owned(),
        ).into());
    };
    let decision = person
        .decide(
            Action::OwnershipTransfer,
            None,
            auth.workspace.tracking_plan_approval,
            crate::time::now(),
        )
        .map_err(|e| AccessError::Invalid(e.to_string()))?;
    if !decision.allowed {
        return Err(AccessError::Forbidden(decision.reason).into());
    }
    let workspace_id = auth.workspace.id;
    let audit = auth.audit;
    let to = body.into_inner().to;
    let (from, to) = store
        .run(move |conn| {
            members::transfer_ownership(conn, &workspace_id, &person.member_id, &to, &audit)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "from": from, "to": to })))
}

/// How a AccessError answers over HTTP.
impl ResponseError for AccessError {
    fn status_code(&self) -> StatusCode {
        match self {
            AccessError::Invalid(_) => StatusCode::BAD_REQUEST,
            AccessError::NotFound(_) => StatusCode::NOT_FOUND,
            AccessError::Conflict(_) | AccessError::LastOwner => StatusCode::CONFLICT,
            AccessError::Forbidden(_) => StatusCode::FORBIDDEN,
            AccessError::Token(error) => error.status_code(),
            AccessError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            AccessError::Invalid(_) => "invalid_request",
            AccessError::NotFound(_) => "not_found",
            AccessError::Conflict(_) => "conflict",
            AccessError::Forbidden(_) => "forbidden",
            AccessError::LastOwner => "last_owner",
            AccessError::Token(error) => return error.error_response(),
            AccessError::Store(error) => return error.error_response(),
        };
        json_error(self.status_code(), code, &self.to_string())
    }
}
