//! People and groups: members with search and paging, one member's roles and effective
//! permissions, and the group-to-role mappings with a preview of who gains or loses what.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{Chrome, Notice, PageError, Saved, Section, Submitted, Visitor, render, see_other};
use crate::access::decide::{Principal, RoleSource};
use crate::access::members::{self, OwnerAuthority};
use crate::access::resources;
use crate::db::Store;
use crate::directory;
use crate::permissions::{Action, Role, Scope};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/members", web::get().to(list))
        .route("/members/{member}", web::get().to(show))
        .route("/groups", web::get().to(groups))
        .route("/groups/{group}", web::get().to(group))
        .route("/groups/preview", web::post().to(preview))
        .route("/groups/mappings", web::post().to(save_mapping));
}

/// Members per page: a page is one range read on the userName index however large the workspace.
const PAGE_SIZE: i64 = 50;
/// Members a mapping preview names (it counts them all up to this many).
const PREVIEW_LIMIT: i64 = 1000;

pub struct MemberRow {
    pub id: String,
    pub user_name: String,
    pub active: bool,
    /// Each role with where it comes from: `Admin (direct)`, `Member (group Engineering)`.
    pub roles: Vec<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "console/members.html")]
struct MembersPage {
    chrome: Chrome,
    base: String,
    q: String,
    members: Vec<MemberRow>,
    /// The query string of the next page, when there is one.
    next: Option<String>,
}

fn role_labels(principal: &Principal) -> Vec<String> {
    principal
        .roles
        .iter()
        .map(|assignment| match &assignment.source {
            RoleSource::Direct => format!("{} (direct)", assignment.role.as_str()),
            RoleSource::Group { group } => {
                format!("{} (group {group})", assignment.role.as_str())
            }
        })
        .collect()
}

fn member_row(principal: &Principal) -> MemberRow {
    MemberRow {
        id: principal.member_id.clone(),
        user_name: principal.user_name.clone(),
        active: principal.active,
        roles: role_labels(principal),
    }
}

async fn list(
    visitor: Visitor,
    store: web::Data<Store>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceRead)?;
    let ListQuery { q, after } = query.into_inner();
    let q = q.map(|q| q.trim().to_owned()).unwrap_or_default();
    let workspace_id = visitor.workspace.id.clone();
    let prefix = Some(q.clone()).filter(|q| !q.is_empty());
    let principals = store
        .read(move |conn| {
            // One more than a page says whether there is a next one.
            let mut found = directory::page(
                conn,
                &workspace_id,
                prefix.as_deref(),
                after.as_deref(),
                PAGE_SIZE + 1,
            )?;
            let more = found.len() as i64 > PAGE_SIZE;
            found.truncate(PAGE_SIZE as usize);
            let principals = members::principals(conn, &workspace_id, &found)?;
            Ok::<_, PageError>((principals, more))
        })
        .await?;
    let (principals, more) = principals;
    let next = more.then(|| principals.last()).flatten().map(|last| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &q)
            .append_pair("after", &last.user_name.to_lowercase())
            .finish()
    });
    let page = MembersPage {
        chrome: visitor.chrome("People", Section::People),
        base: visitor.base.clone(),
        q,
        members: principals.iter().map(member_row).collect(),
        next,
    };
    Ok(render(StatusCode::OK, &page))
}

pub struct PermissionRow {
    pub action: &'static str,
    pub allowed: bool,
    pub reason: String,
}

pub struct ResourceRow {
    pub name: String,
    pub kind: String,
    pub level: String,
    pub basis: String,
}

#[derive(Template)]
#[template(path = "console/member.html")]
struct MemberPage {
    chrome: Chrome,
    base: String,
    active: bool,
    roles: Vec<String>,
    permissions: Vec<PermissionRow>,
    /// Resource levels; shown to those who may see every resource (workspace:write).
    resources: Option<Vec<ResourceRow>>,
}

