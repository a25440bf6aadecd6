//! `POST /api/v1/workspaces/{ws}/setup-links` and `DELETE .../setup-links/{id}`: links that open
//! a workspace's IdP and SCIM pages to a customer's IT admin (see [`crate::links`]).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};

use crate::access::members::OwnerAuthority;
use crate::audit::AuditContext;
use crate::auth::{Authorized, needs};
use crate::db::{Conn, Store, StoreError};
use crate::error::json_error;
use crate::links::{self, Kind, Link, LinkError};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/setup-links").post(create))
        .service(web::resource("/setup-links/{id}").delete(revoke));
}

#[derive(Debug, thiserror::Error)]
pub enum SetupLinkError {
    /// A setup link can connect another IdP and issue SCIM tokens: an Owner's to hand out.
    #[error("only an Owner (or the operator) makes setup links")]
    NotOwner,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LinkError> for SetupLinkError {
    fn from(error: LinkError) -> Self {
        match error {
            LinkError::InvalidLifetime(detail) => SetupLinkError::Invalid(detail),
            error @ LinkError::NotFound(_) => SetupLinkError::NotFound(error.to_string()),
            LinkError::Store(error) => SetupLinkError::Store(error.into()),
        }
    }
}

impl From<diesel::result::Error> for SetupLinkError {
    fn from(error: diesel::result::Error) -> Self {
        SetupLinkError::Store(error.into())
    }
}

/// A setup link just made, with its URL (which holds the secret: shown this once).
#[derive(Serialize)]
pub struct MadeLink {
    #[serde(flatten)]
    pub link: Link,
    pub url: String,
}

/// Makes a setup link for whoever acts (`acting_for` a member, or None for the operator), who
/// must hold the Owner's authority.
pub fn create_setup_link(
    conn: &mut Conn,
    base_url: &str,
    workspace_id: &str,
    acting_for: Option<&str>,
    expires_in: Option<&str>,
    context: &AuditContext,
) -> Result<MadeLink, SetupLinkError> {
    let lifetime = match expires_in {
        Some(raw) => links::parse_setup_lifetime(raw)?,
        None => links::SETUP_LIFETIME,
    };
    let lifetime = chrono::TimeDelta::from_std(lifetime).expect("at most 30 days");
    if OwnerAuthority::of(conn, workspace_id, acting_for)? != OwnerAuthority::Held {
        return Err(SetupLinkError::NotOwner);
    }
    let issued =
        conn.write(|tx| links::create(tx, Kind::Setup, workspace_id, None, lifetime, context))?;
    Ok(MadeLink {
        url: format!("{base_url}/setup/{}", issued.secret),
        link: issued.link,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// Such as `3d` or `12h`; at most 30 days [default: 3d].
    expires_in: Option<String>,
}

async fn create(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    base_url: web::Data<crate::config::BaseUrl>,
    body: Option<web::Json<CreateBody>>,
) -> Result<HttpResponse, SetupLinkError> {
    let expires_in = body
        .map(|body| body.into_inner())
        .unwrap_or_default()
        .expires_in;
    let (workspace_id, acting_for, audit) = (auth.workspace.id, auth.acting_for, auth.audit);
    let base = base_url.as_str().to_owned();
    let made = store
        .run(move |conn| {
            create_setup_link(
                conn,
                &base,
                &workspace_id,
                acting_for.as_deref(),
                expires_in.as_deref(),
                &audit,
            )
        })
        .await?;
    Ok(HttpResponse::Created().json(made))
}

async fn revoke(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, SetupLinkError> {
    let (_, id) = path.into_inner();
    let (workspace_id, audit) = (auth.workspace.id, auth.audit);
    store
        .write(move |tx| {
            Ok::<_, SetupLinkError>(links::revoke_setup(tx, &workspace_id, &id, &audit)?)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

impl ResponseError for SetupLinkError {
    fn status_code(&self) -> StatusCode {
        match self {
            SetupLinkError::NotOwner => StatusCode::FORBIDDEN,
            SetupLinkError::Invalid(_) => StatusCode::BAD_REQUEST,
            SetupLinkError::NotFound(_) => StatusCode::NOT_FOUND,
            SetupLinkError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            SetupLinkError::NotOwner => "forbidden",
            SetupLinkError::Invalid(_) => "invalid_request",
            SetupLinkError::NotFound(_) => "not_found",
            SetupLinkError::Store(error) => return error.error_response(),
        };
        json_error(self.status_code(), code, &self.to_string())
    }
}
