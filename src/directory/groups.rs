//! SCIM Groups of a workspace. Memberships are rows of their own: adding or removing members
//! touches only the rows named, whatever the size of the group.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AsQuery, AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, Integer, Nullable, Text, Timestamp};
use serde_json::{Value, json};

use super::store::{self, Page, changed_attributes};
use super::values;
use crate::audit::{self, AuditContext, Event, Target};
use crate::db::rows;
use crate::db::schema::{scim_group_members, scim_groups, scim_users, scim_values};
use crate::db::stored_time::StoredTime;
use crate::db::{Conn, DbConnection, Tx};
use crate::scim::error::ScimError;
use crate::scim::resource::Document;
use crate::scim::schema::ResourceKind;

#[derive(Debug, Clone, Queryable)]
pub struct StoredGroup {
    pub seq: i64,
    pub id: String,
    pub workspace_id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    pub document: String,
    pub version: i64,
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

impl StoredGroup {
    pub fn document(&self) -> Document {
        store::parse_document(&self.document)
    }
}

/// Ids per statement when a request names many members: well under every backend's limit on
/// bind parameters (32,766 on SQLite).
const ID_CHUNK: usize = 500;

/// What a request does to a group's members.
#[derive(Debug, Default, Clone)]
pub struct MemberChange {
    /// The new full list (`replace members`), applied before `add` and `remove`.
    pub replace: Option<Vec<String>>,
    pub add: Vec<String>,
    /// None of the ids: every member (`remove` on `members` with no value).
    pub remove_all: bool,
    pub remove: Vec<String>,
}

impl MemberChange {
    pub fn is_empty(&self) -> bool {
        self.replace.is_none() && self.add.is_empty() && !self.remove_all && self.remove.is_empty()
    }

    /// Whether it can take anyone out of the group (a replacement can).
    pub fn removes_any(&self) -> bool {
        self.replace.is_some() || self.remove_all || !self.remove.is_empty()
    }

    /// Whether all it does is add members.
    pub fn only_adds(&self) -> bool {
        !self.add.is_empty() && !self.removes_any()
    }

    /// The ids it makes members (a replacement's too).
    pub fn added(&self) -> impl Iterator<Item = &String> {
        self.replace.iter().flatten().chain(&self.add)
    }
}

/// Whether each id a change adds is a `User` or a `Group` of the workspace (see [`member_kinds`]).
pub struct MemberKinds(HashMap<String, &'static str>);

/// Whether `document` gives the group another name.
pub fn renames(current: &StoredGroup, document: &Document) -> bool {
    document.get("displayName").and_then(Value::as_str) != Some(current.display_name.as_str())
}

fn display_name(document: &Document) -> Result<String, ScimError> {
    match document.get("displayName") {
        Some(Value::String(name)) if !name.trim().is_empty() => Ok(name.clone()),
        _ => Err(ScimError::invalid_value("displayName is required")),
    }
}

pub fn load(
    conn: &mut DbConnection,
    workspace_id: &str,
    id: &str,
) -> Result<StoredGroup, ScimError> {
    let query = scim_groups::table
        .filter(scim_groups::workspace_id.eq(workspace_id))
        .filter(scim_groups::id.eq(id));
    crate::with_backend!(conn, |conn| query.first(conn).optional())?
        .ok_or_else(|| ScimError::NotFound(format!("no Group with id {id}")))
}

pub fn create(
    conn: &mut Conn,
    workspace_id: &str,
    document: Document,
    members: Vec<String>,
    context: &AuditContext,
) -> Result<StoredGroup, ScimError> {
    let name = display_name(&document)?;
    let id = store::new_id();
    let now = crate::time::now();
    conn.write(|tx| {
        diesel::insert_into(scim_groups::table)
            .values((
                scim_groups::id.eq(&id),
                scim_groups::workspace_id.eq(workspace_id),
                scim_groups::display_name.eq(&name),
                scim_groups::external_id.eq(document.get("externalId").and_then(Value::as_str)),
                scim_groups::document.eq(Value::Object(document.clone()).to_string()),
                scim_groups::version.eq(1),
                scim_groups::created_at.eq(now),
                scim_groups::updated_at.eq(now),
            ))
            .execute(tx.conn())?;
        values::index(tx, workspace_id, ResourceKind::Group, &id, &document)?;
        let kinds = member_kinds(tx, workspace_id, &members)?;
        let added = add_members(tx, &id, &members, &kinds)?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "scim.group.created",
                target: Target {
                    kind: "group",
                    id: &id,
                },
                details: json!({ "displayName": name, "members_added": added }),
            },
        )?;
        load(tx, workspace_id, &id)
    })
}