/// One member's effective permissions: the explain API as a page.
async fn show(
    visitor: Visitor,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceRead)?;
    let (_, member) = path.into_inner();
    let workspace_id = visitor.workspace.id.clone();
    let (principal, all) = store
        .read(move |conn| {
            let member = members::require(conn, &workspace_id, &member)?;
            let principal = members::principal(conn, &workspace_id, &member)?;
            let all = resources::list(conn, &workspace_id)?;
            Ok::<_, PageError>((principal, all))
        })
        .await?;
    let now = crate::time::now();
    let approval = visitor.workspace.tracking_plan_approval;
    let permissions = Action::ALL
        .iter()
        .map(|action| {
            let decision = principal
                .decide(*action, None, approval, now)
                .expect("no resource, so no kind to mismatch");
            PermissionRow {
                action: action.as_str(),
                allowed: decision.allowed,
                reason: decision.reason,
            }
        })
        .collect();
    let resources = visitor.scopes.contains(Scope::WorkspaceWrite).then(|| {
        all.iter()
            .map(|resource| {
                let source = resource
                    .source_id
                    .as_deref()
                    .and_then(|id| all.iter().find(|r| r.id == id));
                let target = crate::access::decide::Target { resource, source };
                let effective = principal.level_on(target, now);
                ResourceRow {
                    name: resource.name.clone(),
                    kind: resource.kind.as_str().to_owned(),
                    level: effective.level.as_str().to_owned(),
                    basis: effective.basis,
                }
            })
            .collect()
    });
    let page = MemberPage {
        chrome: visitor.chrome(&principal.user_name, Section::People),
        base: visitor.base.clone(),
        active: principal.active,
        roles: role_labels(&principal),
        permissions,
        resources,
    };
    Ok(render(StatusCode::OK, &page))
}

pub struct GroupRow {
    pub name: String,
    pub members: i64,
    pub role: Option<String>,
}

#[derive(Template)]
#[template(path = "console/groups.html")]
struct GroupsPage {
    chrome: Chrome,
    base: String,
    groups: Vec<GroupRow>,
    roles: Vec<&'static str>,
    preview: Option<Preview>,
}

/// What saving a mapping would change, shown before it is saved.
pub struct Preview {
    pub group: String,
    /// The role asked for, or empty to remove the mapping.
    pub role: String,
    pub affected: usize,
    /// (person, strongest role before, after) for those whose strongest role changes.
    pub changes: Vec<(String, String, String)>,
}

async fn groups(
    visitor: Visitor,
    store: web::Data<Store>,
    saved: web::Query<Saved>,
) -> Result<HttpResponse, PageError> {
    let page = groups_page(&visitor, &store, saved.notice(), None).await?;
    Ok(render(StatusCode::OK, &page))
}

async fn groups_page(
    visitor: &Visitor,
    store: &Store,
    notice: Option<Notice>,
    preview: Option<Preview>,
) -> Result<GroupsPage, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let workspace_id = visitor.workspace.id.clone();
    let (mut sizes, mappings) = store
        .read(move |conn| {
            let sizes = directory::group_sizes(conn, &workspace_id)?;
            let mappings = members::mappings(conn, &workspace_id)?;
            Ok::<_, PageError>((sizes, mappings))
        })
        .await?;
    let mut groups: Vec<GroupRow> = mappings
        .into_iter()
        .map(|mapping| {
            let members = sizes
                .remove(&mapping.idp_group_ci)
                .map_or(0, |(_, count)| count);
            GroupRow {
                name: mapping.idp_group,
                members,
                role: Some(mapping.role),
            }
        })
        .collect();
    groups.extend(sizes.into_values().map(|(name, members)| GroupRow {
        name,
        members,
        role: None,
    }));
    Ok(GroupsPage {
        chrome: visitor
            .chrome("Groups and roles", Section::Groups)
            .with_notice(notice),
        base: visitor.base.clone(),
        groups,
        roles: Role::ALL.iter().map(|role| role.as_str()).collect(),
        preview,
    })
}

/// Members a group's page lists.
const GROUP_PAGE_LIMIT: i64 = 200;

#[derive(Template)]
#[template(path = "console/group.html")]
struct GroupPage {
    chrome: Chrome,
    base: String,
    role: Option<String>,
    members: Vec<MemberRow>,
    limit: i64,
}

