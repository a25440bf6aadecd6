//! Members and their roles. A member is a person of one workspace: a SCIM user, provisioned by the
//! IdP or made just in time at their first SAML login. Roles come from direct assignments and from IdP-group mappings;
//! a group is matched by name, case-insensitively, so SCIM groups and SAML `groups` values feed the
//! same mapping.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use super::AccessError;
use super::decide::{Grant, GrantSubject, Principal, RoleAssignment, RoleSource};
use crate::audit::{self, AuditContext, Event, Target};
use crate::db::schema::{group_mappings, member_roles};
use crate::db::{Conn, DbConnection, Tx};
use crate::directory::{self, Member};
use crate::permissions::Role;
use crate::scim::error::ScimError;

fn parse_role(raw: &str) -> QueryResult<Role> {
    raw.parse()
        .map_err(|e: String| diesel::result::Error::DeserializationError(e.into()))
}

/// Members loaded per query: few enough for any backend's limit on bound parameters.
const MEMBER_CHUNK: usize = 500;

/// The loaded principals of members, with their roles and the grants that reach them.
pub fn principals(
    conn: &mut DbConnection,
    workspace_id: &str,
    members: &[Member],
) -> QueryResult<Vec<Principal>> {
    let mut loaded = Vec::with_capacity(members.len());
    for chunk in members.chunks(MEMBER_CHUNK) {
        loaded.extend(load_principals(conn, workspace_id, chunk)?);
    }
    Ok(loaded)
}

/// A member's roles, with where each comes from, and the IdP groups they are in.
#[derive(Clone, Default)]
struct RolesAndGroups {
    roles: Vec<RoleAssignment>,
    groups: Vec<String>,
}

/// Each member's roles and groups, by member id.
fn load_roles(
    conn: &mut DbConnection,
    workspace_id: &str,
    ids: &[String],
) -> QueryResult<BTreeMap<String, RolesAndGroups>> {
    let assigned = member_roles::table.select((member_roles::member_id, member_roles::role));
    let assigned: Vec<(String, String)> =
        crate::load_where_in!(conn, assigned, member_roles::member_id, ids)?;
    let mut direct: BTreeMap<String, Vec<Role>> = BTreeMap::new();
    for (member, role) in assigned {
        direct.entry(member).or_default().push(parse_role(&role)?);
    }
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (member, group) in directory::group_names_of(conn, ids)? {
        groups.entry(member).or_default().push(group);
    }
    let mappings = mapping_roles(conn, workspace_id)?;
    Ok(ids
        .iter()
        .map(|id| {
            let member_groups = groups.get(id).cloned().unwrap_or_default();
            let mut roles: Vec<RoleAssignment> = direct
                .get(id)
                .into_iter()
                .flatten()
                .map(|role| RoleAssignment {
                    role: *role,
                    source: RoleSource::Direct,
                })
                .collect();
            roles.extend(member_groups.iter().filter_map(|group| {
                mappings
                    .get(&group.to_lowercase())
                    .map(|role| RoleAssignment {
                        role: *role,
                        source: RoleSource::Group {
                            group: group.clone(),
                        },
                    })
            }));
            roles.sort_by_key(|assignment| assignment.role);
            (
                id.clone(),
                RolesAndGroups {
                    roles,
                    groups: member_groups,
                },
            )
        })
        .collect())
}

/// One member's roles, strongest first, without the grants a principal also loads: what a
/// session check reports.
pub fn roles(
    conn: &mut DbConnection,
    workspace_id: &str,
    member_id: &str,
) -> QueryResult<Vec<RoleAssignment>> {
    let id = member_id.to_owned();
    let mut loaded = load_roles(conn, workspace_id, std::slice::from_ref(&id))?;
    Ok(loaded.remove(&id).unwrap_or_default().roles)
}

