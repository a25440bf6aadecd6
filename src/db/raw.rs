//! SQL assembled at run time with bound parameters, for the few queries whose shape depends on
//! client input (SCIM filters and sorts). Text is only ever the program's own; every value a client
//! sent is a bind parameter.

use chrono::NaiveDateTime;
use diesel::QueryResult;
use diesel::expression::{
    AppearsOnTable, Expression, SelectableExpression, ValidGrouping, is_aggregate,
};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Bool, Text, Timestamp};

use super::MultiBackend;

#[derive(Debug, Clone)]
enum Part {
    Sql(&'static str),
    Text(String),
    Timestamp(NaiveDateTime),
    Bool(bool),
}

/// A SQL expression of type `ST` (a boolean condition, or a sort key).
#[derive(Debug, Clone)]
pub struct RawSql<ST = Bool> {
    parts: Vec<Part>,
    reusable: bool,
    sql_type: std::marker::PhantomData<ST>,
}

impl<ST> Default for RawSql<ST> {
    fn default() -> Self {
        RawSql {
            parts: Vec::new(),
            reusable: false,
            sql_type: std::marker::PhantomData,
        }
    }
}

impl<ST> RawSql<ST> {
    /// Lets a connection keep this statement prepared, keyed by its text. A connection keeps
    /// every statement it caches for its life, so only SQL drawn from a small fixed set of shapes
    /// may be marked; a query with any unmarked part is prepared anew each time.
    pub fn reusable(mut self) -> Self {
        self.reusable = true;
        self
    }

    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    pub fn sql(mut self, sql: &'static str) -> Self {
        self.parts.push(Part::Sql(sql));
        self
    }

    pub fn text(mut self, value: impl Into<String>) -> Self {
        self.parts.push(Part::Text(value.into()));
        self
    }

    pub fn boolean(mut self, value: bool) -> Self {
        self.parts.push(Part::Bool(value));
        self
    }

    pub fn timestamp(mut self, value: NaiveDateTime) -> Self {
        self.parts.push(Part::Timestamp(value));
        self
    }

    /// Appends another expression's SQL and parameters.
    pub fn append<Other>(mut self, other: RawSql<Other>) -> Self {
        self.parts.extend(other.parts);
        self.reusable &= other.reusable;
        self
    }
}

impl<ST: diesel::sql_types::SqlType + diesel::sql_types::SingleValue> Expression for RawSql<ST> {
    type SqlType = ST;
}

impl<ST> QueryFragment<MultiBackend> for RawSql<ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        if !self.reusable {
            out.unsafe_to_cache_prepared();
        }
        for part in &self.parts {
            match part {
                Part::Sql(sql) => out.push_sql(sql),
                Part::Text(value) => out.push_bind_param::<Text, String>(value)?,
                Part::Timestamp(value) => out.push_bind_param::<Timestamp, NaiveDateTime>(value)?,
                Part::Bool(value) => out.push_bind_param::<Bool, bool>(value)?,
            }
        }
        Ok(())
    }
}

impl<ST> QueryId for RawSql<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST, QS> AppearsOnTable<QS> for RawSql<ST> where Self: Expression {}
impl<ST, QS> SelectableExpression<QS> for RawSql<ST> where Self: Expression {}
impl<ST> ValidGrouping<()> for RawSql<ST> {
    type IsAggregate = is_aggregate::Never;
}
