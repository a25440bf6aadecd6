//! Statements a connection keeps prepared where diesel would prepare them anew. Diesel prepares
//! literal SQL (`batch_execute`, `sql_query`) and every UPDATE on every call; a type with a static
//! query id is prepared once per connection. For a short statement run on every request or
//! write, the parse cost more than the statement.

/// Declares `$name`, a unit struct that runs `$sql` on an `SqliteConnection` (`execute`, or with
/// `-> SqlType`, `get_result`) from a statement the connection keeps.
macro_rules! prepared_sqlite {
    ($(#[$attr:meta])* $name:ident = $sql:literal $(-> $sql_type:ty)?) => {
        $(#[$attr])*
        #[derive(diesel::query_builder::QueryId)]
        struct $name;

        impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for $name {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
            ) -> diesel::QueryResult<()> {
                out.push_sql($sql);
                Ok(())
            }
        }

        $(impl diesel::query_builder::Query for $name {
            type SqlType = $sql_type;
        })?

        impl diesel::RunQueryDsl<diesel::SqliteConnection> for $name {}
    };
}
pub(crate) use prepared_sqlite;

/// An UPDATE that the connection keeps prepared. Diesel prepares every UPDATE anew, since a
/// changeset can leave out a `None` field and so change the SQL; this one is written from its
/// parts and names its statement by `Id`, a type of its own, in the connection's statement cache.
/// Made by [`crate::kept_update!`]; with [`KeptUpdate::returning`], it answers the updated rows.
pub struct KeptUpdate<Id, F, S, W, R = NoReturning> {
    /// The table, as written in SQL.
    table: F,
    changes: S,
    filter: W,
    returning: R,
    id: std::marker::PhantomData<Id>,
}

/// A [`KeptUpdate`] that answers nothing but the number of rows it changed.
pub struct NoReturning;

impl<DB: diesel::backend::Backend> diesel::query_builder::QueryFragment<DB> for NoReturning {
    fn walk_ast<'b>(
        &'b self,
        _: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        Ok(())
    }
}

impl<Id, F, S, W, E> diesel::query_builder::Query
    for KeptUpdate<Id, F, S, W, diesel::query_builder::ReturningClause<E>>
where
    E: diesel::Expression,
{
    type SqlType = E::SqlType;
}

impl<Id, F, S, W> KeptUpdate<Id, F, S, W> {
    pub fn new<T, V>(table: T, filter: W, changes: V) -> Self
    where
        T: diesel::Table<FromClause = F>,
        V: diesel::AsChangeset<Target = T, Changeset = S>,
        W: diesel::expression::AppearsOnTable<T, SqlType = diesel::sql_types::Bool>,
    {
        KeptUpdate {
            table: table.from_clause(),
            changes: changes.as_changeset(),
            filter,
            returning: NoReturning,
            id: std::marker::PhantomData,
        }
    }

    /// The same UPDATE, answering `columns` of each row it changed: the row as written, without
    /// a second statement to read it back.
    pub fn returning<E>(
        self,
        columns: E,
    ) -> KeptUpdate<Id, F, S, W, diesel::query_builder::ReturningClause<E>> {
        KeptUpdate {
            table: self.table,
            changes: self.changes,
            filter: self.filter,
            returning: diesel::query_builder::ReturningClause(columns),
            id: std::marker::PhantomData,
        }
    }
}

impl<Id: 'static, F, S, W, R> diesel::query_builder::QueryId for KeptUpdate<Id, F, S, W, R> {
    type QueryId = Id;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Id, F, S, W, R, DB> diesel::query_builder::QueryFragment<DB> for KeptUpdate<Id, F, S, W, R>
where
    DB: diesel::backend::Backend,
    F: diesel::query_builder::QueryFragment<DB>,
    S: diesel::query_builder::QueryFragment<DB>,
    W: diesel::query_builder::QueryFragment<DB>,
    R: diesel::query_builder::QueryFragment<DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("UPDATE ");
        self.table.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        self.changes.walk_ast(out.reborrow())?;
        out.push_sql(" WHERE ");
        self.filter.walk_ast(out.reborrow())?;
        self.returning.walk_ast(out.reborrow())
    }
}

impl<Id, F, S, W, R, Conn> diesel::RunQueryDsl<Conn> for KeptUpdate<Id, F, S, W, R> {}

/// `UPDATE $table SET $changes WHERE $filter`, kept prepared by the connection that runs it (see
/// [`KeptUpdate`]). Each use names its statement by a type of its own: use it only where the SQL
/// cannot change, with no `Option` in the changeset and not in a generic function.
#[macro_export]
macro_rules! kept_update {
    ($table:expr, $filter:expr, $changes:expr) => {{
        struct Statement;
        $crate::db::prepared::KeptUpdate::<Statement, _, _, _>::new($table, $filter, $changes)
    }};
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
    use diesel::prelude::*;

    diesel::table! {
        counters (name) {
            name -> Text,
            n -> BigInt,
        }
    }

    /// A connection with two counters, and how many statements it has prepared to keep.
    fn counting_connection() -> (SqliteConnection, Arc<AtomicUsize>) {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute(
            "CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
             INSERT INTO counters VALUES ('a', 0), ('b', 0);",
        )
        .unwrap();
        let kept = Arc::new(AtomicUsize::new(0));
        let counted = kept.clone();
        let counting: Box<dyn Instrumentation> =
            Box::new(move |event: InstrumentationEvent<'_>| {
                if let InstrumentationEvent::CacheQuery { .. } = event {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            });
        conn.set_instrumentation(counting);
        (conn, kept)
    }

    fn count(conn: &mut SqliteConnection, name: &str) -> i64 {
        counters::table
            .find(name)
            .select(counters::n)
            .first(conn)
            .unwrap()
    }

    /// Adds one to a counter, by a kept statement.
    fn raise(conn: &mut SqliteConnection, name: &str) {
        crate::kept_update!(
            counters::table,
            counters::name.eq(name),
            counters::n.eq(counters::n + 1)
        )
        .execute(conn)
        .unwrap();
    }

    #[test]
    fn a_kept_update_is_prepared_once() {
        let (mut conn, kept) = counting_connection();
        for _ in 0..3 {
            diesel::update(counters::table.find("a"))
                .set(counters::n.eq(counters::n + 1))
                .execute(&mut conn)
                .unwrap();
        }
        assert_eq!(kept.load(Ordering::SeqCst), 0, "diesel keeps no UPDATE");
        for _ in 0..3 {
            raise(&mut conn, "a");
        }
        assert_eq!(kept.load(Ordering::SeqCst), 1);
        assert_eq!(count(&mut conn, "a"), 6);
    }

    #[test]
    fn each_kept_statement_runs_its_own_sql() {
        let (mut conn, _) = counting_connection();
        for _ in 0..2 {
            raise(&mut conn, "a");
            crate::kept_update!(
                counters::table,
                counters::name.eq("b"),
                counters::n.eq(counters::n - 1)
            )
            .execute(&mut conn)
            .unwrap();
        }
        assert_eq!(count(&mut conn, "a"), 2);
        assert_eq!(count(&mut conn, "b"), -2);
    }
}