/// The group `id`, its row locked for the rest of the transaction (see
/// `store::locked_row!`), refused unless at `expected_version` when one is given.
pub fn locked(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    id: &str,
    expected_version: Option<&str>,
) -> Result<StoredGroup, ScimError> {
    let current = store::locked_row!(tx, scim_groups, workspace_id, id, load)?;
    store::check_version(expected_version, current.version)?;
    Ok(current)
}

/// What [`apply`] changed in a group.
pub struct Applied {
    /// The group as it now is.
    pub group: StoredGroup,
    pub display_name: String,
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Stores a group's new document and applies the member change, touching only the memberships
/// named. None when that changes nothing.
pub fn apply(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    current: &StoredGroup,
    document: Document,
    members: MemberChange,
    kinds: &MemberKinds,
) -> Result<Option<Applied>, ScimError> {
    let id = current.id.as_str();
    let name = display_name(&document)?;
    let changed = changed_attributes(&current.document(), &document);
    let mut removed = Vec::new();
    let mut added = Vec::new();
    if let Some(replacement) = &members.replace {
        let keep: BTreeSet<&String> = replacement.iter().collect();
        let leaving: Vec<String> = member_ids(tx, id)?
            .into_iter()
            .filter(|m| !keep.contains(m))
            .collect();
        removed.extend(remove_members(tx, id, &leaving)?);
        added.extend(add_members(tx, id, replacement, kinds)?);
    }
    if members.remove_all {
        let everyone = member_ids(tx, id)?;
        removed.extend(remove_members(tx, id, &everyone)?);
    }
    added.extend(add_members(tx, id, &members.add, kinds)?);
    removed.extend(remove_members(tx, id, &members.remove)?);
    if changed.is_empty() && added.is_empty() && removed.is_empty() {
        return Ok(None);
    }
    let changes = (
        scim_groups::display_name.eq(&name),
        scim_groups::external_id.eq(document.get("externalId").and_then(Value::as_str)),
        scim_groups::document.eq(Value::Object(document.clone()).to_string()),
        scim_groups::version.eq(current.version + 1),
        scim_groups::updated_at.eq(crate::time::now()),
    );
    let group: StoredGroup = crate::with_backend!(tx.conn(), |conn| crate::kept_update!(
        scim_groups::table,
        scim_groups::id.eq(id),
        changes
    )
    .returning(scim_groups::all_columns)
    .get_result(conn))?;
    if !changed.is_empty() {
        values::reindex(tx, workspace_id, ResourceKind::Group, id, &document)?;
    }
    Ok(Some(Applied {
        group,
        display_name: name,
        changed,
        added,
        removed,
    }))
}

/// Removes a group: its members, its memberships in other groups, index rows and record.
pub fn delete(tx: &mut Tx<'_>, id: &str) -> QueryResult<()> {
    diesel::delete(scim_group_members::table.filter(scim_group_members::group_id.eq(id)))
        .execute(tx.conn())?;
    store::detach(tx, id)?;
    diesel::delete(scim_groups::table.filter(scim_groups::id.eq(id))).execute(tx.conn())?;
    Ok(())
}

fn member_ids(conn: &mut DbConnection, group_id: &str) -> QueryResult<Vec<String>> {
    scim_group_members::table
        .filter(scim_group_members::group_id.eq(group_id))
        .select(scim_group_members::member_id)
        .load(conn)
}

#[derive(Insertable)]
#[diesel(table_name = scim_group_members)]
struct MemberRow<'a> {
    group_id: &'a str,
    member_id: &'a str,
    member_type: &'static str,
}