/// One IdP group: its mapped role and its active members, with the roles each holds.
async fn group(
    visitor: Visitor,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let (_, name) = path.into_inner();
    let workspace_id = visitor.workspace.id.clone();
    let looked_up = name.clone();
    let (principals, role) = store
        .read(move |conn| {
            let found =
                directory::in_group_named(conn, &workspace_id, &looked_up, GROUP_PAGE_LIMIT)?;
            let principals = members::principals(conn, &workspace_id, &found)?;
            let role = members::mappings(conn, &workspace_id)?
                .into_iter()
                .find(|mapping| mapping.idp_group_ci == looked_up.to_lowercase())
                .map(|mapping| mapping.role);
            Ok::<_, PageError>((principals, role))
        })
        .await?;
    let page = GroupPage {
        chrome: visitor.chrome(&format!("Group {name}"), Section::Groups),
        base: visitor.base.clone(),
        role,
        members: principals.iter().map(member_row).collect(),
        limit: GROUP_PAGE_LIMIT,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct MappingForm {
    group: String,
    /// A role, or empty to remove the group's mapping.
    #[serde(default)]
    role: String,
}

impl MappingForm {
    fn role(&self) -> Result<Option<Role>, PageError> {
        match self.role.trim() {
            "" => Ok(None),
            raw => raw
                .parse()
                .map(Some)
                .map_err(|e: String| PageError::Invalid(e)),
        }
    }
}

/// Who gains or loses what if the group were mapped to the role (or unmapped): each member of
/// the group whose strongest role would change.
async fn preview(
    visitor: Visitor,
    store: web::Data<Store>,
    form: Submitted<MappingForm>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let form = form.0;
    let role = form.role()?;
    let group = form.group.trim().to_owned();
    if group.is_empty() {
        return Err(PageError::Invalid("Name the IdP group.".to_owned()));
    }
    let workspace_id = visitor.workspace.id.clone();
    let name = group.clone();
    let principals = store
        .read(move |conn| {
            let found = directory::in_group_named(conn, &workspace_id, &name, PREVIEW_LIMIT)?;
            Ok::<_, PageError>(members::principals(conn, &workspace_id, &found)?)
        })
        .await?;
    let group_ci = group.to_lowercase();
    let strongest = |roles: &BTreeSet<Role>| {
        roles
            .iter()
            .min()
            .map_or("no role", |role| role.as_str())
            .to_owned()
    };
    let changes = principals
        .iter()
        .filter_map(|principal| {
            let before: BTreeSet<Role> = principal.roles.iter().map(|r| r.role).collect();
            let mut after: BTreeSet<Role> = principal
                .roles
                .iter()
                .filter(|r| {
                    !matches!(&r.source, RoleSource::Group { group } if group.to_lowercase() == group_ci)
                })
                .map(|r| r.role)
                .collect();
            after.extend(role);
            let (was, will) = (strongest(&before), strongest(&after));
            (was != will).then(|| (principal.user_name.clone(), was, will))
        })
        .collect();
    let preview = Preview {
        group,
        role: role
            .map(|role| role.as_str().to_owned())
            .unwrap_or_default(),
        affected: principals.len(),
        changes,
    };
    let page = groups_page(&visitor, &store, None, Some(preview)).await?;
    Ok(render(StatusCode::OK, &page))
}

/// Saves the mapping previewed, through the same rules as the API (only an Owner touches Owner).
async fn save_mapping(
    visitor: Visitor,
    store: web::Data<Store>,
    form: Submitted<MappingForm>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let form = form.0;
    let role = form.role()?;
    let (workspace_id, acting_for, audit) = (
        visitor.workspace.id.clone(),
        visitor.acting_for.clone(),
        visitor.audit.clone(),
    );
    let group = form.group;
    store
        .run(move |conn| {
            let authority = OwnerAuthority::of(conn, &workspace_id, acting_for.as_deref())?;
            match role {
                Some(role) => {
                    members::set_mapping(conn, &workspace_id, &group, role, authority, &audit)
                        .map(drop)
                }
                None => members::remove_mapping(conn, &workspace_id, &group, authority, &audit),
            }
        })
        .await?;
    Ok(see_other(&format!("{}/groups?saved=1", visitor.base)))
}
