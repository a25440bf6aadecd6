//! SAML 2.0 single sign-on. So far: the workspace's IdP connection (entity ID, SSO and SLO URLs,
//! signing certificates for rollover, options), set from metadata or by hand; and the service
//! provider's keys and metadata; SP-initiated login; the hourly refresh of URL metadata.

pub mod acs;
pub mod binding;
pub mod certificates;
pub mod connection;
pub mod login;
pub mod logout;
pub mod metadata;
pub mod refresh;
pub mod response;
pub mod sp;
pub mod traces;

use crate::db::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error("the IdP metadata cannot be used: {0}")]
    InvalidMetadata(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "this workspace has no IdP connection yet: give its metadata, or its entity ID, SSO URL and certificate"
    )]
    NotConfigured,
    #[error("no such workspace")]
    NoWorkspace,
    #[error("cannot fetch the IdP metadata: {0}")]
    Fetch(String),
    /// A fault of ours (a key that will not load); the detail is logged, never sent.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for SamlError {
    fn from(error: diesel::result::Error) -> Self {
        SamlError::Store(error.into())
    }
}

/// Escapes text for an XML attribute value or element content.
pub(crate) fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
