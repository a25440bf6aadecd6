//! `GET` and `PUT /api/v1/workspaces/{ws}/idp`: the workspace's IdP connection; and the public
//! service-provider endpoints under `/saml/{ws}`.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::error::json_error;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::ratelimit::RateLimiter;
use crate::auth::{Authorized, needs};
use crate::config::BaseUrl;
use crate::db::Store;
use crate::outbound::InternalAllowList;
use crate::saml::SamlError;
use crate::saml::acs::{self, AcsError, Posted};
use crate::saml::connection::{self, Connection, OptionChanges, Source};
use crate::saml::response::Reason;
use crate::saml::sp::{self, Endpoints, Purpose};
use crate::saml::{login, logout};
use crate::sessions::keys::KeyRing;
use crate::time::Clock;
use crate::workspaces::{self, WorkspaceError};

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(web::resource("/idp").get(show).put(set));
}

pub fn sp_routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/saml/{ws}/metadata").get(sp_metadata))
        .service(web::resource("/saml/{ws}/login").get(login))
        .service(web::resource("/saml/{ws}/slo").get(single_logout))
        .service(
            web::resource("/saml/{ws}/acs")
                .app_data(web::PayloadConfig::new(MAX_ACS_FORM_BYTES))
                .post(consume),
        );
}

/// The ACS form: a response of at most [`crate::saml::response::MAX_RESPONSE_BYTES`], base64, and
/// a RelayState.
const MAX_ACS_FORM_BYTES: usize = 512 * 1024;

/// A short plain-text page for a browser.
fn text_page(status: StatusCode, text: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

/// What a browser sees when a SAML step fails: a short page with the status, never details.
fn page(error: SamlError) -> HttpResponse {
    let text = match &error {
        SamlError::NoWorkspace => "There is no such workspace.",
        SamlError::NotConfigured => "Single sign-on is not set up for this workspace.",
        SamlError::Internal(detail) => {
            tracing::error!(detail = detail.as_str(), "SAML internal error");
            "Something went wrong on our side. Please try again."
        }
        SamlError::Store(_) => "The service is unavailable. Please try again shortly.",
        _ => "Single sign-on could not start.",
    };
    text_page(error.status_code(), text)
}

fn find_workspace(
    conn: &mut crate::db::DbConnection,
    slug: &str,
) -> Result<workspaces::Workspace, SamlError> {
    workspaces::find_by_slug(conn, slug).map_err(|e| match e {
        WorkspaceError::Store(error) => SamlError::Store(error),
        _ => SamlError::NoWorkspace,
    })
}

/// What the browser sees when a response is refused: the class of the reason, never the detail,
/// which is in the audit log.
fn refused_page(reason: Reason) -> HttpResponse {
    let (status, text) = match reason {
        Reason::Deactivated | Reason::NotProvisioned => (
            StatusCode::FORBIDDEN,
            "Your account does not have access to this workspace.",
        ),
        Reason::Replay
        | Reason::RequestReused
        | Reason::Expired
        | Reason::InResponseTo
        | Reason::BrowserMismatch => (
            StatusCode::BAD_REQUEST,
            "This sign-in has expired or was already used. Please sign in again.",
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "The sign-in response from your identity provider could not be accepted.",
        ),
    };
    text_page(status, text)
}

/// Counts a request from the client's address toward [`crate::auth::ratelimit::PER_ADDRESS`]; past
/// it, the page to answer with. The address is the peer's, or behind a trusted proxy the client's
/// it forwarded (see [`crate::forwarded`]).
fn over_address_limit(request: &HttpRequest) -> Option<HttpResponse> {
    let limiter = request
        .app_data::<web::Data<RateLimiter>>()
        .expect("the app registers its RateLimiter");
    let address = crate::forwarded::client_address(request)?;
    let limited = limiter.admit_address(address).err()?;
    let mut page = text_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-in attempts from your network. Please wait a moment and try again.",
    );
    limited.add_to(&mut page);
    Some(page)
}

