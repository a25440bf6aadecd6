//! Members (a person of one workspace: a SCIM user, provisioned by the IdP or made just in time at
//! their first SAML login) and the groups they are in.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde::Serialize;

use super::store;
use crate::db::raw::RawSql;
use crate::db::schema::{
    saml_member_groups, scim_group_members, scim_groups, scim_users, scim_values, workspaces,
};
use crate::db::{DbConnection, Tx};
use crate::workspaces::Workspace;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Serialize)]
pub struct Member {
    pub id: String,
    pub user_name: String,
    pub active: bool,
}

crate::columns!(MEMBER_COLUMNS = (scim_users::id, scim_users::user_name, scim_users::active));

/// Members loaded per query: few enough for any backend's limit on bound parameters.
const MEMBER_CHUNK: usize = 500;

/// Finds a member of the workspace by id, userName or email address (case-insensitive).
pub fn find(
    conn: &mut DbConnection,
    workspace_id: &str,
    id_or_email: &str,
) -> QueryResult<Option<Member>> {
    let lower = id_or_email.to_lowercase();
    let direct = scim_users::table
        .filter(scim_users::workspace_id.eq(workspace_id))
        .filter(
            scim_users::id
                .eq(id_or_email)
                .or(scim_users::user_name_ci.eq(&lower)),
        )
        .select(MEMBER_COLUMNS)
        .first(conn)
        .optional()?;
    match direct {
        Some(member) => Ok(Some(member)),
        None => find_by_email(conn, workspace_id, id_or_email),
    }
}

/// A member one of whose SCIM `emails` is this address (case-insensitive).
fn find_by_email(
    conn: &mut DbConnection,
    workspace_id: &str,
    email: &str,
) -> QueryResult<Option<Member>> {
    if !email.contains('@') {
        return Ok(None);
    }
    let ids = ids_by_email(conn, Some(workspace_id), &email.to_lowercase())?;
    match ids.first() {
        Some(id) => scim_users::table
            .filter(scim_users::id.eq(id))
            .select(MEMBER_COLUMNS)
            .first(conn)
            .optional(),
        None => Ok(None),
    }
}

/// The users one of whose SCIM `emails` is `email` (lower-case), in one workspace or in all.
/// Either way the lookup goes through the index that starts with the workspace, hence
/// `workspace_id IN` for all of them.
fn ids_by_email(
    conn: &mut DbConnection,
    workspace_id: Option<&str>,
    email: &str,
) -> QueryResult<Vec<String>> {
    let emails = scim_values::table
        .filter(scim_values::resource_type.eq("User"))
        .filter(scim_values::attribute.eq("emails"))
        .filter(scim_values::sub.eq("value"))
        .filter(scim_values::value_ci.eq(email))
        .select(scim_values::resource_id);
    match workspace_id {
        Some(workspace_id) => emails
            .filter(scim_values::workspace_id.eq(workspace_id))
            .load(conn),
        None => {
            let in_some_workspace = in_some_workspace(conn, "scim_values.workspace_id");
            emails.filter(in_some_workspace).load(conn)
        }
    }
}

/// `column` (a `workspace_id`) names an existing workspace, written so that each database looks
/// the rows up in the index that starts with the workspace whatever its statistics say. Until its
/// first ANALYZE, PostgreSQL planned `IN (SELECT id FROM workspaces)` as a hash join over a
/// sequential scan of the whole table (a session check at 10,000 users took 12-18 ms);
/// `= ANY(ARRAY(SELECT ...))` reads the ids once and probes the index with each.
fn in_some_workspace(conn: &DbConnection, column: &'static str) -> RawSql {
    let test = match conn {
        DbConnection::Postgres(_) => " = ANY(ARRAY(SELECT id FROM workspaces))",
        DbConnection::Sqlite(_) => " IN (SELECT id FROM workspaces)",
    };
    RawSql::default().sql(column).sql(test).reusable()
}

