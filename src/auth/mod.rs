//! Authenticating admin-API requests. A handler that takes `Authorized<needs::X>` runs only for a
//! request whose caller belongs to the workspace in the path and holds scope X: the value is the
//! proof, so no handler can forget a check. The caller is an API token (its scopes), or a person
//! with a session who is a member of that workspace (the scopes their roles give, see
//! [`Scopes::held_by_person`]; resource handlers also apply the person's resource levels). The
//! caller is checked, and charged to the rate limit, by [`gate`] in front of a workspace's routes,
//! before any of the handler's extractors reads the request.

pub mod ratelimit;
pub mod session;

use std::marker::PhantomData;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;

use crate::access::decide::Principal;
use crate::access::members;
use crate::audit::{Actor, AuditContext};
use crate::db::{Store, StoreError};
use crate::permissions::Role;
use crate::permissions::{Scope, Scopes};
use crate::sessions::SessionError;
use crate::sessions::keys::KeyRing;
use crate::time::Clock;
use crate::tokens::{ApiToken, AuthenticationError, Rejection};
use crate::workspaces::Workspace;
use ratelimit::{Limited, RateLimiter};

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
    pub workspace: Workspace,
    /// What the caller may do: a token's scopes, or those a person's roles give.
    pub scopes: Scopes,
    /// The person calling through a session, with their roles and grants; None for a token.
    pub person: Option<Principal>,
    /// The member whose authority the caller carries: the person of a session, or whoever
    /// minted the token through a session. None for a token the operator made.
    pub acting_for: Option<String>,
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
    #[error("your roles in this workspace do not allow what the {0} scope stands for")]
    RolesDeny(Scope),
    #[error("no valid session: sign in again")]
    Session,
    #[error("a request from another site cannot act with your session")]
    CrossSite,
    /// Past the caller's rate limit.
    #[error("too many requests: try again in {} s", .0.retry_after)]
    RateLimited(Limited),
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
            AuthError::Missing | AuthError::Rejected(_) | AuthError::Session => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::OtherWorkspace => StatusCode::NOT_FOUND,
            AuthError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::MissingScope(_) | AuthError::RolesDeny(_) | AuthError::CrossSite => {
                StatusCode::FORBIDDEN
            }
            AuthError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            AuthError::Missing | AuthError::Rejected(_) | AuthError::Session => "unauthorized",
            AuthError::OtherWorkspace => "not_found",
            AuthError::RateLimited(_) => "rate_limited",
            AuthError::MissingScope(_) | AuthError::RolesDeny(_) => "forbidden",
            AuthError::CrossSite => "cross_site",
            AuthError::Store(error) => return error.error_response(),
        };
        let mut response = crate::error::json_error(self.status_code(), code, &self.to_string());
        if let Some(challenge) = self.challenge() {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                challenge.parse().expect("a static header value"),
            );
        }
        if let AuthError::RateLimited(limited) = self {
            limited.add_to(&mut response);
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
        .run(move |conn| crate::tokens::authenticate(conn, &presented, now, None))
        .await?)
}

/// Who is calling, once checked.
struct Caller {
    workspace: Workspace,
    scopes: Scopes,
    person: Option<Principal>,
    acting_for: Option<String>,
    actor: Actor,
}

/// An API token in the Authorization header decides; otherwise a session (cookie or bearer JWT)
/// of a member of the workspace `slug`.
async fn caller(request: &HttpRequest, slug: &str) -> Result<Caller, AuthError> {
    let is_api_token = bearer_token(request).is_ok_and(|t| t.starts_with(crate::tokens::PREFIX));
    if is_api_token || session::presented(request).is_none() {
        let (token, workspace) = authenticate_request(request).await?;
        let scopes = match &token.minted_by {
            Some(member_id) => minter_scopes(request, &workspace, member_id, token.scopes).await?,
            None => token.scopes,
        };
        return Ok(Caller {
            workspace,
            scopes,
            person: None,
            acting_for: token.minted_by,
            actor: Actor::Token(token.id),
        });
    }
    let store = request
        .app_data::<web::Data<Store>>()
        .expect("the app registers its Store");
    let keys = request
        .app_data::<web::Data<KeyRing>>()
        .expect("the app registers its KeyRing")
        .clone();
    let clock = request
        .app_data::<web::Data<Clock>>()
        .expect("the app registers its Clock");
    let session = session::session_of(request, store, keys, clock)
        .await
        .map_err(|error| match error {
            SessionError::Invalid(_) => AuthError::Session,
            SessionError::CrossSite => AuthError::CrossSite,
            SessionError::Store(error) => AuthError::Store(error),
        })?;
    // A session acts only in the workspace whose IdP signed the person in.
    if session.workspace.slug != slug {
        return Err(AuthError::OtherWorkspace);
    }
    let (workspace, member) = (session.workspace, session.member);
    let workspace_id = workspace.id.clone();
    let principal = store
        .run(move |conn| members::principal(conn, &workspace_id, &member).map_err(StoreError::from))
        .await?;
    let roles: Vec<Role> = principal.roles.iter().map(|r| r.role).collect();
    Ok(Caller {
        scopes: Scopes::held_by_person(&roles, workspace.tracking_plan_approval),
        workspace,
        actor: Actor::Person(principal.member_id.clone()),
        acting_for: Some(principal.member_id.clone()),
        person: Some(principal),
    })
}

