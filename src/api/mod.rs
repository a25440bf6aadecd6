//! The HTTP handlers of the admin API (`/api/v1`), the session endpoints and the SAML service
//! provider's endpoints, one file per room they serve. They sit above the [`crate::auth`] gate:
//! a handler takes `Authorized<needs::X>` and calls its room's functions.

pub mod access;
pub mod audit;
pub mod links;
pub mod saml;
pub mod scim;
pub mod sessions;
pub mod tokens;
pub mod workspaces;
