//! Rows read one at a time by a reader that decides, from a row's first columns, whether to decode
//! the rest: a page of users whose every user the memo already holds then decodes one column a
//! row instead of eleven (copying each document only to drop it was half of the page's time).
//!
//! Built on diesel's `LoadConnection::load`, which diesel shows only with its feature
//! `i-implement-a-third-party-backend-and-opt-into-breaking-changes`: it is the one way to a row
//! before it is decoded, and Cargo.lock pins the version it is written against.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::connection::LoadConnection;
use diesel::deserialize::{self, FromSqlRow};
use diesel::expression::QueryMetadata;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::row::Row;

/// Makes a value of one row of a query.
pub trait ReadRow<DB: Backend> {
    type Out;
    fn read<'a>(&mut self, row: &impl Row<'a, DB>) -> deserialize::Result<Self::Out>;
}

/// Reads every column, as `load` would.
pub struct Whole<T, ST>(PhantomData<(T, ST)>);

impl<T, ST> Default for Whole<T, ST> {
    fn default() -> Self {
        Whole(PhantomData)
    }
}

impl<DB, T, ST> ReadRow<DB> for Whole<T, ST>
where
    DB: Backend,
    T: FromSqlRow<ST, DB>,
{
    type Out = T;
    fn read<'a>(&mut self, row: &impl Row<'a, DB>) -> deserialize::Result<T> {
        T::build_from_row(row)
    }
}

/// Runs `query` and passes its rows to `reader` one by one.
pub fn load_with<C, Q, R>(conn: &mut C, query: Q, reader: &mut R) -> QueryResult<Vec<R::Out>>
where
    C: LoadConnection,
    Q: Query + QueryFragment<C::Backend> + QueryId,
    C::Backend: QueryMetadata<Q::SqlType>,
    R: ReadRow<C::Backend>,
{
    conn.load(query)?
        .map(|row| {
            reader
                .read(&row?)
                .map_err(diesel::result::Error::DeserializationError)
        })
        .collect()
}