fn request_cookie_path(slug: &str) -> String {
    format!("/saml/{slug}/acs")
}

/// The ACS (HTTP-POST binding): on success the session cookie and a 303 to the path the login
/// started from (or RelayState's, for an IdP-initiated login, when it is a same-origin path).
async fn consume(
    request: HttpRequest,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    keys: web::Data<KeyRing>,
    clock: web::Data<Clock>,
    slug: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refused) = over_address_limit(&request) {
        return refused;
    }
    let mut saml_response = None;
    let mut relay_state = None;
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "SAMLResponse" => saml_response = Some(value.into_owned()),
            "RelayState" => relay_state = Some(value.into_owned()),
            _ => {}
        }
    }
    let Some(saml_response) = saml_response else {
        return text_page(StatusCode::BAD_REQUEST, "The sign-in response is missing.");
    };
    let posted = Posted {
        saml_response,
        relay_state,
        browser_secret: request
            .cookie(login::REQUEST_COOKIE)
            .map(|c| c.value().to_owned()),
        client: crate::forwarded::client_address(&request).map(|client| client.to_string()),
    };
    let slug = slug.into_inner();
    let cookie_path = request_cookie_path(&slug);
    let secure = base_url.as_str().starts_with("https://");
    let base = base_url.as_str().to_owned();
    let now = clock.now();
    let outcome = store
        .run(move |conn| {
            let workspace = find_workspace(conn, &slug)?;
            acs::consume(conn, &keys, &base, &workspace, posted, now)
        })
        .await;
    let logged_in = match outcome {
        Ok(logged_in) => logged_in,
        Err(AcsError::Refused(refusal)) => return refused_page(refusal.reason),
        Err(AcsError::Saml(error)) => return page(error),
    };
    let lifetime = (logged_in.session.expires_at - now).num_seconds();
    let session_cookie = super::sessions::session_cookie(logged_in.session.token, lifetime, secure);
    let mut used_request = Cookie::build(login::REQUEST_COOKIE, "")
        .path(cookie_path)
        .finish();
    used_request.make_removal();
    HttpResponse::SeeOther()
        .insert_header((LOCATION, logged_in.relay_path))
        .cookie(session_cookie)
        .cookie(used_request)
        .finish()
}