fn load_principals(
    conn: &mut DbConnection,
    workspace_id: &str,
    members: &[Member],
) -> QueryResult<Vec<Principal>> {
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let loaded = load_roles(conn, workspace_id, &ids)?;
    let group_subjects: BTreeSet<String> = loaded
        .values()
        .flat_map(|loaded| &loaded.groups)
        .map(|g| g.to_lowercase())
        .collect();
    let mut grants_by_subject: BTreeMap<&GrantSubject, Vec<&Grant>> = BTreeMap::new();
    let grants = super::grants::reaching(conn, workspace_id, &ids, &group_subjects)?;
    for grant in &grants {
        grants_by_subject
            .entry(&grant.subject)
            .or_default()
            .push(grant);
    }
    Ok(members
        .iter()
        .map(|member| {
            let RolesAndGroups { roles, groups } =
                loaded.get(&member.id).cloned().unwrap_or_default();
            let subjects: BTreeSet<GrantSubject> = groups
                .iter()
                .map(|group| GrantSubject::Group(group.to_lowercase()))
                .chain([GrantSubject::Member(member.id.clone())])
                .collect();
            let mut reaching: Vec<Grant> = subjects
                .iter()
                .filter_map(|subject| grants_by_subject.get(subject))
                .flatten()
                .map(|grant| (*grant).clone())
                .collect();
            reaching.sort_by_key(|grant| grant.created_at);
            Principal {
                member_id: member.id.clone(),
                user_name: member.user_name.clone(),
                active: member.active,
                roles,
                grants: reaching,
            }
        })
        .collect())
}

pub fn principal(
    conn: &mut DbConnection,
    workspace_id: &str,
    member: &Member,
) -> QueryResult<Principal> {
    let mut loaded = principals(conn, workspace_id, std::slice::from_ref(member))?;
    Ok(loaded.remove(0))
}

/// Whether a caller may give or take away the owner role: an Owner (signed in, or through a token
/// they minted), or the operator (the CLI, or a token made with it). An Admin may not, so no Admin
/// can make an Owner or lower one, by session or by a token they mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerAuthority {
    Held,
    NotHeld,
}

impl OwnerAuthority {
    /// The authority of a caller acting for `member` (None: the operator).
    pub fn of(
        conn: &mut DbConnection,
        workspace_id: &str,
        acting_for: Option<&str>,
    ) -> QueryResult<OwnerAuthority> {
        let Some(member_id) = acting_for else {
            return Ok(OwnerAuthority::Held);
        };
        let is_owner = roles(conn, workspace_id, member_id)?
            .iter()
            .any(|assignment| assignment.role == Role::Owner);
        Ok(if is_owner {
            OwnerAuthority::Held
        } else {
            OwnerAuthority::NotHeld
        })
    }

