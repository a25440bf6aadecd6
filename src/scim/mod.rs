//! SCIM 2.0 (RFC 7643, RFC 7644): the provisioning API Okta and Entra ID push users and groups through.

pub mod actions;
pub mod api;
pub mod bulk;
pub mod elements;
pub mod error;
pub mod filter;
pub mod groups;
pub mod patch;
pub mod paths;
pub mod query;
pub mod resource;
pub mod schema;
pub mod store;
pub mod users;
pub mod values;
