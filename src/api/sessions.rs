//! `GET /api/v1/session`, `POST /api/v1/session/logout`, `GET /auth/verify` (for a reverse
//! proxy's forward-auth) and `GET /.well-known/jwks.json`.

use std::sync::Arc;

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{CACHE_CONTROL, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDateTime;
use serde_json::json;

use crate::access::members;
use crate::auth::session::{presented, session_of};
use crate::config::BaseUrl;
use crate::db::memo::Memo;
use crate::db::{DbConnection, Store, StoreError};
use crate::directory;
use crate::permissions::Role;
use crate::saml::SamlError;
use crate::saml::logout;
use crate::saml::sp::Endpoints;
use crate::sessions::keys::KeyRing;
use crate::sessions::{Active, COOKIE, SessionError};
use crate::time::Clock;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/session").get(show))
        .service(web::resource("/session/logout").post(logout));
}

pub fn public_routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/auth/verify").get(verify))
        .service(web::resource("/.well-known/jwks.json").get(jwks));
}

/// The roles a member holds in a workspace, strongest first.
fn roles_of(
    conn: &mut DbConnection,
    workspace_id: &str,
    member: &directory::Member,
) -> Result<Vec<Role>, StoreError> {
    let mut roles: Vec<Role> = members::roles(conn, workspace_id, &member.id)?
        .iter()
        .map(|r| r.role)
        .collect();
    roles.dedup();
    Ok(roles)
}

async fn show(
    request: HttpRequest,
    store: web::Data<Store>,
    keys: web::Data<KeyRing>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, SessionError> {
    let session = session_of(&request, &store, keys, &clock).await?;
    let body = store
        .run(move |conn| {
            let workspace = &session.workspace;
            // The session is good for its own workspace only, so that is the one listed.
            Ok::<_, StoreError>(json!({
                "email": session.email,
                "member_id": session.member.id,
                "workspace": workspace.slug,
                "expires_at": crate::time::rfc3339(&session.expires_at),
                "workspaces": [{
                    "slug": workspace.slug,
                    "name": workspace.name,
                    "hipaa": workspace.hipaa,
                    "member_id": session.member.id,
                    "roles": roles_of(conn, &workspace.id, &session.member)?,
                }],
            }))
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(body))
}

/// The session cookie, for a token that ends in `lifetime_seconds`: HttpOnly, `SameSite=Lax`
/// (the console's and the ACS's redirects are top-level navigations), Secure behind https.
pub fn session_cookie(token: String, lifetime_seconds: i64, secure: bool) -> Cookie<'static> {
    Cookie::build(COOKIE, token)
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(lifetime_seconds.max(0)))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn cleared_cookie() -> Cookie<'static> {
    let mut cookie = Cookie::build(COOKIE, "").path("/").finish();
    cookie.make_removal();
    cookie
}

/// Ends the session. When the workspace's IdP has a single-logout URL, the answer gives the URL
/// (a signed LogoutRequest) to send the browser to, so the IdP ends its session too.
async fn logout(
    request: HttpRequest,
    store: web::Data<Store>,
    keys: web::Data<KeyRing>,
    clock: web::Data<Clock>,
    base_url: web::Data<BaseUrl>,
) -> Result<HttpResponse, SessionError> {
    let session = session_of(&request, &store, keys, &clock).await?;
    let now = clock.now();
    let endpoints = Endpoints::new(base_url.as_str(), &session.workspace.slug);
    let idp_logout_url = store
        .run(move |conn| {
            conn.write(|tx| crate::sessions::revoke(tx, &session.session_id, now))?;
            logout::request_url(
                conn,
                &session.workspace,
                &endpoints,
                &session.session_id,
                now,
            )
            .map_err(|e| match e {
                SamlError::Store(error) => SessionError::Store(error),
                other => SessionError::Store(StoreError::Corrupt(other.to_string())),
            })
        })
        .await?;
    Ok(HttpResponse::Ok()
        .cookie(cleared_cookie())
        .json(json!({ "logged_out": true, "idp_logout_url": idp_logout_url })))
}

/// Sessions `/auth/verify` has checked, by the SHA-256 of their token, while the database is
/// unchanged (see [`crate::db::memo`]): a reverse proxy asks about the same session on every
/// request it forwards, and the answer changes only with the data or when the session ends.
pub struct VerifiedSessions(Memo<[u8; 32], Arc<Verified>>);

/// A checked session: until when it holds, and the answer's headers.
struct Verified {
    expires_at: NaiveDateTime,
    headers: [(HeaderName, HeaderValue); 4],
}

/// Sessions kept at most: an entry is a few hundred bytes.
const VERIFIED_KEPT: usize = 16_384;

impl Default for VerifiedSessions {
    fn default() -> Self {
        VerifiedSessions(Memo::new("verified_sessions", VERIFIED_KEPT))
    }
}

/// For a reverse proxy: 200 with who is asking, or 401.
async fn verify(
    request: HttpRequest,
    store: web::Data<Store>,
    keys: web::Data<KeyRing>,
    clock: web::Data<Clock>,
    verified: web::Data<VerifiedSessions>,
) -> Result<HttpResponse, SessionError> {
    let token = presented(&request).ok_or(SessionError::Invalid("no session token"))?;
    let now = clock.now();
    let key = crate::secrets::hash(&token);
    let version = store.data_version();
    let kept = version.and_then(|version| verified.0.get(version, &key));
    let session = match kept {
        Some(session) if session.expires_at > now => session,
        // Past its end the session is checked again, and refused there with the reason.
        _ => {
            // One trip to the pool for both: the session and the roles.
            let session = store
                .run(move |conn| {
                    let session = crate::sessions::authenticate(conn, &keys, &token, now)?;
                    let roles = roles_of(conn, &session.workspace.id, &session.member)?;
                    Ok::<_, SessionError>(Arc::new(Verified::new(&session, &roles)))
                })
                .await?;
            if let Some(version) = version {
                verified.0.put(version, key, session.clone());
            }
            session
        }
    };
    let mut response = HttpResponse::Ok();
    for header in &session.headers {
        response.insert_header(header.clone());
    }
    Ok(response.insert_header((CACHE_CONTROL, "no-store")).finish())
}

impl Verified {
    fn new(session: &Active, roles: &[Role]) -> Verified {
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        // An email is kept as the IdP sent it, which may be UTF-8: sent as its bytes.
        let value = |text: &str| {
            HeaderValue::from_bytes(text.as_bytes()).unwrap_or(HeaderValue::from_static(""))
        };
        Verified {
            expires_at: session.expires_at,
            headers: [
                (
                    HeaderName::from_static("x-idgate-user"),
                    value(&session.member.id),
                ),
                (
                    HeaderName::from_static("x-idgate-email"),
                    value(&session.email),
                ),
                (
                    HeaderName::from_static("x-idgate-workspace"),
                    value(&session.workspace.slug),
                ),
                (
                    HeaderName::from_static("x-idgate-roles"),
                    value(&roles.join(",")),
                ),
            ],
        }
    }
}

async fn jwks(
    store: web::Data<Store>,
    keys: web::Data<KeyRing>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, StoreError> {
    let now = clock.now();
    let set = store.run(move |conn| keys.jwks(conn, now)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "public, max-age=300"))
        .json(set))
}
