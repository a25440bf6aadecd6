//! The directory: the people of each workspace and the groups they are in, as the IdP provisions
//! them over SCIM or asserts them at SAML login. Access, sessions and the SAML consumer ask it who
//! someone is ([`find`], [`find_many`], [`memberships_of`]) and which groups they are in
//! ([`group_names_of`], [`any_active_in_groups`]) instead of reading its tables.
//!
//! Not yet here: the SCIM users, groups and value index are still written and listed by
//! the `scim` room, whose storage depends on the SCIM document types.

pub mod groups;
mod people;
pub mod query;
pub mod store;
pub mod users;
pub mod values;

pub use people::*;