/// Which of `ids` are users and which are groups of the workspace; an id that is neither is
/// refused. It takes no lock: read before a group's row is locked, other writes to the group do
/// not wait on it.
pub fn member_kinds<'a>(
    conn: &mut DbConnection,
    workspace_id: &str,
    ids: impl IntoIterator<Item = &'a String>,
) -> Result<MemberKinds, ScimError> {
    let wanted: Vec<&String> = ids
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // In chunks: a database takes only so many bind parameters in one statement.
    let mut kinds = HashMap::with_capacity(wanted.len());
    let mut unknown: Vec<&str> = Vec::new();
    for chunk in wanted.chunks(ID_CHUNK) {
        let users = scim_users::table
            .filter(store::in_workspace(scim_users::workspace_id, workspace_id))
            .select(scim_users::id);
        let users: BTreeSet<String> = crate::load_where_in!(conn, users, scim_users::id, chunk)?
            .into_iter()
            .collect();
        let groups = scim_groups::table
            .filter(store::in_workspace(scim_groups::workspace_id, workspace_id))
            .select(scim_groups::id);
        let groups: BTreeSet<String> = crate::load_where_in!(conn, groups, scim_groups::id, chunk)?
            .into_iter()
            .collect();
        for id in chunk {
            match (users.contains(*id), groups.contains(*id)) {
                (true, _) => kinds.insert((*id).clone(), "User"),
                (_, true) => kinds.insert((*id).clone(), "Group"),
                _ => {
                    unknown.push(id);
                    None
                }
            };
        }
    }
    if !unknown.is_empty() {
        let shown: Vec<&str> = unknown.iter().take(20).copied().collect();
        let more = if unknown.len() > shown.len() {
            format!(" and {} more", unknown.len() - shown.len())
        } else {
            String::new()
        };
        return Err(ScimError::invalid_value(format!(
            "unknown member ids: {}{more}",
            shown.join(", ")
        )));
    }
    Ok(MemberKinds(kinds))
}

/// Adds the ids not already members, of the kinds [`member_kinds`] found; returns the ids added.
fn add_members(
    tx: &mut Tx<'_>,
    group_id: &str,
    ids: &[String],
    kinds: &MemberKinds,
) -> Result<Vec<String>, ScimError> {
    let wanted = distinct_other_than(group_id, ids)?;
    let mut added = Vec::new();
    for chunk in wanted.chunks(ID_CHUNK) {
        let rows = chunk
            .iter()
            .map(|id| {
                let member_type =
                    kinds.0.get(*id).copied().ok_or_else(|| {
                        ScimError::invalid_value(format!("unknown member ids: {id}"))
                    })?;
                Ok(MemberRow {
                    group_id,
                    member_id: id,
                    member_type,
                })
            })
            .collect::<Result<Vec<_>, ScimError>>()?;
        added.extend(insert_new_members(tx, &rows)?);
    }
    Ok(added)
}

/// `ids` without repeats, in order; refused if the group is among them.
pub fn distinct_other_than<'a>(
    group_id: &str,
    ids: &'a [String],
) -> Result<Vec<&'a String>, ScimError> {
    let wanted: Vec<&String> = ids.iter().collect::<BTreeSet<_>>().into_iter().collect();
    if wanted.iter().any(|id| id.as_str() == group_id) {
        return Err(ScimError::invalid_value(
            "a group cannot be a member of itself",
        ));
    }
    Ok(wanted)
}

/// One request's members to add, in [`add_members_together`]: its ids (without repeats, as
/// [`distinct_other_than`] gives them) and who asked.
pub struct MembersWanted<'a> {
    pub ids: Vec<&'a str>,
    pub context: &'a AuditContext,
}

/// What [`add_members_together`] did: the group as changed, if it changed, and which requests
/// were accepted.
pub struct AddedTogether {
    pub group: Option<StoredGroup>,
    accepted: Vec<i32>,
}

impl AddedTogether {
    /// Whether every id of the `index`th request is a user or a group of the workspace, so that
    /// its ids are members now (`group` is None if none of the accepted requests added anyone,
    /// or the workspace has no such group).
    pub fn accepted(&self, index: usize) -> bool {
        i32::try_from(index + 1).is_ok_and(|requester| self.accepted.contains(&requester))
    }
}

