//! What Users and Groups storage share: documents, versions and the shape of a page request.

use diesel::sql_types::Text;
use serde_json::Value;

use diesel::dsl::{Concat, Eq};
use diesel::prelude::*;

use crate::db::Tx;
use crate::db::raw::RawSql;
use crate::db::schema::scim_group_members;
use crate::scim::error::ScimError;
use crate::scim::resource::Document;

/// A stored document; written by this module's callers from a JSON object, so it parses.
pub fn parse_document(text: &str) -> Document {
    match serde_json::from_str(text) {
        Ok(Value::Object(document)) => document,
        _ => {
            tracing::error!("a stored SCIM document is not a JSON object");
            Document::new()
        }
    }
}

/// Removes what refers to a user or group being deleted: its memberships in groups and its
/// value-index rows.
pub fn detach(tx: &mut Tx<'_>, id: &str) -> QueryResult<()> {
    diesel::delete(scim_group_members::table.filter(scim_group_members::member_id.eq(id)))
        .execute(tx.conn())?;
    super::values::remove(tx, id)
}

/// A new user's or group's id: a UUID whose leading bits are the time (version 7, RFC 9562), so
/// that ids made one after another sort next to one another. Every B-tree keyed by an id (the
/// resources' own, the value index, members, the audit log's targets) then takes a new resource
/// on the page the last one went to, where random ids dirty a page of their own for each index a
/// write touches. The creation time this shows is in `meta.created` anyway.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The weak ETag of a version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Compares an `If-Match` header with the stored version: `*` matches anything.
pub fn check_version(if_match: Option<&str>, version: i64) -> Result<(), ScimError> {
    match if_match {
        None => Ok(()),
        Some(header)
            if header
                .split(',')
                .any(|tag| matches_version(tag.trim(), version)) =>
        {
            Ok(())
        }
        Some(_) => Err(ScimError::PreconditionFailed(etag(version))),
    }
}

pub fn matches_version(tag: &str, version: i64) -> bool {
    tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == version.to_string()
}

/// Names of the top-level attributes whose values differ between two documents.
pub fn changed_attributes(before: &Document, after: &Document) -> Vec<String> {
    let mut names: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|key| before.get(*key) != after.get(*key))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `workspace_id = ?` for a lookup of rows by their ids, written so that no index serves it and
/// the ids' own index drives the lookup. SQLite, which keeps no statistics unless asked, guesses
/// that an equality on an index matches about ten rows, so it preferred walking the workspace's
/// index to looking up a list of ids: at 1,000,000 users, adding 500 members to a group read every
/// user of the workspace, twice.
pub fn in_workspace<C>(column: C, workspace_id: &str) -> Eq<Concat<C, &'static str>, &str>
where
    C: TextExpressionMethods + Expression<SqlType = Text>,
{
    column.concat("").eq(workspace_id)
}

/// A list request after parsing: the filter as SQL, the sort, and the window.
#[derive(Debug, Clone)]
pub struct Page {
    pub condition: Option<RawSql>,
    /// Missing-last key, sort key, descending.
    pub sort: Option<(RawSql<Text>, RawSql<Text>, bool)>,
    pub offset: i64,
    pub limit: i64,
    /// Cursor paging (RFC 9865): only resources created after this `seq`.
    pub after: Option<i64>,
    /// How many resources match, when the caller already knows: not counted again.
    pub known_total: Option<i64>,
    /// The caller read this page before, unchanged since, and likely keeps its resources: a plain
    /// page whose total is known is then read as ids first (see `users::list`).
    pub read_before: bool,
}

impl Page {
    /// Whether the filter's cost is the client's to choose (anything but a one-`eq` lookup), so
    /// that its query runs within [`crate::db::budget`].
    pub fn is_budgeted(&self) -> bool {
        self.condition
            .as_ref()
            .is_some_and(|condition| !condition.is_reusable())
    }

    /// Whether this is a page of the whole list in creation order, which an IdP's import walks
    /// from the first page to the last.
    pub fn walks_everything(&self) -> bool {
        self.is_plain() && self.after.is_none()
    }

    /// Whether it is a page of the whole list in creation order, by index or by cursor.
    pub fn is_plain(&self) -> bool {
        self.condition.is_none() && self.sort.is_none()
    }
}

/// The rows of a plain page (see [`Page::is_plain`]): an import's every page, in one shape, so
/// that it stays prepared (a boxed query is prepared anew on every run). Every `seq` is positive.
macro_rules! plain_page {
    ($table:ident, $workspace_id:expr, $page:expr) => {
        $table::table
            .filter($table::workspace_id.eq($workspace_id))
            .filter($table::seq.gt($page.after.unwrap_or(0)))
            .order($table::seq.asc())
            .offset($page.offset)
            .limit($page.limit)
    };
}
pub(crate) use plain_page;

