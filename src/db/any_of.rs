//! `column = ANY(ARRAY(SELECT unnest($1)))`, planned on every run: PostgreSQL's `column IN (list)`
//! that looks each value up in the column's index whatever the table's statistics say.
//!
//! Given the list itself (`= ANY($1)`), PostgreSQL plans from its length, and before a table's
//! first ANALYZE it answered "which of these 500 ids are members of the group" by reading every
//! member of the group and filtering (134,000 rows, 29 ms a chunk). Behind the subquery the length
//! is unknown, and the index is probed once per value.
//!
//! Kept prepared, the statement would after five runs use a generic plan, made once from the
//! table's size at that moment and kept until the next ANALYZE: made while a group was small, it
//! filtered the whole group on every later run (seeding a group of 1,000,000 slowed to 200
//! members a second, each lookup of 500 ids taking 2.5 s). Planning each run costs a fraction of
//! a millisecond beside a list of up to 500 lookups.

use diesel::QueryResult;
use diesel::expression::{
    AppearsOnTable, Expression, SelectableExpression, ValidGrouping, is_aggregate,
};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Array, Bool, Text};

/// `column` is one of `values`, on PostgreSQL (see the module's comment).
pub struct AnyOf<'v, C, V: ?Sized> {
    column: C,
    values: &'v V,
}

pub fn any_of<C, V: ?Sized>(column: C, values: &V) -> AnyOf<'_, C, V> {
    AnyOf { column, values }
}

impl<C: Expression<SqlType = Text>, V: ?Sized> Expression for AnyOf<'_, C, V> {
    type SqlType = Bool;
}

impl<C, V> QueryFragment<Pg> for AnyOf<'_, C, V>
where
    C: QueryFragment<Pg>,
    V: ToSql<Array<Text>, Pg> + ?Sized,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        self.column.walk_ast(out.reborrow())?;
        out.push_sql(" = ANY(ARRAY(SELECT unnest(");
        out.push_bind_param::<Array<Text>, V>(self.values)?;
        out.push_sql(")))");
        Ok(())
    }
}

impl<C, V: ?Sized> QueryId for AnyOf<'_, C, V> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<C, V: ?Sized, QS> AppearsOnTable<QS> for AnyOf<'_, C, V>
where
    C: AppearsOnTable<QS>,
    Self: Expression,
{
}

impl<C, V: ?Sized, QS> SelectableExpression<QS> for AnyOf<'_, C, V>
where
    C: SelectableExpression<QS>,
    Self: AppearsOnTable<QS>,
{
}

impl<C, V: ?Sized> ValidGrouping<()> for AnyOf<'_, C, V> {
    type IsAggregate = is_aggregate::Never;
}
