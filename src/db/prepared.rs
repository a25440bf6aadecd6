//! SQLite statements of fixed text that a connection keeps prepared. Diesel prepares literal SQL
//! (`batch_execute`, `sql_query`) anew on every call; a type with a static query id is prepared
//! once per connection. For a short statement run on every request or write, the parse cost more
//! than the statement.

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
