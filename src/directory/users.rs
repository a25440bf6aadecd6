//! SCIM Users of a workspace: storage, uniqueness of userName (case-insensitive) and versions.
//! A user is recorded in the audit log as they are made (by SCIM, or at a first SAML login).

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AsQuery, AstPass, Query, QueryFragment, QueryId};
use diesel::row::Row;
use diesel::sql_types::{Bool, Nullable, Text, Timestamp};
use serde_json::{Value, json};

use super::store::{self, Page, changed_attributes};
use super::values;
use crate::audit::{self, AuditContext, Event, Target};
use crate::db::rows;
use crate::db::schema::{scim_group_members, scim_users};
use crate::db::stored_time::StoredTime;
use crate::db::{Conn, DbConnection, Reach, StoreError, Tx};
use crate::scim::error::ScimError;
use crate::scim::resource::Document;
use crate::scim::schema::ResourceKind;

#[derive(Debug, Clone, Queryable)]
pub struct StoredUser {
    pub seq: i64,
    pub id: String,
    pub workspace_id: String,
    pub user_name: String,
    pub user_name_ci: String,
    pub external_id: Option<String>,
    pub active: bool,
    pub document: String,
    pub version: i64,
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

impl StoredUser {
    pub fn document(&self) -> Document {
        store::parse_document(&self.document)
    }
}

/// The columns kept beside the document: checked here, since they must be present and well formed.
struct Columns {
    user_name: String,
    external_id: Option<String>,
    active: bool,
}

impl Columns {
    /// What the audit log records of a new user.
    fn created_event_details(&self) -> Value {
        json!({ "userName": self.user_name, "active": self.active })
    }
}

fn columns(document: &Document) -> Result<Columns, ScimError> {
    let user_name = match document.get("userName") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        _ => return Err(ScimError::invalid_value("userName is required")),
    };
    Ok(Columns {
        user_name,
        external_id: document
            .get("externalId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        active: document
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    })
}

fn taken(user_name: &str) -> ScimError {
    ScimError::Conflict(format!(
        "a user with userName {user_name:?} already exists in this workspace"
    ))
}

fn unique(user_name: &str) -> impl Fn(diesel::result::Error) -> ScimError + '_ {
    move |error| match StoreError::from(error) {
        error if error.is_unique_violation() => taken(user_name),
        error => error.into(),
    }
}

pub fn load(
    conn: &mut DbConnection,
    workspace_id: &str,
    id: &str,
) -> Result<StoredUser, ScimError> {
    let query = scim_users::table
        .filter(scim_users::workspace_id.eq(workspace_id))
        .filter(scim_users::id.eq(id));
    crate::with_backend!(conn, |conn| query.first(conn).optional())?
        .ok_or_else(|| ScimError::NotFound(format!("no User with id {id}")))
}

pub fn create(
    conn: &mut Conn,
    workspace_id: &str,
    document: Document,
    context: &AuditContext,
) -> Result<StoredUser, ScimError> {
    let action = "scim.user.created";
    match **conn {
        DbConnection::Postgres(_) => conn.write_in_one_statement(Reach::Directory, |tx| {
            insert_in_one_statement(tx, workspace_id, document, context, action)
        }),
        DbConnection::Sqlite(_) => {
            conn.write(|tx| insert(tx, workspace_id, document, context, action))
        }
    }
}

/// [`insert`] on PostgreSQL in one statement (made through `Conn::write_in_one_statement`): the
/// user's row, index rows and event go together, with no BEGIN or COMMIT round trips.
fn insert_in_one_statement(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    document: Document,
    context: &AuditContext,
    action: &str,
) -> Result<StoredUser, ScimError> {
    let columns = columns(&document)?;
    let id = store::new_id();
    let index_rows = values::rows_of(workspace_id, ResourceKind::User, &id, &document);
    let details = columns.created_event_details();
    let statement = PgUserCreated {
        id: &id,
        workspace_id,
        user_name_ci: columns.user_name.to_lowercase(),
        columns: &columns,
        document: Value::Object(document.clone()).to_string(),
        now: crate::time::now(),
        index_rows: values::PgValueRows::of(workspace_id, ResourceKind::User, &id, &index_rows),
        record: audit::RecordInStatement::new(
            [context],
            workspace_id,
            action,
            Target {
                kind: "user",
                id: &id,
            },
            audit::Events::One(details.to_string()),
        )
        .leaving_decisions_alone(),
    };
    statement
        .get_result(tx.postgres()?)
        .map_err(unique(&columns.user_name))
}

/// The statement of [`insert_in_one_statement`].
struct PgUserCreated<'a> {
    id: &'a str,
    workspace_id: &'a str,
    columns: &'a Columns,
    user_name_ci: String,
    document: String,
    now: NaiveDateTime,
    index_rows: values::PgValueRows<'a>,
    record: audit::RecordInStatement<'a>,
}