/// Adds the members several requests ask for to a group, in one statement on PostgreSQL (made
/// through `Conn::write_in_one_statement`), for changes that only add members and expect no
/// version: how Okta and Entra push each assignment. The group's row is then locked only while
/// the statement runs, and requests queued for the group share it and its commit. A request
/// naming an id that is no user or group of the workspace is not accepted and adds no one; the
/// others are. One event is recorded for each request that added someone, with the members it
/// added (a member two requests name is added by the first).
pub fn add_members_together(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    group_id: &str,
    requests: &[MembersWanted<'_>],
) -> Result<AddedTogether, ScimError> {
    let mut requesters = Vec::new();
    let mut ids = Vec::new();
    for (requester, request) in (1..).zip(requests) {
        requesters.extend(std::iter::repeat_n(requester, request.ids.len()));
        ids.extend(request.ids.iter().copied());
    }
    let distinct: Vec<&str> = ids
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let statement = PgMembersAdded {
        workspace_id,
        group_id,
        requesters,
        ids,
        distinct,
        now: crate::time::now(),
        record: audit::RecordInStatement::new(
            requests.iter().map(|request| request.context),
            workspace_id,
            "scim.group.updated",
            Target {
                kind: "group",
                id: group_id,
            },
            audit::Events::Each(
                "SELECT new.requester, json_build_object('displayName', changed.display_name, \
                 'changed', json_build_array(), 'members_added', json_agg(added.member_id \
                 ORDER BY added.member_id), 'members_removed', json_build_array())::text FROM \
                 changed, added JOIN new ON new.id = added.member_id GROUP BY new.requester, \
                 changed.display_name",
            ),
        ),
    };
    let (group, accepted) = statement.get_result(tx.postgres()?)?;
    Ok(AddedTogether { group, accepted })
}

/// The statement of [`add_members_together`]. `wanted` pairs each request (its position,
/// counted from one) with each of its ids; `known` is each id that is a user or a group of the
/// workspace, with its kind; `accepted`, each request all of whose ids are known; `new`, each id
/// of an accepted request that is not a member in the statement's snapshot, with the first
/// request naming it. The group changes if there is one, its version raised once for each
/// request adding someone, as if they had been made one after another (a member that another
/// change adds meanwhile then raises the version for nothing, which no reader can tell from a
/// change). The group's row is locked first, as every other change to a group locks it, so that
/// the two cannot deadlock; the memberships inserted decide the audit events, and the
/// workspace's row is locked last. The one row answered holds the group if it changed, and the
/// accepted requests.
struct PgMembersAdded<'a> {
    workspace_id: &'a str,
    group_id: &'a str,
    requesters: Vec<i32>,
    ids: Vec<&'a str>,
    distinct: Vec<&'a str>,
    now: NaiveDateTime,
    record: audit::RecordInStatement<'a>,
}

impl QueryId for PgMembersAdded<'_> {
    type QueryId = PgMembersAdded<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for PgMembersAdded<'_> {
    type SqlType = (
        Nullable<<scim_groups::table as AsQuery>::SqlType>,
        Array<Integer>,
    );
}