/// A token minted by a person holds no more than that person's roles give now.
async fn minter_scopes(
    request: &HttpRequest,
    workspace: &Workspace,
    member_id: &str,
    scopes: Scopes,
) -> Result<Scopes, AuthError> {
    let store = request
        .app_data::<web::Data<Store>>()
        .expect("the app registers its Store");
    let (workspace_id, member_id) = (workspace.id.clone(), member_id.to_owned());
    let roles = store
        .run(move |conn| {
            let roles = members::roles(conn, &workspace_id, &member_id)?;
            Ok::<_, StoreError>(roles.iter().map(|r| r.role).collect::<Vec<Role>>())
        })
        .await?;
    let held = Scopes::held_by_person(&roles, workspace.tracking_plan_approval);
    Ok(scopes.intersection(&held))
}

impl<S> Authorized<S> {
    /// Checks a scope the handler could only name once it had read the request.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        lacking(&self.scopes, self.person.is_some(), scope)
    }
}

fn lacking(scopes: &Scopes, person: bool, scope: Scope) -> Result<(), AuthError> {
    match (scopes.contains(scope), person) {
        (true, _) => Ok(()),
        (false, false) => Err(AuthError::MissingScope(scope)),
        (false, true) => Err(AuthError::RolesDeny(scope)),
    }
}

/// The gate in front of a workspace's admin API (`/api/v1/workspaces/{ws}/...`): checks the caller
/// for the workspace in the path, answers a refused one (401, 404 for another workspace's token,
/// 429) and charges the caller's rate limit, all before any extractor of the handler reads the
/// body or judges the query. What it found waits in the request for [`Authorized`].
pub async fn gate(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match checked_caller(request.request()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            Ok(next.call(request).await?.map_into_left_body())
        }
        // Answered as the handler's own refusal would be, so its line and counts name the route.
        Err(refused) => Ok(request.error_response(refused).map_into_right_body()),
    }
}

/// The caller of `request` for the workspace in its path, admitted by the rate limit.
async fn checked_caller(request: &HttpRequest) -> Result<Caller, AuthError> {
    let slug = request.match_info().get("ws").unwrap_or_default();
    let limiter = request
        .app_data::<web::Data<RateLimiter>>()
        .expect("the app registers its RateLimiter");
    let caller =
        caller(request, slug).await.map_err(|error| {
            match crate::forwarded::client_address(request) {
                Some(client) => limiter.refused(client, error),
                None => error,
            }
        })?;
    if caller.workspace.slug != slug {
        return Err(AuthError::OtherWorkspace);
    }
    limiter.admit(&caller.actor)?;
    Ok(caller)
}

impl<S: RequiredScope + 'static> FromRequest for Authorized<S> {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, AuthError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            // Checked by the gate; a handler mounted outside it checks here (after its other
            // extractors may already have judged the request).
            let gated = request.extensions_mut().remove::<Caller>();
            let caller = match gated {
                Some(caller) => caller,
                None => checked_caller(&request).await?,
            };
            if let Some(scope) = S::SCOPE {
                lacking(&caller.scopes, caller.person.is_some(), scope)?;
            }
            Ok(Authorized {
                workspace: caller.workspace,
                scopes: caller.scopes,
                person: caller.person,
                acting_for: caller.acting_for,
                audit: AuditContext {
                    actor: caller.actor,
                    request_id: crate::telemetry::request_id(),
                },
                scope: PhantomData,
            })
        })
    }
}
