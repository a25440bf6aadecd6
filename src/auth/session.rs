//! Presenting a session: the cookie or a bearer JWT, checked against the store, and refused
//! when a browser sends the cookie from another site.

use actix_web::http::header::ORIGIN;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::bearer_token;
use crate::config::BaseUrl;
use crate::db::Store;
use crate::sessions::keys::KeyRing;
use crate::sessions::{Active, COOKIE, SessionError};
use crate::time::Clock;

impl ResponseError for SessionError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        match self {
            SessionError::Invalid(_) => actix_web::http::StatusCode::UNAUTHORIZED,
            SessionError::CrossSite => actix_web::http::StatusCode::FORBIDDEN,
            SessionError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            SessionError::Invalid(_) => crate::error::json_error(
                self.status_code(),
                "unauthenticated",
                "no valid session: sign in again",
            ),
            SessionError::CrossSite => {
                crate::error::json_error(self.status_code(), "cross_site", &self.to_string())
            }
            SessionError::Store(error) => error.error_response(),
        }
    }
}

/// The session token of a request: the cookie, or a bearer token shaped like a JWT (API tokens
/// are not, so they are never mistaken for one).
pub fn presented(request: &HttpRequest) -> Option<String> {
    if let Some(cookie) = request.cookie(COOKIE) {
        return Some(cookie.value().to_owned());
    }
    bearer_token(request)
        .ok()
        .filter(|bearer| bearer.split('.').count() == 3)
}

/// Whether a request that carries the session cookie may change anything with it: a browser
/// says where a request comes from (`Sec-Fetch-Site`, or else `Origin`), and only this service's
/// own origin may. A request with neither header is not a browser's, which a cookie could not be
/// ridden by. Reading (GET, HEAD) is always allowed; SameSite=Lax already keeps the cookie off
/// most cross-site requests, and this covers sibling subdomains and older browsers too.
fn check_same_origin(request: &HttpRequest) -> Result<(), SessionError> {
    if request.cookie(COOKIE).is_none() || request.method().is_safe() {
        return Ok(());
    }
    same_origin(request)
}

/// Whether a browser says the request comes from this service's own origin (or says nothing, as
/// only a program that is not a browser would).
pub fn same_origin(request: &HttpRequest) -> Result<(), SessionError> {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err(SessionError::CrossSite),
        };
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let base_url = request
        .app_data::<web::Data<BaseUrl>>()
        .expect("the app registers its BaseUrl");
    let own = url::Url::parse(base_url.as_str()).map(|url| url.origin().ascii_serialization());
    match (origin.to_str(), own) {
        (Ok(origin), Ok(own)) if origin == own => Ok(()),
        _ => Err(SessionError::CrossSite),
    }
}

/// The request's session, checked now.
pub async fn session_of(
    request: &HttpRequest,
    store: &Store,
    keys: web::Data<KeyRing>,
    clock: &Clock,
) -> Result<Active, SessionError> {
    check_same_origin(request)?;
    let token = presented(request).ok_or(SessionError::Invalid("no session token"))?;
    let now = clock.now();
    store
        .run(move |conn| crate::sessions::authenticate(conn, &keys, &token, now))
        .await
}