impl QueryFragment<Pg> for PgMembersAdded<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        const COLUMNS: &str = "seq, id, workspace_id, display_name, external_id, document, \
                               version, created_at, updated_at";
        out.push_sql("WITH wanted AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Integer>, _>(&self.requesters)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.ids)?;
        out.push_sql(
            ") AS wanted (requester, id)), known AS (SELECT id, 'User' AS member_type FROM \
             scim_users WHERE id = ANY(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.distinct)?;
        out.push_sql(") AND workspace_id = ");
        out.push_bind_param::<Text, &str>(&self.workspace_id)?;
        out.push_sql(" UNION ALL SELECT id, 'Group' FROM scim_groups WHERE id = ANY(");
        out.push_bind_param::<Array<Text>, _>(&self.distinct)?;
        out.push_sql(") AND workspace_id = ");
        out.push_bind_param::<Text, &str>(&self.workspace_id)?;
        out.push_sql(
            "), accepted AS (SELECT requester FROM wanted LEFT JOIN known USING (id) GROUP BY \
             requester HAVING count(known.id) = count(*)), new AS (SELECT known.id, \
             known.member_type, min(wanted.requester) AS requester FROM wanted JOIN accepted \
             USING (requester) JOIN known USING (id) WHERE NOT EXISTS (SELECT 1 FROM \
             scim_group_members AS present WHERE present.group_id = ",
        );
        out.push_bind_param::<Text, &str>(&self.group_id)?;
        out.push_sql(
            " AND present.member_id = known.id) GROUP BY known.id, known.member_type), \
             changed AS (UPDATE scim_groups SET version = version + (SELECT count(DISTINCT \
             requester) FROM new), updated_at = ",
        );
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Text, &str>(&self.group_id)?;
        out.push_sql(" AND workspace_id = ");
        out.push_bind_param::<Text, &str>(&self.workspace_id)?;
        out.push_sql(" AND EXISTS (SELECT 1 FROM new) RETURNING ");
        out.push_sql(COLUMNS);
        out.push_sql(
            "), added AS (INSERT INTO scim_group_members (group_id, member_id, member_type) \
             SELECT changed.id, new.id, new.member_type FROM changed, new \
             ON CONFLICT DO NOTHING RETURNING member_id), ",
        );
        self.record.walk_ast(out.reborrow())?;
        out.push_sql(
            " SELECT changed.*, ARRAY(SELECT requester FROM accepted) FROM (SELECT 1) \
                      AS answer LEFT JOIN changed ON TRUE",
        );
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for PgMembersAdded<'_> {}

/// Inserts the memberships not already there, and returns the ids of the members inserted: the
/// rows already present are skipped by the insert itself, with no read before it.
fn insert_new_members(tx: &mut Tx<'_>, rows: &[MemberRow]) -> QueryResult<Vec<String>> {
    let insert = || diesel::insert_into(scim_group_members::table);
    let member_id = scim_group_members::member_id;
    match (tx.conn(), rows) {
        // One row at a time on SQLite (see `insert_rows!`).
        (DbConnection::Sqlite(conn), rows) => rows
            .iter()
            .filter_map(|row| {
                let inserted = insert().values(row).on_conflict_do_nothing();
                inserted
                    .returning(member_id)
                    .get_result(conn)
                    .optional()
                    .transpose()
            })
            .collect(),
        (DbConnection::Postgres(_), []) => Ok(Vec::new()),
        (DbConnection::Postgres(conn), rows) => insert()
            .values(rows)
            .on_conflict_do_nothing()
            .returning(member_id)
            .get_results(conn),
    }
}

/// Removes exactly the ids named (those that are members); returns the ids removed.
fn remove_members(tx: &mut Tx<'_>, group_id: &str, ids: &[String]) -> QueryResult<Vec<String>> {
    let mut removed = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let chunk: Vec<&String> = chunk.iter().collect();
        let present = members_among(tx, group_id, &chunk)?;
        if !present.is_empty() {
            let of_group = diesel::delete(scim_group_members::table)
                .filter(scim_group_members::group_id.eq(group_id));
            let member_id = scim_group_members::member_id;
            let present = present.as_slice();
            crate::where_in!(tx.conn(), of_group, member_id, present, |query, conn| query
                .execute(conn))?;
        }
        removed.extend(present);
    }
    Ok(removed)
}

/// Which of `ids` are members of the group: one look-up of the membership index per id.
fn members_among(
    conn: &mut DbConnection,
    group_id: &str,
    ids: &[&String],
) -> QueryResult<Vec<String>> {
    let members = scim_group_members::table
        .filter(scim_group_members::group_id.eq(group_id))
        .select(scim_group_members::member_id);
    crate::load_where_in!(conn, members, scim_group_members::member_id, ids)
}

pub fn list(
    conn: &mut DbConnection,
    workspace_id: &str,
    page: &Page,
) -> Result<(i64, Vec<StoredGroup>), ScimError> {
    let mut whole = rows::Whole::<StoredGroup, <scim_groups::table as AsQuery>::SqlType>::default();
    Ok(store::list_page!(
        conn,
        scim_groups,
        workspace_id,
        page,
        &mut whole
    )?)
}

/// One membership, as a group's `members` shows it.
#[derive(Debug, Clone)]
pub struct Member {
    pub group_id: String,
    pub member_id: String,
    /// `User` or `Group`.
    pub member_type: String,
    /// The member's displayName (a user's, when it has one; a group's), which Entra reads.
    pub display: Option<String>,
}

/// The members of the groups named, ordered by group and member id; with `after`, only members
/// whose id sorts after it (for streaming a large group batch by batch), and at most `limit`.
pub fn members_of(
    conn: &mut DbConnection,
    group_ids: &[String],
    after: Option<&str>,
    limit: Option<i64>,
) -> QueryResult<Vec<Member>> {
    // A user's displayName is its value-index row, found by the primary key; a group's is a
    // column.
    let user_display = scim_values::table.on(scim_values::resource_id
        .eq(scim_group_members::member_id)
        .and(scim_values::attribute.eq("displayname"))
        .and(scim_values::element.eq(0))
        .and(scim_values::sub.eq("")));
    let group_display = scim_groups::table.on(scim_groups::id.eq(scim_group_members::member_id));
    let mut query = scim_group_members::table
        .left_join(user_display)
        .left_join(group_display)
        .filter(scim_group_members::group_id.eq_any(group_ids))
        .select((
            scim_group_members::group_id,
            scim_group_members::member_id,
            scim_group_members::member_type,
            scim_values::value.nullable(),
            scim_groups::display_name.nullable(),
        ))
        .order((
            scim_group_members::group_id.asc(),
            scim_group_members::member_id.asc(),
        ))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(scim_group_members::member_id.gt(after.to_owned()));
    }
    if let Some(limit) = limit {
        query = query.limit(limit);
    }
    type Row = (String, String, String, Option<String>, Option<String>);
    let rows: Vec<Row> = query.load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(group_id, member_id, member_type, user_display, group_display)| Member {
                group_id,
                member_id,
                member_type,
                display: user_display.or(group_display),
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use diesel::connection::{Instrumentation, InstrumentationEvent};
    use diesel::sql_types::Text;

    use super::*;
    use crate::db::{self, DatabaseUrl};
    use crate::workspaces::{self, NewWorkspace};

    #[derive(QueryableByName)]
    struct PlanStep {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    /// Without statistics, SQLite would answer `workspace_id = ? AND id IN (500 ids)` by walking
    /// the workspace's index (every user of it); the lookups of new members must go by id.
    #[test]
    fn many_new_members_are_looked_up_by_id_not_by_walking_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("idgate.db").display());
        let mut conn = db::connect(&DatabaseUrl::parse(&url).unwrap()).unwrap();
        db::run_migrations(&mut conn).unwrap();
        let context = AuditContext::cli();
        let new = NewWorkspace {
            slug: "acme".into(),
            name: None,
            hipaa: false,
        };
        let workspace = workspaces::create(&mut conn, new, &context).unwrap();

        let statements = Arc::new(Mutex::new(Vec::new()));
        let seen = statements.clone();
        let recording: Box<dyn Instrumentation> =
            Box::new(move |event: InstrumentationEvent<'_>| {
                if let InstrumentationEvent::StartQuery { query, .. } = event {
                    seen.lock().unwrap().push(query.to_string());
                }
            });
        conn.set_instrumentation(recording);
        let ids: Vec<String> = (0..500).map(|_| store::new_id()).collect();
        let document = Document::from_iter([("displayName".into(), json!("Everyone"))]);
        let refused = create(&mut conn, &workspace.id, document, ids, &context);
        assert!(matches!(refused, Err(ScimError::BadRequest { .. })));

        let lookups: Vec<String> = statements
            .lock()
            .unwrap()
            .iter()
            .filter_map(|statement| statement.split(" -- binds:").next())
            .filter(|sql| sql.starts_with("SELECT") && sql.contains(" IN ("))
            .map(str::to_owned)
            .collect();
        assert!(lookups.len() >= 2, "{lookups:?}");
        for sql in lookups {
            let plan: Vec<PlanStep> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                .load(&mut *conn)
                .unwrap();
            let plan: Vec<String> = plan.into_iter().map(|step| step.detail).collect();
            let statement = &sql[..sql.len().min(120)];
            assert!(
                !plan.iter().any(|step| step.contains("_workspace ")),
                "{statement}...\n{plan:?}"
            );
        }
    }
}