/// Single logout, HTTP-Redirect binding: an IdP's LogoutRequest ends the sessions it names; an
/// IdP's LogoutResponse (the end of a logout idgate started) just lands on the home page.
async fn single_logout(
    request: HttpRequest,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    clock: web::Data<Clock>,
    slug: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = over_address_limit(&request) {
        return refused;
    }
    let raw_query = request.query_string().to_owned();
    let has = |name: &str| {
        raw_query
            .split('&')
            .any(|p| p.starts_with(&format!("{name}=")))
    };
    if !has("SAMLRequest") {
        return if has("SAMLResponse") {
            HttpResponse::SeeOther()
                .insert_header((LOCATION, "/"))
                .finish()
        } else {
            text_page(StatusCode::BAD_REQUEST, "No logout message.")
        };
    }
    let endpoints = Endpoints::new(base_url.as_str(), &slug);
    let now = clock.now();
    let slug = slug.into_inner();
    let outcome = store
        .run(move |conn| {
            let workspace = find_workspace(conn, &slug)?;
            logout::handle_request(conn, &workspace, &endpoints, &raw_query, now)
        })
        .await;
    match outcome {
        Ok(Some(location)) => HttpResponse::SeeOther()
            .insert_header((LOCATION, location))
            .cookie(crate::api::sessions::cleared_cookie())
            .finish(),
        Ok(None) => {
            let mut signed_out = text_page(StatusCode::OK, "You are signed out.");
            signed_out
                .add_cookie(&crate::api::sessions::cleared_cookie())
                .expect("a valid cookie");
            signed_out
        }
        Err(AcsError::Refused(refusal)) => refused_page(refusal.reason),
        Err(AcsError::Saml(error)) => page(error),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// Whether browsers will send a `SameSite=None; Secure` cookie to this service: over https, and
/// over plain http on the loopback host, which browsers treat as a secure context.
fn secure_context(base_url: &BaseUrl) -> bool {
    let Ok(url) = url::Url::parse(base_url.as_str()) else {
        return false;
    };
    url.scheme() == "https"
        || matches!(
            url.host(),
            Some(url::Host::Domain("localhost"))
                | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
        )
}

/// SP-initiated login: 303 to the IdP with a signed AuthnRequest, and the request cookie, which
/// only the ACS receives. The IdP's POST to the ACS is cross-site, so the cookie is
/// `SameSite=None; Secure` wherever browsers allow it; elsewhere (plain http on a named host)
/// it can only be `Lax`, which browsers do not send with that POST, and SP-initiated logins fail
/// there as answered by another browser: serve idgate over https.
async fn login(
    request: HttpRequest,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    slug: web::Path<String>,
    query: web::Query<LoginQuery>,
) -> HttpResponse {
    if let Some(refused) = over_address_limit(&request) {
        return refused;
    }
    let endpoints = Endpoints::new(base_url.as_str(), &slug);
    let acs_path = request_cookie_path(&slug);
    let secure = secure_context(&base_url);
    let relay_state = query.into_inner().relay_state;
    let started = store
        .run(move |conn| {
            let workspace = find_workspace(conn, &slug)?;
            login::start(conn, &workspace.id, &endpoints, relay_state.as_deref())
        })
        .await;
    let login = match started {
        Ok(login) => login,
        Err(error) => return page(error),
    };
    let cookie = Cookie::build(login::REQUEST_COOKIE, login.browser_secret)
        .path(acs_path)
        .http_only(true)
        .secure(secure)
        .same_site(if secure {
            SameSite::None
        } else {
            SameSite::Lax
        })
        .max_age(CookieDuration::seconds(
            login::REQUEST_LIFETIME.num_seconds(),
        ))
        .finish();
    HttpResponse::SeeOther()
        .insert_header((LOCATION, login.location))
        .cookie(cookie)
        .finish()
}

/// The SP metadata an IdP admin imports. Public, as metadata is; an unknown workspace is a 404.
async fn sp_metadata(
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    slug: web::Path<String>,
) -> Result<HttpResponse, SamlError> {
    let endpoints = Endpoints::new(base_url.as_str(), &slug);
    let common_name = endpoints.entity_id.clone();
    let slug = slug.into_inner();
    let (signing, encryption, want_assertions_signed) = store
        .run(move |conn| {
            let workspace = find_workspace(conn, &slug)?;
            let signing = sp::key(conn, &workspace.id, &common_name, Purpose::Signing)?;
            let encryption = sp::key(conn, &workspace.id, &common_name, Purpose::Encryption)?;
            let want_assertions_signed = connection::get(conn, &workspace.id)?
                .is_some_and(|connection| connection.options.require_signed_assertion);
            Ok::<_, SamlError>((signing, encryption, want_assertions_signed))
        })
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml")
        .body(sp::metadata(
            &endpoints,
            &signing,
            &encryption,
            want_assertions_signed,
        )))
}

/// The connection with each certificate's status (`valid`, `expiring` within 30 days, `expired`).
pub fn view(connection: &Connection) -> Value {
    let now = crate::time::now();
    let mut shown = json!(connection);
    shown["certificates"] = connection
        .certificates
        .iter()
        .map(|certificate| {
            let mut entry = json!(certificate);
            entry["status"] = json!(certificate.status(now));
            entry
        })
        .collect();
    shown["usable_certificates"] = json!(
        connection
            .certificates
            .iter()
            .filter(|c| c.status(now) != "expired")
            .count()
    );
    shown
}

async fn show(
    auth: Authorized<needs::WorkspaceRead>,
    store: web::Data<Store>,
) -> Result<HttpResponse, SamlError> {
    let workspace_id = auth.workspace.id;
    let connection = store
        .run(move |conn| connection::get(conn, &workspace_id).map_err(SamlError::from))
        .await?
        .ok_or(SamlError::NotConfigured)?;
    Ok(HttpResponse::Ok().json(view(&connection)))
}

/// Either `metadata_xml`, or `metadata_url`, or `entity_id` + `sso_url` + `certificates` (PEM);
/// or none of them, to change `options` alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    metadata_xml: Option<String>,
    metadata_url: Option<String>,
    entity_id: Option<String>,
    sso_url: Option<String>,
    slo_url: Option<String>,
    #[serde(default)]
    certificates: Vec<String>,
    #[serde(default)]
    options: OptionChanges,
}