/// [`find`] for many names at once: ids and userNames in a query each, emails one by one.
pub fn find_many<'a>(
    conn: &mut DbConnection,
    workspace_id: &str,
    names: &BTreeSet<&'a str>,
) -> QueryResult<BTreeMap<&'a str, Member>> {
    let mut found = BTreeMap::new();
    for chunk in names
        .iter()
        .copied()
        .collect::<Vec<_>>()
        .chunks(MEMBER_CHUNK)
    {
        // Member ids are UUIDs: only names of that shape are looked up as ids.
        let (ids, others): (Vec<&str>, Vec<&str>) = chunk
            .iter()
            .partition(|name| uuid::Uuid::try_parse(name).is_ok());
        let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
        let lower: Vec<String> = others.iter().map(|name| name.to_lowercase()).collect();
        let by_id: BTreeMap<String, Member> =
            load_members(conn, workspace_id, MemberKey::Id, &ids)?
                .into_iter()
                .map(|m| (m.id.clone(), m))
                .collect();
        let by_name: BTreeMap<String, Member> =
            load_members(conn, workspace_id, MemberKey::UserName, &lower)?
                .into_iter()
                .map(|m| (m.user_name.to_lowercase(), m))
                .collect();
        for name in chunk {
            let known = by_id
                .get(*name)
                .or_else(|| by_name.get(&name.to_lowercase()));
            let member = match known {
                Some(member) => Some(member.clone()),
                // A UUID-shaped name may still be a userName; any other was asked as one already.
                None if uuid::Uuid::try_parse(name).is_ok() => find(conn, workspace_id, name)?,
                None => find_by_email(conn, workspace_id, name)?,
            };
            if let Some(member) = member {
                found.insert(*name, member);
            }
        }
    }
    Ok(found)
}

#[derive(Clone, Copy)]
enum MemberKey {
    Id,
    UserName,
}

/// The workspace's members whose id (or lower-case userName) is one of `values`. [`find_many`]
/// asks by id and by userName in two queries on one index each: one query with an OR of both
/// answered about half as fast on SQLite.
fn load_members(
    conn: &mut DbConnection,
    workspace_id: &str,
    key: MemberKey,
    values: &[String],
) -> QueryResult<Vec<Member>> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let query = scim_users::table.select(MEMBER_COLUMNS).into_boxed();
    let query = match key {
        MemberKey::Id => query
            .filter(store::in_workspace(scim_users::workspace_id, workspace_id))
            .filter(scim_users::id.eq_any(values)),
        // The index of userNames begins with the workspace.
        MemberKey::UserName => query
            .filter(scim_users::workspace_id.eq(workspace_id))
            .filter(scim_users::user_name_ci.eq_any(values)),
    };
    query.load(conn)
}

pub fn list(conn: &mut DbConnection, workspace_id: &str) -> QueryResult<Vec<Member>> {
    scim_users::table
        .filter(scim_users::workspace_id.eq(workspace_id))
        .order(scim_users::seq.asc())
        .select(MEMBER_COLUMNS)
        .load(conn)
}

