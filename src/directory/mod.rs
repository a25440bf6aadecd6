//! The directory: the people of each workspace and the groups they are in, as the IdP provisions
//! them over SCIM (stored as SCIM documents: [`users`], [`groups`], with the value index
//! [`values`] that filters and sorts run on, see [`query`]) or asserts them at SAML login.
//!
//! Its tables are read and written here only. Access, sessions and the SAML consumer ask it who
//! someone is ([`find`], [`find_many`], [`memberships_of`]) and which groups they are in
//! ([`group_names_of`], [`any_active_in_groups`]). Its writes are steps inside the caller's
//! transaction ([`users::rewrite`], [`groups::apply`], ...), so that the SCIM service can keep
//! the access rules around them in the same transaction.

pub mod groups;
mod people;
pub mod query;
pub mod store;
pub mod users;
pub mod values;

pub use people::*;