async fn source_of(
    body: &mut SetBody,
    allowed: &InternalAllowList,
) -> Result<Option<Source>, SamlError> {
    let manual =
        body.entity_id.is_some() || body.sso_url.is_some() || !body.certificates.is_empty();
    match (body.metadata_xml.take(), body.metadata_url.take(), manual) {
        (Some(xml), None, false) => Ok(Some(Source::Metadata { xml, url: None })),
        (None, Some(url), false) => Ok(Some(Source::Metadata {
            xml: connection::fetch_metadata(allowed, &url).await?,
            url: Some(url),
        })),
        (None, None, true) => {
            let (Some(entity_id), Some(sso_url)) = (body.entity_id.take(), body.sso_url.take())
            else {
                return Err(SamlError::Invalid(
                    "without metadata, give entity_id, sso_url and certificates".to_owned(),
                ));
            };
            Source::manual(entity_id, sso_url, body.slo_url.take(), &body.certificates).map(Some)
        }
        (None, None, false) => Ok(None),
        _ => Err(SamlError::Invalid(
            "give one of metadata_xml, metadata_url, or entity_id with sso_url and certificates"
                .to_owned(),
        )),
    }
}

async fn set(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    allowed: web::Data<InternalAllowList>,
    body: web::Json<SetBody>,
) -> Result<HttpResponse, SamlError> {
    let mut body = body.into_inner();
    let source = source_of(&mut body, &allowed).await?;
    let workspace_id = auth.workspace.id;
    let audit = auth.audit;
    let options = body.options;
    let connection = store
        .run(move |conn| connection::set(conn, &workspace_id, source, options, &audit))
        .await?;
    Ok(HttpResponse::Ok().json(view(&connection)))
}

/// How a SamlError answers over HTTP.
impl ResponseError for SamlError {
    fn status_code(&self) -> StatusCode {
        match self {
            SamlError::InvalidMetadata(_) | SamlError::Invalid(_) | SamlError::Fetch(_) => {
                StatusCode::BAD_REQUEST
            }
            SamlError::NotConfigured | SamlError::NoWorkspace => StatusCode::NOT_FOUND,
            SamlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            SamlError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            SamlError::InvalidMetadata(_) | SamlError::Invalid(_) | SamlError::Fetch(_) => {
                "invalid_request"
            }
            SamlError::NotConfigured | SamlError::NoWorkspace => "not_found",
            SamlError::Internal(detail) => {
                tracing::error!(detail = detail.as_str(), "SAML internal error");
                return json_error(self.status_code(), "internal", "an internal error occurred");
            }
            SamlError::Store(error) => return error.error_response(),
        };
        json_error(self.status_code(), code, &self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_cookies_need_a_secure_context() {
        for (base, secure) in [
            ("https://idgate.example", true),
            ("http://localhost:8080", true),
            ("http://127.0.0.1:8080", true),
            ("http://[::1]:8080", true),
            ("http://idgate.internal:8080", false),
            ("http://10.0.0.5", false),
        ] {
            let base_url = BaseUrl::parse(base).unwrap();
            assert_eq!(secure_context(&base_url), secure, "{base}");
        }
    }
}