    fn allows(self, touches_owner: bool) -> Result<(), AccessError> {
        if touches_owner && self == OwnerAuthority::NotHeld {
            return Err(AccessError::Forbidden(
                "only an Owner signed in (or `idgate` at the command line) gives or takes away the owner role"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

pub fn require(
    conn: &mut DbConnection,
    workspace_id: &str,
    id_or_email: &str,
) -> Result<Member, AccessError> {
    directory::find(conn, workspace_id, id_or_email)?.ok_or_else(|| {
        AccessError::NotFound(format!("no member {id_or_email:?} in this workspace"))
    })
}

/// Replaces a member's direct roles.
pub fn set_roles(
    conn: &mut Conn,
    workspace_id: &str,
    id_or_email: &str,
    roles: &BTreeSet<Role>,
    authority: OwnerAuthority,
    context: &AuditContext,
) -> Result<(Member, BTreeSet<Role>), AccessError> {
    conn.write(|tx| {
        let member = require(tx, workspace_id, id_or_email)?;
        let before = direct_roles(tx, &member)?;
        if before == *roles {
            return Ok((member, before));
        }
        authority.allows(before.contains(&Role::Owner) != roles.contains(&Role::Owner))?;
        write_roles(tx, workspace_id, &member, &before, roles, context)?;
        Ok((member, roles.clone()))
    })
}

/// Gives a member one more direct role, inside the caller's transaction (the console's bootstrap
/// link makes its person an Owner this way). Nothing changes, and nothing is recorded, when they
/// hold it directly already.
pub fn grant_role(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    member: &Member,
    role: Role,
    context: &AuditContext,
) -> Result<(), AccessError> {
    let before = direct_roles(tx, member)?;
    if before.contains(&role) {
        return Ok(());
    }
    let mut after = before.clone();
    after.insert(role);
    write_roles(tx, workspace_id, member, &before, &after, context)
}

fn direct_roles(conn: &mut DbConnection, member: &Member) -> QueryResult<BTreeSet<Role>> {
    member_roles::table
        .filter(member_roles::member_id.eq(&member.id))
        .select(member_roles::role)
        .load::<String>(conn)?
        .iter()
        .map(|role| parse_role(role))
        .collect()
}

/// Writes a member's direct roles, keeping an Owner, and records the change.
fn write_roles(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    member: &Member,
    before: &BTreeSet<Role>,
    roles: &BTreeSet<Role>,
    context: &AuditContext,
) -> Result<(), AccessError> {
    keep_an_owner(tx, workspace_id, |tx| {
        diesel::delete(member_roles::table.filter(member_roles::member_id.eq(&member.id)))
            .execute(tx.conn())?;
        let now = crate::time::now();
        for role in roles {
            diesel::insert_into(member_roles::table)
                .values((
                    member_roles::member_id.eq(&member.id),
                    member_roles::workspace_id.eq(workspace_id),
                    member_roles::role.eq(role.as_str()),
                    member_roles::created_at.eq(now),
                ))
                .execute(tx.conn())?;
        }
        Ok::<_, AccessError>(())
    })?;
    audit::record(
        tx,
        context,
        Event {
            workspace_id: Some(workspace_id),
            action: "access.roles.changed",
            target: Target {
                kind: "member",
                id: &member.id,
            },
            details: json!({ "userName": member.user_name, "before": before, "after": roles }),
        },
    )?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Serialize)]
pub struct GroupMapping {
    #[serde(skip)]
    pub idp_group_ci: String,
    pub idp_group: String,
    pub role: String,
    #[serde(serialize_with = "crate::time::serialize")]
    pub updated_at: chrono::NaiveDateTime,
}

crate::columns!(
    MAPPING_COLUMNS = (
        group_mappings::idp_group_ci,
        group_mappings::idp_group,
        group_mappings::role,
        group_mappings::updated_at
    )
);

pub fn mappings(conn: &mut DbConnection, workspace_id: &str) -> QueryResult<Vec<GroupMapping>> {
    group_mappings::table
        .filter(group_mappings::workspace_id.eq(workspace_id))
        .order(group_mappings::idp_group_ci.asc())
        .select(MAPPING_COLUMNS)
        .load(conn)
}

/// The role of each mapped group, by lower-case group name.
fn mapping_roles(
    conn: &mut DbConnection,
    workspace_id: &str,
) -> QueryResult<BTreeMap<String, Role>> {
    mappings(conn, workspace_id)?
        .into_iter()
        .map(|mapping| Ok((mapping.idp_group_ci, parse_role(&mapping.role)?)))
        .collect()
}

fn validate_group_name(name: &str) -> Result<String, AccessError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(AccessError::Invalid(
            "an IdP group name is 1 to 256 characters with no control characters".to_owned(),
        ));
    }
    Ok(name.to_owned())
}

/// Maps an IdP group to a role, replacing the role it had.
pub fn set_mapping(
    conn: &mut Conn,
    workspace_id: &str,
    idp_group: &str,
    role: Role,
    authority: OwnerAuthority,
    context: &AuditContext,
) -> Result<GroupMapping, AccessError> {
    let idp_group = validate_group_name(idp_group)?;
    let idp_group_ci = idp_group.to_lowercase();
    conn.write(|tx| {
        let before = mapping(tx, workspace_id, &idp_group_ci)?;
        if before
            .as_ref()
            .is_some_and(|m| m.role == role.as_str() && m.idp_group == idp_group)
        {
            return Ok(before.expect("checked above"));
        }
        let was_owner = before
            .as_ref()
            .is_some_and(|m| m.role == Role::Owner.as_str());
        authority.allows(was_owner != (role == Role::Owner))?;
        keep_an_owner(tx, workspace_id, |tx| {
            diesel::delete(group_mappings::table.find((workspace_id, &idp_group_ci)))
                .execute(tx.conn())?;
            diesel::insert_into(group_mappings::table)
                .values((
                    group_mappings::workspace_id.eq(workspace_id),
                    group_mappings::idp_group_ci.eq(&idp_group_ci),
                    group_mappings::idp_group.eq(&idp_group),
                    group_mappings::role.eq(role.as_str()),
                    group_mappings::updated_at.eq(crate::time::now()),
                ))
                .execute(tx.conn())?;
            Ok::<_, AccessError>(())
        })?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "access.mapping.set",
                target: Target {
                    kind: "idp_group",
                    id: &idp_group,
                },
                details: json!({ "before": before.map(|m| m.role), "after": role }),
            },
        )?;
        Ok(mapping(tx, workspace_id, &idp_group_ci)?.expect("just written"))
    })
}

