//! Authenticating admin-API requests. A handler that takes `Authorized<needs::X>` runs only for a
//! request whose bearer token is valid, belongs to the workspace in the path, and holds scope X: the
//! value is the proof, so no handler can forget a check.

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;
use tracing_actix_web::RequestId;

use super::{ApiToken, AuthenticationError, Rejection, Scope};
use crate::audit::{Actor, AuditContext};
use crate::db::{Store, StoreError};
use crate::workspaces::Workspace;

pub trait RequiredScope {
    /// None: any valid token of the workspace; the handler checks a scope that depends on the request.
    const SCOPE: Option<Scope>;
}

/// Marker types naming the scope a handler needs: `Authorized<needs::AuditRead>`.
pub mod needs {
    use super::{RequiredScope, Scope};

    macro_rules! markers {
        ($($marker:ident),* $(,)?) => {$(
            pub struct $marker;
            impl RequiredScope for $marker {
                const SCOPE: Option<Scope> = Some(Scope::$marker);
            }
        )*};
    }

    markers!(
        WorkspaceRead,
        WorkspaceWrite,
        AuditRead,
        TokensWrite,
        SourcesRead,
        SourcesWrite
    );

    pub struct AnyScope;
    impl RequiredScope for AnyScope {
        const SCOPE: Option<Scope> = None;
    }
}

pub struct Authorized<S> {
    pub token: ApiToken,
    pub workspace: Workspace,
    pub audit: AuditContext,
    scope: PhantomData<S>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs an Authorization: Bearer token")]
    Missing,
    #[error(transparent)]
    Rejected(Rejection),
    /// The token is for another workspace. Answered as if the workspace did not exist, so a token
    /// learns nothing about other tenants.
    #[error("no such workspace")]
    OtherWorkspace,
    #[error("this token lacks the {0} scope")]
    MissingScope(Scope),
    #[error(transparent)]
    Store(StoreError),
}

impl From<AuthenticationError> for AuthError {
    fn from(error: AuthenticationError) -> Self {
        match error {
            AuthenticationError::Rejected(rejection) => AuthError::Rejected(rejection),
            AuthenticationError::Store(error) => AuthError::Store(error),
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        AuthError::Store(error)
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Rejected(_) => StatusCode::UNAUTHORIZED,
            AuthError::OtherWorkspace => StatusCode::NOT_FOUND,
            AuthError::MissingScope(_) => StatusCode::FORBIDDEN,
            AuthError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            AuthError::Missing | AuthError::Rejected(_) => "unauthorized",
            AuthError::OtherWorkspace => "not_found",
            AuthError::MissingScope(_) => "forbidden",
            AuthError::Store(error) => return error.error_response(),
        };
        let mut response = crate::error::json_error(self.status_code(), code, &self.to_string());
        if let Some(challenge) = self.challenge() {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                challenge.parse().expect("a static header value"),
            );
        }
        response
    }
}

impl AuthError {
    /// The `WWW-Authenticate` value RFC 6750 asks for on a 401.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => Some("Bearer realm=\"idgate\""),
            AuthError::Rejected(_) => Some("Bearer realm=\"idgate\", error=\"invalid_token\""),
            _ => None,
        }
    }
}

/// The bearer token of a request, if it sent an `Authorization` header.
pub fn bearer_token(request: &HttpRequest) -> Result<String, AuthError> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = header
        .to_str()
        .map_err(|_| AuthError::Rejected(Rejection::Malformed))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(token.trim().to_owned())
        }
        _ => Err(AuthError::Rejected(Rejection::Malformed)),
    }
}

/// Checks the token of a request and returns it with its workspace.
pub async fn authenticate_request(
    request: &HttpRequest,
) -> Result<(ApiToken, Workspace), AuthError> {
    let presented = bearer_token(request)?;
    let store = request
        .app_data::<web::Data<Store>>()
        .expect("the app registers its Store")
        .clone();
    let now = crate::time::now();
    Ok(store
        .run(move |conn| super::authenticate(conn, &presented, now))
        .await?)
}

impl<S> Authorized<S> {
    /// Checks a scope the handler could only name once it had read the request.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.token.scopes.contains(scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope(scope))
        }
    }
}

impl<S: RequiredScope + 'static> FromRequest for Authorized<S> {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, AuthError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let (token, workspace) = authenticate_request(&request).await?;
            if request.match_info().get("ws") != Some(workspace.slug.as_str()) {
                return Err(AuthError::OtherWorkspace);
            }
            if let Some(scope) = S::SCOPE
                && !token.scopes.contains(scope)
            {
                return Err(AuthError::MissingScope(scope));
            }
            let request_id = request
                .extensions()
                .get::<RequestId>()
                .map(ToString::to_string);
            let audit = AuditContext {
                actor: Actor::Token(token.id.clone()),
                request_id,
            };
            Ok(Authorized {
                token,
                workspace,
                audit,
                scope: PhantomData,
            })
        })
    }
}