/// One page of a workspace's members in userName order (case-insensitive): those whose userName
/// starts with `prefix` when one is given, after the userName `after`. A range on the index of
/// (workspace, lower-case userName), so a page costs the same in a workspace of any size.
pub fn page(
    conn: &mut DbConnection,
    workspace_id: &str,
    prefix: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Member>> {
    let mut query = scim_users::table
        .filter(scim_users::workspace_id.eq(workspace_id))
        .into_boxed::<crate::db::MultiBackend>();
    if let Some(prefix) = prefix {
        let prefix = prefix.to_lowercase();
        // Every string that starts with the prefix sorts before prefix + U+10FFFF.
        let end = format!("{prefix}\u{10FFFF}");
        query = query
            .filter(scim_users::user_name_ci.ge(prefix))
            .filter(scim_users::user_name_ci.lt(end));
    }
    if let Some(after) = after {
        query = query.filter(scim_users::user_name_ci.gt(after.to_lowercase()));
    }
    query
        .order(scim_users::user_name_ci.asc())
        .select(MEMBER_COLUMNS)
        .limit(limit)
        .load(conn)
}

/// The active memberships of a person in every workspace, by userName or by one of their SCIM
/// emails (lower-case), with their workspaces. Read on every session check, so in as few
/// statements as the indexes allow; the workspaces come in the same statement as the members.
pub fn memberships_of(
    conn: &mut DbConnection,
    email: &str,
) -> QueryResult<Vec<(Workspace, Member)>> {
    // Each lookup goes through an index that starts with the workspace, hence `workspace_id IN`
    // (one query with an `OR` of the two read every user on every session check).
    let mut ids: Vec<String> = scim_users::table
        .filter(in_some_workspace(conn, "scim_users.workspace_id"))
        .filter(scim_users::user_name_ci.eq(email))
        .select(scim_users::id)
        .load(conn)?;
    ids.extend(ids_by_email(conn, None, email)?);
    // Found by userName and by email alike, a member counts once.
    ids.sort_unstable();
    ids.dedup();
    let members = workspaces::table
        .inner_join(scim_users::table.on(scim_users::workspace_id.eq(workspaces::id)))
        .filter(scim_users::active.eq(true))
        .order(workspaces::slug.asc())
        .select((workspaces::all_columns, MEMBER_COLUMNS));
    crate::load_where_in!(conn, members, scim_users::id, ids.as_slice())
}

/// (member id, group name) for each group the members are in: SCIM groups, and the groups the
/// IdP asserted at their latest SAML login.
pub fn group_names_of(
    conn: &mut DbConnection,
    member_ids: &[String],
) -> QueryResult<Vec<(String, String)>> {
    let scim_groups = scim_group_members::table
        .inner_join(scim_groups::table.on(scim_groups::id.eq(scim_group_members::group_id)))
        .select((scim_group_members::member_id, scim_groups::display_name));
    let mut names: Vec<(String, String)> =
        crate::load_where_in!(conn, scim_groups, scim_group_members::member_id, member_ids)?;
    let saml_groups = saml_member_groups::table.select((
        saml_member_groups::member_id,
        saml_member_groups::group_name,
    ));
    let asserted: Vec<(String, String)> =
        crate::load_where_in!(conn, saml_groups, saml_member_groups::member_id, member_ids)?;
    names.extend(asserted);
    // A group can reach a member both ways; it counts once.
    names.sort_by_cached_key(|(member, group)| (member.clone(), group.to_lowercase()));
    names.dedup_by(|a, b| a.0 == b.0 && a.1.to_lowercase() == b.1.to_lowercase());
    Ok(names)
}

/// Whether any of these members of the workspace is active.
pub fn any_active(
    conn: &mut DbConnection,
    workspace_id: &str,
    member_ids: &[String],
) -> QueryResult<bool> {
    if member_ids.is_empty() {
        return Ok(false);
    }
    let active: i64 = scim_users::table
        .filter(store::in_workspace(scim_users::workspace_id, workspace_id))
        .filter(scim_users::id.eq_any(member_ids))
        .filter(scim_users::active.eq(true))
        .count()
        .get_result(conn)?;
    Ok(active > 0)
}

/// Whether an active member of the workspace is in one of these groups (lower-case names), as a
/// SCIM group member or by the IdP's assertion at their latest SAML login.
pub fn any_active_in_groups(
    conn: &mut DbConnection,
    workspace_id: &str,
    group_names_ci: &BTreeSet<String>,
) -> QueryResult<bool> {
    if group_names_ci.is_empty() {
        return Ok(false);
    }
    let group_ids: Vec<String> = scim_groups::table
        .filter(scim_groups::workspace_id.eq(workspace_id))
        .select((scim_groups::id, scim_groups::display_name))
        .load::<(String, String)>(conn)?
        .into_iter()
        .filter(|(_, name)| group_names_ci.contains(&name.to_lowercase()))
        .map(|(id, _)| id)
        .collect();
    let through_groups: i64 = scim_group_members::table
        .inner_join(scim_users::table.on(scim_users::id.eq(scim_group_members::member_id)))
        .filter(scim_group_members::group_id.eq_any(&group_ids))
        .filter(scim_users::active.eq(true))
        .count()
        .get_result(conn)?;
    if through_groups > 0 {
        return Ok(true);
    }
    let asserted: Vec<String> = saml_member_groups::table
        .inner_join(scim_users::table.on(scim_users::id.eq(saml_member_groups::member_id)))
        .filter(scim_users::workspace_id.eq(workspace_id))
        .filter(scim_users::active.eq(true))
        .select(saml_member_groups::group_name)
        .distinct()
        .load(conn)?;
    Ok(asserted
        .iter()
        .any(|group| group_names_ci.contains(&group.to_lowercase())))
}

/// The workspace's groups by name (SCIM groups, and the groups SAML logins asserted), each with
/// how many members it has, by name in any case. A SCIM group's members are counted on its key
/// alone, deactivated ones too: joining each to its user to leave those out read every member of
/// a group of 100,000 (a quarter of a second).
pub fn group_sizes(
    conn: &mut DbConnection,
    workspace_id: &str,
) -> QueryResult<BTreeMap<String, (String, i64)>> {
    let mut sizes: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let groups: Vec<(String, String)> = scim_groups::table
        .filter(scim_groups::workspace_id.eq(workspace_id))
        .select((scim_groups::id, scim_groups::display_name))
        .load(conn)?;
    let in_workspace = scim_groups::table
        .filter(scim_groups::workspace_id.eq(workspace_id))
        .select(scim_groups::id);
    let counts: BTreeMap<String, i64> = scim_group_members::table
        .filter(scim_group_members::group_id.eq_any(in_workspace))
        .group_by(scim_group_members::group_id)
        .select((scim_group_members::group_id, diesel::dsl::count_star()))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect();
    let scim = groups.into_iter().map(|(id, name)| {
        let count = counts.get(&id).copied().unwrap_or(0);
        (name, count)
    });
    let asserted: Vec<(String, i64)> = saml_member_groups::table
        .inner_join(scim_users::table.on(scim_users::id.eq(saml_member_groups::member_id)))
        .filter(scim_users::workspace_id.eq(workspace_id))
        .filter(scim_users::active.eq(true))
        .group_by(saml_member_groups::group_name)
        .select((saml_member_groups::group_name, diesel::dsl::count_star()))
        .load(conn)?;
    for (name, count) in scim.chain(asserted) {
        let entry = sizes.entry(name.to_lowercase()).or_insert((name, 0));
        entry.1 += count;
    }
    Ok(sizes)
}

/// The active members of the workspace in the group named `name` (any case), as SCIM group
/// members or by their latest SAML login's assertion; at most `limit`.
pub fn in_group_named(
    conn: &mut DbConnection,
    workspace_id: &str,
    name: &str,
    limit: i64,
) -> QueryResult<Vec<Member>> {
    let name_ci = name.to_lowercase();
    let group_ids: Vec<String> = scim_groups::table
        .filter(scim_groups::workspace_id.eq(workspace_id))
        .select((scim_groups::id, scim_groups::display_name))
        .load::<(String, String)>(conn)?
        .into_iter()
        .filter(|(_, group)| group.to_lowercase() == name_ci)
        .map(|(id, _)| id)
        .collect();
    let mut members: Vec<Member> = scim_group_members::table
        .inner_join(scim_users::table.on(scim_users::id.eq(scim_group_members::member_id)))
        .filter(scim_group_members::group_id.eq_any(&group_ids))
        .filter(scim_users::active.eq(true))
        .select(MEMBER_COLUMNS)
        .limit(limit)
        .load(conn)?;
    let asserted: Vec<(String, Member)> = saml_member_groups::table
        .inner_join(scim_users::table.on(scim_users::id.eq(saml_member_groups::member_id)))
        .filter(scim_users::workspace_id.eq(workspace_id))
        .filter(scim_users::active.eq(true))
        .select((saml_member_groups::group_name, MEMBER_COLUMNS))
        .load(conn)?;
    members.extend(
        asserted
            .into_iter()
            .filter(|(group, _)| group.to_lowercase() == name_ci)
            .map(|(_, member)| member),
    );
    members.sort_by_key(|member| member.user_name.to_lowercase());
    members.dedup_by(|a, b| a.id == b.id);
    members.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(members)
}

/// The groups the IdP asserted at a member's latest SAML login.
pub fn asserted_groups(conn: &mut DbConnection, member_id: &str) -> QueryResult<BTreeSet<String>> {
    Ok(saml_member_groups::table
        .filter(saml_member_groups::member_id.eq(member_id))
        .select(saml_member_groups::group_name)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Replaces the groups asserted for a member.
pub fn set_asserted_groups(
    tx: &mut Tx<'_>,
    member_id: &str,
    groups: &BTreeSet<String>,
) -> QueryResult<()> {
    diesel::delete(saml_member_groups::table.filter(saml_member_groups::member_id.eq(member_id)))
        .execute(tx.conn())?;
    for group in groups {
        diesel::insert_into(saml_member_groups::table)
            .values((
                saml_member_groups::member_id.eq(member_id),
                saml_member_groups::group_name.eq(group),
            ))
            .execute(tx.conn())?;
    }
    Ok(())
}