/// Loads one page of a SCIM resource table (`scim_users` or `scim_groups`) in a workspace: the
/// number of resources matching, then the page in the requested order, ties broken by creation,
/// each row made by `$reader` (a [`crate::db::rows::ReadRow`]).
///
/// With a filter, the workspace is compared through `workspace_id || ''`, which no index serves:
/// SQLite, which keeps no statistics unless asked, would otherwise walk the workspace's index row
/// by row and test the filter on each, where the filter's own index lookup finds the few rows that
/// match (`userName eq` at 100,000 users went from one request in 6 ms to a lookup).
macro_rules! list_page {
    ($conn:expr, $table:ident, $workspace_id:expr, $page:expr, $reader:expr) => {(|| -> diesel::QueryResult<_> {
        let page: &$crate::directory::store::Page = $page;
        let base = || match &page.condition {
            Some(condition) => $table::table
                .filter(
                    $crate::db::raw::RawSql::<diesel::sql_types::Bool>::default()
                        .sql("workspace_id || '' = ")
                        .text($workspace_id)
                        .sql(" AND ")
                        .sql($crate::db::budget::WITHIN_BUDGET)
                        .reusable(),
                )
                .filter(condition.clone())
                .into_boxed::<$crate::db::MultiBackend>(),
            None => $table::table
                .filter($table::workspace_id.eq($workspace_id))
                .into_boxed::<$crate::db::MultiBackend>(),
        };
        let found: Vec<_> = if page.is_plain() {
            let walk = $crate::directory::store::plain_page!($table, $workspace_id, page);
            $crate::with_backend!(&mut *$conn, |conn| $crate::db::rows::load_with(conn, walk, $reader))?
        } else {
            let mut rows = base();
            if let Some((missing_last, key, descending)) = &page.sort {
                rows = rows.order(missing_last.clone());
                rows = if *descending {
                    rows.then_order_by(key.clone().sql(" DESC"))
                } else {
                    rows.then_order_by(key.clone())
                };
            }
            if let Some(after) = page.after {
                rows = rows.filter($table::seq.gt(after));
            }
            let rows = rows
                .then_order_by($table::seq.asc())
                .offset(page.offset)
                .limit(page.limit);
            $crate::db::rows::load_with(&mut *$conn, rows, $reader)?
        };
        // A first page that is not full holds every match (a lookup by userName, say): no count.
        let total: i64 = match page.known_total {
            Some(total) => total,
            None if page.offset == 0 && page.after.is_none() && (found.len() as i64) < page.limit => {
                found.len() as i64
            }
            None if page.condition.is_none() => {
                let all = $table::table.filter($table::workspace_id.eq($workspace_id)).count();
                $crate::with_backend!(&mut *$conn, |conn| all.get_result(conn))?
            }
            None => base().count().get_result($conn)?,
        };
        Ok((total, found))
    })()};
}
pub(crate) use list_page;

/// The row `$id` of `$table` in the workspace, with its write lock taken before it is read: on
/// PostgreSQL two concurrent PATCHes of one resource then run one after the other instead of both
/// reading the old document and the later write losing the earlier change. There the lock and the
/// read are one statement, an UPDATE that writes the row unchanged and returns it. SQLite lets one
/// writer in at a time (`BEGIN IMMEDIATE`, or the store's one writer), so there the row is read by
/// `$load`, which also answers for a row that is not there.
macro_rules! locked_row {
    ($tx:expr, $table:ident, $workspace_id:expr, $id:expr, $load:expr) => {{
        let tx: &mut $crate::db::Tx<'_> = $tx;
        let locked = match tx.conn() {
            $crate::db::DbConnection::Postgres(conn) => $crate::kept_update!(
                $table::table,
                $table::workspace_id
                    .eq($workspace_id)
                    .and($table::id.eq($id)),
                $table::version.eq($table::version)
            )
            .returning($table::all_columns)
            .get_result(conn)
            .optional()?,
            $crate::db::DbConnection::Sqlite(_) => None,
        };
        match locked {
            Some(row) => Ok(row),
            None => $load(tx, $workspace_id, $id),
        }
    }};
}
pub(crate) use locked_row;

#[cfg(test)]
mod tests {
    #[test]
    fn ids_made_one_after_another_sort_in_that_order() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_id()).collect();
        assert!(ids.is_sorted(), "ids out of creation order");
        assert_eq!(
            ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
            ids.len()
        );
    }
}
