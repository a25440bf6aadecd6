//! SCIM 2.0 (RFC 7643, RFC 7644) as data: the core schema, documents and their validation, filters,
//! PATCH operations and the protocol's errors. Pure: no database, no HTTP handling (its errors
//! render as SCIM Error bodies). The directory stores these documents and the `api::scim` service
//! speaks the protocol over it.

pub mod elements;
pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;
