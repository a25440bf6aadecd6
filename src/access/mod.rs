//! The access model: workspace roles (given directly or through mapped IdP groups), resources with
//! labels, resource-level grants, the attribute mapping used at SAML login, and decisions over
//! them. The rule itself is documented in [`decide`]; storage is in [`members`], [`resources`],
//! [`grants`] and [`attributes`].

pub mod attributes;
pub mod authorize;
pub mod cache;
pub mod decide;
pub mod grants;
pub mod members;
pub mod resources;

use crate::db::StoreError;
use crate::tokens::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A person whose level on a resource is too low for the request.
    #[error("{0}")]
    Forbidden(String),
    #[error(
        "this change would leave the workspace without an Owner; make someone else an Owner first"
    )]
    LastOwner,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for AccessError {
    fn from(error: diesel::result::Error) -> Self {
        AccessError::Store(error.into())
    }
}

/// Parses a wire name, turning an unknown one into a 400 that lists the known ones.
pub fn parse<T: std::str::FromStr<Err = String>>(raw: &str) -> Result<T, AccessError> {
    raw.parse().map_err(AccessError::Invalid)
}

/// A stored value of this room that no longer parses: the data was damaged.
fn corrupt(what: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(what.into())
}
