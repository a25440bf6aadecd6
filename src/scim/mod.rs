//! SCIM 2.0 (RFC 7643, RFC 7644): the provisioning API Okta and Entra ID push users and groups through.

pub mod error;
pub mod filter;
pub mod schema;