pub fn remove_mapping(
    conn: &mut Conn,
    workspace_id: &str,
    idp_group: &str,
    authority: OwnerAuthority,
    context: &AuditContext,
) -> Result<(), AccessError> {
    let idp_group_ci = idp_group.trim().to_lowercase();
    conn.write(|tx| {
        let before = mapping(tx, workspace_id, &idp_group_ci)?.ok_or_else(|| {
            AccessError::NotFound(format!("no mapping for IdP group {idp_group:?}"))
        })?;
        authority.allows(before.role == Role::Owner.as_str())?;
        keep_an_owner(tx, workspace_id, |tx| {
            diesel::delete(group_mappings::table.find((workspace_id, &idp_group_ci)))
                .execute(tx.conn())?;
            Ok::<_, AccessError>(())
        })?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "access.mapping.removed",
                target: Target {
                    kind: "idp_group",
                    id: &before.idp_group,
                },
                details: json!({ "before": before.role, "after": null }),
            },
        )?;
        Ok(())
    })
}

fn mapping(
    conn: &mut DbConnection,
    workspace_id: &str,
    idp_group_ci: &str,
) -> QueryResult<Option<GroupMapping>> {
    group_mappings::table
        .find((workspace_id, idp_group_ci))
        .select(MAPPING_COLUMNS)
        .first(conn)
        .optional()
}

/// Whether an active member of the workspace is an Owner, directly or through a group.
pub fn has_owner(conn: &mut DbConnection, workspace_id: &str) -> QueryResult<bool> {
    let owner = Role::Owner.as_str();
    let direct: Vec<String> = member_roles::table
        .filter(member_roles::workspace_id.eq(workspace_id))
        .filter(member_roles::role.eq(owner))
        .select(member_roles::member_id)
        .load(conn)?;
    if directory::any_active(conn, workspace_id, &direct)? {
        return Ok(true);
    }
    let owner_groups: BTreeSet<String> = group_mappings::table
        .filter(group_mappings::workspace_id.eq(workspace_id))
        .filter(group_mappings::role.eq(owner))
        .select(group_mappings::idp_group_ci)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    directory::any_active_in_groups(conn, workspace_id, &owner_groups)
}

/// A change that would take a workspace's last Owner away.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("this change would leave the workspace without an Owner; make someone else an Owner first")]
pub struct LastOwner;

impl From<LastOwner> for ScimError {
    fn from(refusal: LastOwner) -> Self {
        ScimError::Http(actix_web::http::StatusCode::CONFLICT, refusal.to_string())
    }
}

impl From<LastOwner> for AccessError {
    fn from(_: LastOwner) -> Self {
        AccessError::LastOwner
    }
}