impl QueryId for PgUserCreated<'_> {
    type QueryId = PgUserCreated<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for PgUserCreated<'_> {
    type SqlType = <scim_users::table as AsQuery>::SqlType;
}

impl QueryFragment<Pg> for PgUserCreated<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        const COLUMNS: &str = "seq, id, workspace_id, user_name, user_name_ci, external_id, \
                               active, document, version, created_at, updated_at";
        out.push_sql(
            "WITH changed AS (INSERT INTO scim_users (id, workspace_id, user_name, \
             user_name_ci, document, external_id, active, version, created_at, updated_at) \
             VALUES (",
        );
        for text in [&self.id, &self.workspace_id] {
            out.push_bind_param::<Text, &str>(text)?;
            out.push_sql(", ");
        }
        for text in [&self.columns.user_name, &self.user_name_ci, &self.document] {
            out.push_bind_param::<Text, String>(text)?;
            out.push_sql(", ");
        }
        out.push_bind_param::<Nullable<Text>, _>(&self.columns.external_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Bool, _>(&self.columns.active)?;
        out.push_sql(", 1, ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(") RETURNING ");
        out.push_sql(COLUMNS);
        out.push_sql("), indexed AS (");
        self.index_rows.walk_ast(out.reborrow())?;
        out.push_sql("), ");
        self.record.walk_ast(out.reborrow())?;
        out.push_sql(" SELECT ");
        out.push_sql(COLUMNS);
        out.push_sql(" FROM changed");
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for PgUserCreated<'_> {}

/// Stores a new user inside the caller's transaction and records `action` for it: a SCIM create,
/// or a person's first SAML login.
pub fn insert(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    document: Document,
    context: &AuditContext,
    action: &str,
) -> Result<StoredUser, ScimError> {
    let columns = columns(&document)?;
    let id = store::new_id();
    let now = crate::time::now();
    let insert = diesel::insert_into(scim_users::table).values((
        scim_users::id.eq(&id),
        scim_users::workspace_id.eq(workspace_id),
        scim_users::user_name.eq(&columns.user_name),
        scim_users::user_name_ci.eq(columns.user_name.to_lowercase()),
        scim_users::external_id.eq(&columns.external_id),
        scim_users::active.eq(columns.active),
        scim_users::document.eq(Value::Object(document.clone()).to_string()),
        scim_users::version.eq(1),
        scim_users::created_at.eq(now),
        scim_users::updated_at.eq(now),
    ));
    let user = crate::with_backend!(tx.conn(), |conn| insert.get_result::<StoredUser>(conn))
        .map_err(unique(&columns.user_name))?;
    values::index(tx, workspace_id, ResourceKind::User, &id, &document)?;
    audit::record_leaving_decisions_alone(
        tx,
        context,
        Event {
            workspace_id: Some(workspace_id),
            action,
            target: Target {
                kind: "user",
                id: &id,
            },
            details: columns.created_event_details(),
        },
    )?;
    Ok(user)
}

/// The user `id`, its row locked for the rest of the transaction (see
/// `store::locked_row!`), refused unless at `expected_version` when one is given.
pub fn locked(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    id: &str,
    expected_version: Option<&str>,
) -> Result<StoredUser, ScimError> {
    let current = store::locked_row!(tx, scim_users, workspace_id, id, load)?;
    store::check_version(expected_version, current.version)?;
    Ok(current)
}

/// A new document for a stored user (PUT, PATCH), checked, and the attributes it changes.
pub struct Rewrite {
    document: Document,
    columns: Columns,
    pub changed: Vec<String>,
}

impl Rewrite {
    /// None when the document changes nothing.
    pub fn of(current: &StoredUser, document: Document) -> Result<Option<Rewrite>, ScimError> {
        let columns = columns(&document)?;
        let changed = changed_attributes(&current.document(), &document);
        Ok((!changed.is_empty()).then_some(Rewrite {
            document,
            columns,
            changed,
        }))
    }

    pub fn user_name(&self) -> &str {
        &self.columns.user_name
    }

    pub fn active(&self) -> bool {
        self.columns.active
    }
}

/// Stores a rewrite of `current`: its row and its value-index rows.
pub fn rewrite(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    current: &StoredUser,
    rewrite: &Rewrite,
) -> Result<(), ScimError> {
    let columns = &rewrite.columns;
    let changes = (
        scim_users::user_name.eq(&columns.user_name),
        scim_users::user_name_ci.eq(columns.user_name.to_lowercase()),
        scim_users::external_id.eq(&columns.external_id),
        scim_users::active.eq(columns.active),
        scim_users::document.eq(Value::Object(rewrite.document.clone()).to_string()),
        scim_users::version.eq(current.version + 1),
        scim_users::updated_at.eq(crate::time::now()),
    );
    crate::with_backend!(tx.conn(), |conn| crate::kept_update!(
        scim_users::table,
        scim_users::id.eq(&current.id),
        changes
    )
    .execute(conn))
    .map_err(unique(&columns.user_name))?;
    values::reindex(
        tx,
        workspace_id,
        ResourceKind::User,
        &current.id,
        &rewrite.document,
    )?;
    Ok(())
}

/// Removes a user: their group memberships, index rows and record.
pub fn delete(tx: &mut Tx<'_>, id: &str) -> QueryResult<()> {
    store::detach(tx, id)?;
    diesel::delete(scim_users::table.filter(scim_users::id.eq(id))).execute(tx.conn())?;
    Ok(())
}

/// A user of a page: read, or given by the caller's `kept` for their id, in which case nothing of
/// the row but the id was decoded.
pub enum Listed<K> {
    Kept(K),
    Read(StoredUser),
}

/// A page of users; `kept` gives the caller's own copy of a user by id, where it has one.
pub fn list<K>(
    conn: &mut DbConnection,
    workspace_id: &str,
    page: &Page,
    kept: impl FnMut(&str) -> Option<K>,
) -> Result<(i64, Vec<Listed<K>>), ScimError> {
    if let (true, true, Some(total)) = (page.read_before, page.is_plain(), page.known_total) {
        return Ok((total, list_ids_first(conn, workspace_id, page, kept)?));
    }
    let mut reader = UnlessKept(kept);
    Ok(store::list_page!(
        conn,
        scim_users,
        workspace_id,
        page,
        &mut reader
    )?)
}

/// A plain page read before: its ids, then the rows of the users `kept` has no copy of. On
/// PostgreSQL every column of a row crosses the socket and is parsed whether decoded or not, so a
/// page whose users the caller keeps costs its ids alone.
fn list_ids_first<K>(
    conn: &mut DbConnection,
    workspace_id: &str,
    page: &Page,
    mut kept: impl FnMut(&str) -> Option<K>,
) -> QueryResult<Vec<Listed<K>>> {
    let ids = store::plain_page!(scim_users, workspace_id, page).select(scim_users::id);
    let ids: Vec<String> = crate::with_backend!(&mut *conn, |conn| ids.load(conn))?;
    let listed: Vec<Result<K, String>> = ids.into_iter().map(|id| kept(&id).ok_or(id)).collect();
    let missing: Vec<&String> = listed.iter().filter_map(|l| l.as_ref().err()).collect();
    let mut read: HashMap<String, StoredUser> = HashMap::new();
    if !missing.is_empty() {
        let users =
            scim_users::table.filter(store::in_workspace(scim_users::workspace_id, workspace_id));
        let users: Vec<StoredUser> =
            crate::load_where_in!(conn, users, scim_users::id, missing.as_slice())?;
        read.extend(users.into_iter().map(|user| (user.id.clone(), user)));
    }
    // A user deleted between the two reads is left out, as a later read would leave them.
    Ok(listed
        .into_iter()
        .filter_map(|listed| match listed {
            Ok(kept) => Some(Listed::Kept(kept)),
            Err(id) => read.remove(&id).map(Listed::Read),
        })
        .collect())
}

/// Reads a row's id, and the rest of it only when `.0` has no copy of the user.
struct UnlessKept<F>(F);

impl<DB, F, K> rows::ReadRow<DB> for UnlessKept<F>
where
    DB: Backend,
    F: FnMut(&str) -> Option<K>,
    String: FromSql<Text, DB>,
    StoredUser: FromSqlRow<<scim_users::table as AsQuery>::SqlType, DB>,
{
    type Out = Listed<K>;
    fn read<'a>(&mut self, row: &impl Row<'a, DB>) -> deserialize::Result<Listed<K>> {
        // The table's second column, after `seq`.
        let id: String = row.get_value::<Text, String, usize>(1)?;
        Ok(match (self.0)(&id) {
            Some(kept) => Listed::Kept(kept),
            None => Listed::Read(StoredUser::build_from_row(row)?),
        })
    }
}

/// The groups each user belongs to, as (user id, group id, group display name).
pub fn groups_of(
    conn: &mut DbConnection,
    user_ids: &[String],
) -> Result<Vec<(String, String, String)>, ScimError> {
    use crate::db::schema::scim_groups;
    let query = scim_group_members::table
        .inner_join(scim_groups::table.on(scim_groups::id.eq(scim_group_members::group_id)))
        .select((
            scim_group_members::member_id,
            scim_groups::id,
            scim_groups::display_name,
        ))
        .order(scim_groups::seq.asc());
    Ok(crate::load_where_in!(
        conn,
        query,
        scim_group_members::member_id,
        user_ids
    )?)
}