/// Runs `change` and refuses it if the workspace had an Owner before and has none after. Call it
/// inside the transaction of the change, so a refusal rolls the change back.
pub fn keep_an_owner<T, E>(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    change: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error> + From<LastOwner>,
{
    let check = OwnerCheck::before(tx, workspace_id, true)?;
    let outcome = change(tx)?;
    check.after::<E>(tx, workspace_id)?;
    Ok(outcome)
}

/// [`keep_an_owner`] in two steps, for a change that is not one closure: `before` (when the change
/// can take an Owner away at all), the change, then `after`, inside one transaction.
#[must_use = "call after() once the change is made"]
pub struct OwnerCheck {
    had_owner: bool,
}

impl OwnerCheck {
    pub fn before(
        conn: &mut DbConnection,
        workspace_id: &str,
        can_remove_an_owner: bool,
    ) -> QueryResult<OwnerCheck> {
        Ok(OwnerCheck {
            had_owner: can_remove_an_owner && has_owner(conn, workspace_id)?,
        })
    }

    /// Before changing a group: only members leaving an Owner-mapped group (or the whole group,
    /// renamed or deleted) can take an Owner away, so a change that only adds members reads
    /// nothing.
    pub fn for_group(
        conn: &mut DbConnection,
        workspace_id: &str,
        group_name: &str,
        takes_members_away: bool,
    ) -> QueryResult<OwnerCheck> {
        let owner_group = takes_members_away && maps_to_owner(conn, workspace_id, group_name)?;
        OwnerCheck::before(conn, workspace_id, owner_group)
    }

    pub fn after<E>(self, conn: &mut DbConnection, workspace_id: &str) -> Result<(), E>
    where
        E: From<diesel::result::Error> + From<LastOwner>,
    {
        if self.had_owner && !has_owner(conn, workspace_id)? {
            return Err(LastOwner.into());
        }
        Ok(())
    }
}

/// Whether the IdP group `group_name` is mapped to the owner role.
pub fn maps_to_owner(
    conn: &mut DbConnection,
    workspace_id: &str,
    group_name: &str,
) -> QueryResult<bool> {
    Ok(mapping(conn, workspace_id, &group_name.to_lowercase())?
        .is_some_and(|m| m.role == Role::Owner.as_str()))
}

/// Deprovisioning: takes a member's direct roles and direct grants away (group roles go with the
/// group memberships the IdP removes), ends their sessions and revokes the tokens they minted.
/// Returns what was removed, for the audit event.
pub fn remove_direct_access(tx: &mut Tx<'_>, member_id: &str) -> QueryResult<Value> {
    let roles: Vec<String> = member_roles::table
        .filter(member_roles::member_id.eq(member_id))
        .select(member_roles::role)
        .load(tx.conn())?;
    diesel::delete(member_roles::table.filter(member_roles::member_id.eq(member_id)))
        .execute(tx.conn())?;
    let grants = super::grants::forget_member(tx, member_id)?;
    let now = crate::time::now();
    let sessions = crate::sessions::revoke_member(tx, member_id, now)?;
    let tokens = crate::tokens::revoke_minted_by(tx, member_id, now)?;
    Ok(json!({
        "roles_removed": roles,
        "grants_removed": grants,
        "sessions_ended": sessions,
        "tokens_revoked": tokens,
    }))
}

/// Reactivation restores the least access, a direct Read-Only role; more must be granted again.
pub fn restore_minimal_access(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    member_id: &str,
) -> QueryResult<Value> {
    let direct: i64 = member_roles::table
        .filter(member_roles::member_id.eq(member_id))
        .count()
        .get_result(tx.conn())?;
    if direct > 0 {
        // Roles given while the member was deactivated stand.
        return Ok(json!({ "roles_added": [] }));
    }
    diesel::insert_into(member_roles::table)
        .values((
            member_roles::member_id.eq(member_id),
            member_roles::workspace_id.eq(workspace_id),
            member_roles::role.eq(Role::ReadOnly.as_str()),
            member_roles::created_at.eq(crate::time::now()),
        ))
        .execute(tx.conn())?;
    Ok(json!({ "roles_added": [Role::ReadOnly] }))
}

/// Gives `to` a direct Owner role and takes it from `from`, who must hold it directly.
pub fn transfer_ownership(
    conn: &mut Conn,
    workspace_id: &str,
    from: &str,
    to: &str,
    context: &AuditContext,
) -> Result<(Member, Member), AccessError> {
    conn.write(|tx| {
        let from = require(tx, workspace_id, from)?;
        let to = require(tx, workspace_id, to)?;
        if !to.active {
            return Err(AccessError::Invalid(format!(
                "{} is deactivated and cannot become an Owner",
                to.user_name
            )));
        }
        let owner = Role::Owner.as_str();
        let removed = diesel::delete(
            member_roles::table
                .filter(member_roles::member_id.eq(&from.id))
                .filter(member_roles::role.eq(owner)),
        )
        .execute(tx.conn())?;
        if removed == 0 {
            return Err(AccessError::Invalid(format!(
                "{} is not an Owner by direct assignment; only an Owner transfers ownership",
                from.user_name
            )));
        }
        let already_owner: i64 = member_roles::table
            .filter(member_roles::member_id.eq(&to.id))
            .filter(member_roles::role.eq(owner))
            .count()
            .get_result(tx.conn())?;
        if already_owner == 0 {
            diesel::insert_into(member_roles::table)
                .values((
                    member_roles::member_id.eq(&to.id),
                    member_roles::workspace_id.eq(workspace_id),
                    member_roles::role.eq(owner),
                    member_roles::created_at.eq(crate::time::now()),
                ))
                .execute(tx.conn())?;
        }
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "access.ownership.transferred",
                target: Target {
                    kind: "member",
                    id: &to.id,
                },
                details: json!({ "from": from.user_name, "to": to.user_name }),
            },
        )?;
        Ok((from, to))
    })
}
