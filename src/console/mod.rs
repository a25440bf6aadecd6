//! The admin console: pages rendered by the server (askama templates under `templates/console/`),
//! with a small stylesheet and one script served from the binary. No page runs inline script.
//!
//! - `/console/` and `/console/{ws}/...`: a signed-in person's pages, acting with that person's
//!   own roles through the same room functions, rules and audit as the admin API;
//! - `/console/-/...`: what belongs to no workspace (assets, the bootstrap link, sign-out);
//! - `/setup/{secret}` and `/setup/...`: a setup link's IdP-connection and SCIM pages, and no other.
//!
//! Every state-changing form carries a CSRF token bound to the cookie that authenticates it
//! ([`Submitted`] is the only way a handler reads a form, and it checks the token and the origin).

mod attributes;
mod audit;
mod connection;
mod overview;
mod people;
mod provisioning;
mod resources;
mod setup;
mod signin;

use std::borrow::Cow;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;

use crate::access::AccessError;
use crate::access::decide::Principal;
use crate::audit::{Actor, AuditContext};
use crate::auth::ratelimit::Limited;
use crate::auth::{AuthError, Authorized, needs};
use crate::config::BaseUrl;
use crate::db::StoreError;
use crate::links::LinkError;
use crate::permissions::{Scope, Scopes};
use crate::saml::SamlError;
use crate::tokens::TokenError;
use crate::workspaces::{Workspace, WorkspaceError};

/// The cookie a setup link leaves: the link's secret, sent only to `/setup/` pages.
const SETUP_COOKIE: &str = "idgate_setup";

/// Pages may load only this service's own script, style and images, may not be framed, and may
/// post forms only to this service.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::scope("/console")
                .wrap(page_headers())
                .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
                .route("/-/assets/{file}", web::get().to(asset))
                .configure(signin::routes)
                .service(
                    web::scope("/{ws}")
                        .route("", web::get().to(overview::to_slash))
                        .route("/", web::get().to(overview::page))
                        .configure(connection::routes)
                        .configure(connection::test_routes)
                        .configure(attributes::routes)
                        .configure(provisioning::routes)
                        .configure(people::routes)
                        .configure(resources::routes)
                        .configure(audit::routes)
                        .configure(setup::manage_routes),
                ),
        )
        .service(
            web::scope("/setup")
                .wrap(page_headers())
                .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
                .route("/", web::get().to(setup::overview))
                .configure(connection::routes)
                .configure(provisioning::routes)
                .route("/{secret}", web::get().to(setup::open)),
        );
}

fn page_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::CACHE_CONTROL, "no-store"))
}

/// The stylesheet and the script, compiled into the binary.
async fn asset(file: web::Path<String>) -> HttpResponse {
    let (content_type, body) = match file.as_str() {
        "console.css" => (
            "text/css; charset=utf-8",
            include_str!("../../templates/console/assets/console.css"),
        ),
        "console.js" => (
            "text/javascript; charset=utf-8",
            include_str!("../../templates/console/assets/console.js"),
        ),
        _ => return PageError::NotFound("no such file".to_owned()).error_response(),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

/// Where the service's pages are, as the browser sees them: the path of the public base URL
/// (empty unless idgate is served under a prefix).
fn root(base_url: &BaseUrl) -> String {
    url::Url::parse(base_url.as_str())
        .map(|url| url.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// Who is looking at a workspace's pages, and with what authority: a signed-in person with the
/// scopes their roles give, or the holder of a setup link.
pub struct Visitor {
    pub workspace: Workspace,
    pub scopes: Scopes,
    /// The person, with roles and grants; None for a setup link.
    pub person: Option<Principal>,
    /// The member whose authority changes carry (the person); None for a setup link.
    pub acting_for: Option<String>,
    pub audit: AuditContext,
    /// Where this workspace's pages are: `{root}/console/{ws}` or `{root}/setup`.
    pub base: String,
    pub root: String,
    /// The CSRF token the visitor's forms carry.
    pub csrf: String,
}

impl Visitor {
    /// Refuses a visitor who lacks `scope`, naming what they may not do.
    pub fn require(&self, scope: Scope) -> Result<(), PageError> {
        if self.scopes.contains(scope) {
            return Ok(());
        }
        Err(PageError::Forbidden(Cow::Borrowed(match scope {
            Scope::AuditRead => "Only Owners and Admins can read the audit log.",
            Scope::TokensWrite => "Only Owners and Admins can manage SCIM tokens.",
            _ => "Only Owners and Admins can see and change this workspace's settings.",
        })))
    }

    pub fn via_setup_link(&self) -> bool {
        self.person.is_none()
    }

    /// The setup link this visitor came through, if any.
    pub fn setup_link(&self) -> Option<&str> {
        match &self.audit.actor {
            Actor::SetupLink(link) => Some(link),
            _ => None,
        }
    }

    /// The page chrome: title, navigation and the sign-out form.
    pub fn chrome(&self, title: &str, current: Section) -> Chrome {
        let sections: &[Section] = if self.via_setup_link() {
            &[
                Section::Overview,
                Section::Connection,
                Section::Provisioning,
            ]
        } else {
            &Section::ALL
        };
        let nav = sections
            .iter()
            .filter(|section| self.scopes.contains(section.scope()))
            .map(|section| NavItem {
                label: section.label(),
                href: format!("{}/{}", self.base, section.path()),
                current: *section == current,
            })
            .collect();
        Chrome {
            title: title.to_owned(),
            workspace_name: self.workspace.name.clone(),
            who: self.person.as_ref().map(|person| person.user_name.clone()),
            nav,
            root: self.root.clone(),
            csrf: self.csrf.clone(),
            notice: None,
        }
    }
}

/// The parts of a workspace's console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Connection,
    Attributes,
    Provisioning,
    People,
    Groups,
    Resources,
    Audit,
    SetupLinks,
}

impl Section {
    const ALL: [Section; 9] = [
        Section::Overview,
        Section::Connection,
        Section::Attributes,
        Section::Provisioning,
        Section::People,
        Section::Groups,
        Section::Resources,
        Section::Audit,
        Section::SetupLinks,
    ];

    fn label(self) -> &'static str {
        match self {
            Section::Overview => "Overview",
            Section::Connection => "IdP connection",
            Section::Attributes => "Attribute mapping",
            Section::Provisioning => "Provisioning (SCIM)",
            Section::People => "People",
            Section::Groups => "Groups and roles",
            Section::Resources => "Resources and grants",
            Section::Audit => "Audit log",
            Section::SetupLinks => "Setup links",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Section::Overview => "",
            Section::Connection => "idp",
            Section::Attributes => "attributes",
            Section::Provisioning => "scim",
            Section::People => "members",
            Section::Groups => "groups",
            Section::Resources => "resources",
            Section::Audit => "audit",
            Section::SetupLinks => "setup-links",
        }
    }

    /// What a visitor needs to see the section.
    fn scope(self) -> Scope {
        match self {
            Section::Overview | Section::People => Scope::WorkspaceRead,
            Section::Connection
            | Section::Attributes
            | Section::Groups
            | Section::Resources
            | Section::SetupLinks => Scope::WorkspaceWrite,
            Section::Provisioning => Scope::TokensWrite,
            Section::Audit => Scope::AuditRead,
        }
    }
}

pub struct NavItem {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// What every page of a workspace shows around its content.
pub struct Chrome {
    pub title: String,
    pub workspace_name: String,
    /// The signed-in person; None for a setup link.
    pub who: Option<String>,
    pub nav: Vec<NavItem>,
    pub root: String,
    pub csrf: String,
    pub notice: Option<Notice>,
}

impl Chrome {
    pub fn with_notice(mut self, notice: Option<Notice>) -> Chrome {
        self.notice = notice;
        self
    }
}

/// A line at the top of a page saying what just happened.
pub struct Notice {
    /// `saved` or `error`.
    pub kind: &'static str,
    pub text: String,
}

impl Notice {
    pub fn saved(text: impl Into<String>) -> Option<Notice> {
        Some(Notice {
            kind: "saved",
            text: text.into(),
        })
    }

    pub fn error(text: impl Into<String>) -> Option<Notice> {
        Some(Notice {
            kind: "error",
            text: text.into(),
        })
    }
}

/// `?saved=1`, which a page is redirected to after a change it then confirms.
#[derive(serde::Deserialize)]
pub struct Saved {
    saved: Option<String>,
}

impl Saved {
    pub fn notice(&self) -> Option<Notice> {
        self.saved.as_ref().and_then(|_| Notice::saved("Saved."))
    }
}

/// The CSRF token of a cookie: a hash of it, so a page shows nothing that authenticates, and a
/// site that cannot read the cookie cannot make the token.
fn csrf_token(cookie: &str) -> String {
    let mut hasher = openssl::sha::Sha256::new();
    hasher.update(b"idgate console csrf\0");
    hasher.update(cookie.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finish())
}

/// The cookie that authenticates a console request: the setup link's under `/setup/`, the
/// session's elsewhere.
fn credential_cookie(request: &HttpRequest) -> Option<String> {
    let name = if setup_path(request) {
        SETUP_COOKIE
    } else {
        crate::sessions::COOKIE
    };
    request.cookie(name).map(|cookie| cookie.value().to_owned())
}

fn setup_path(request: &HttpRequest) -> bool {
    request.path().starts_with("/setup/")
}

fn app_data<T: 'static>(request: &HttpRequest) -> web::Data<T> {
    request
        .app_data::<web::Data<T>>()
        .expect("the app registers its state")
        .clone()
}

impl FromRequest for Visitor {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Visitor, PageError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let root = root(&app_data::<BaseUrl>(&request));
            if setup_path(&request) {
                return setup::visitor(&request, root).await;
            }
            let slug = request
                .match_info()
                .get("ws")
                .unwrap_or_default()
                .to_owned();
            let Some(cookie) = request.cookie(crate::sessions::COOKIE) else {
                return Err(PageError::SignIn { slug, root });
            };
            let csrf = csrf_token(cookie.value());
            let auth = Authorized::<needs::AnyScope>::extract(&request)
                .await
                .map_err(|error| PageError::from_auth(error, &slug, &root))?;
            Ok(Visitor {
                base: format!("{root}/console/{}", auth.workspace.slug),
                root,
                workspace: auth.workspace,
                scopes: auth.scopes,
                person: auth.person,
                acting_for: auth.acting_for,
                audit: auth.audit,
                csrf,
            })
        })
    }
}

/// A submitted form: read only after its CSRF token matched the cookie that authenticates the
/// request and the browser said the request came from this service.
pub struct Submitted<T>(pub T);

/// A form whose only field is its CSRF token (a revoke button, sign-out).
#[derive(serde::Deserialize)]
pub struct NoFields {}

/// Forms are small, except the IdP metadata pasted into one (at most a MiB, as fetched metadata).
const MAX_FORM_BYTES: usize = 1024 * 1024 + 64 * 1024;

impl<T: DeserializeOwned + 'static> FromRequest for Submitted<T> {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Submitted<T>, PageError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let request = request.clone();
        let body = web::Bytes::from_request(&request, payload);
        Box::pin(async move {
            crate::auth::session::same_origin(&request).map_err(|_| PageError::CrossSite)?;
            let expected = credential_cookie(&request)
                .map(|cookie| csrf_token(&cookie))
                .ok_or(PageError::Expired)?;
            let body = body.await.map_err(|_| {
                PageError::Invalid("The form could not be read, or is over a MiB.".to_owned())
            })?;
            let presented = url::form_urlencoded::parse(&body)
                .find(|(key, _)| key == "csrf")
                .map(|(_, value)| value.into_owned());
            // In constant time, which openssl's compare gives only for inputs of one length.
            let matches = presented.is_some_and(|presented| {
                presented.len() == expected.len()
                    && openssl::memcmp::eq(presented.as_bytes(), expected.as_bytes())
            });
            if !matches {
                return Err(PageError::Expired);
            }
            serde_urlencoded::from_bytes(&body)
                .map(Submitted)
                .map_err(|error| PageError::Invalid(format!("The form is incomplete: {error}.")))
        })
    }
}

/// A page, or the HTML error page when its template fails (which a test would have caught).
pub fn render(status: StatusCode, template: &impl Template) -> HttpResponse {
    match template.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(error) => {
            tracing::error!(error = %error, "a console template failed");
            PageError::Broken.error_response()
        }
    }
}

/// 303 to a page of the console, after a change.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((
            header::LOCATION,
            HeaderValue::from_str(location).expect("console paths are valid header values"),
        ))
        .finish()
}

/// Why a page is not shown, as a page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("sign in to this workspace's console")]
    SignIn { slug: String, root: String },
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("this link has expired, was revoked or was already used")]
    LinkEnded,
    #[error("the form has expired: reload the page and try again")]
    Expired,
    #[error("a page of another site cannot change anything here")]
    CrossSite,
    #[error("too many requests: try again in {} s", .0.retry_after)]
    Busy(Limited),
    #[error("the service is unavailable: try again shortly")]
    Unavailable(#[from] StoreError),
    #[error("something went wrong on our side")]
    Broken,
}

impl PageError {
    fn from_auth(error: AuthError, slug: &str, root: &str) -> PageError {
        match error {
            // No session, or another workspace's: signing in here is the way in.
            AuthError::Missing
            | AuthError::Rejected(_)
            | AuthError::Session
            | AuthError::OtherWorkspace => PageError::SignIn {
                slug: slug.to_owned(),
                root: root.to_owned(),
            },
            AuthError::MissingScope(_) | AuthError::RolesDeny(_) => {
                PageError::Forbidden("Your roles do not allow this.".into())
            }
            AuthError::CrossSite => PageError::CrossSite,
            AuthError::RateLimited(limited) => PageError::Busy(limited),
            AuthError::Store(error) => PageError::Unavailable(error),
        }
    }
}

impl From<diesel::result::Error> for PageError {
    fn from(error: diesel::result::Error) -> Self {
        PageError::Unavailable(error.into())
    }
}

impl From<AccessError> for PageError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::NotFound(detail) => PageError::NotFound(detail),
            AccessError::Forbidden(detail) => PageError::Forbidden(detail.into()),
            AccessError::Token(error) => PageError::from(error),
            AccessError::Store(error) => PageError::Unavailable(error),
            other => PageError::Invalid(other.to_string()),
        }
    }
}

impl From<TokenError> for PageError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::NotFound(detail) => PageError::NotFound(detail),
            TokenError::ScopeEscalation(_) => PageError::Forbidden(error.to_string().into()),
            TokenError::Store(error) => PageError::Unavailable(error),
            other => PageError::Invalid(other.to_string()),
        }
    }
}

impl From<SamlError> for PageError {
    fn from(error: SamlError) -> Self {
        match error {
            SamlError::Store(error) => PageError::Unavailable(error),
            SamlError::Internal(detail) => {
                tracing::error!(detail = detail.as_str(), "SAML internal error");
                PageError::Broken
            }
            other => PageError::Invalid(other.to_string()),
        }
    }
}

impl From<WorkspaceError> for PageError {
    fn from(error: WorkspaceError) -> Self {
        match error {
            WorkspaceError::Store(error) => PageError::Unavailable(error),
            WorkspaceError::NotFound(slug) => PageError::NotFound(format!("No workspace {slug}.")),
            other => PageError::Invalid(other.to_string()),
        }
    }
}

impl From<LinkError> for PageError {
    fn from(error: LinkError) -> Self {
        match error {
            LinkError::NotFound(_) => PageError::NotFound("No such setup link.".to_owned()),
            LinkError::Store(error) => PageError::from(error),
            other => PageError::Invalid(other.to_string()),
        }
    }
}

/// A page with a heading, a sentence and the way back: what every refusal looks like.
#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    /// Empty: an error knows no request, so its page assumes idgate is served at the root.
    root: &'static str,
    title: &'static str,
    text: String,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::SignIn { .. } => StatusCode::UNAUTHORIZED,
            PageError::Forbidden(_) | PageError::CrossSite | PageError::Expired => {
                StatusCode::FORBIDDEN
            }
            PageError::NotFound(_) | PageError::LinkEnded => StatusCode::NOT_FOUND,
            PageError::Invalid(_) => StatusCode::BAD_REQUEST,
            PageError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            PageError::Unavailable(error) => error.status_code(),
            PageError::Broken => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let PageError::SignIn { slug, root } = self {
            return signin::sign_in_page(slug, root);
        }
        if let PageError::Unavailable(error) = self {
            tracing::warn!(error = %error, "a console page could not read the store");
        }
        let title = match self {
            PageError::Forbidden(_) | PageError::CrossSite => "Not allowed",
            PageError::NotFound(_) => "Not found",
            PageError::LinkEnded => "This link no longer works",
            PageError::Expired => "The form has expired",
            PageError::Invalid(_) => "That did not work",
            PageError::Busy(_) => "Too many requests",
            PageError::Unavailable(_) | PageError::Broken | PageError::SignIn { .. } => {
                "Something went wrong"
            }
        };
        let text = match self {
            PageError::Invalid(detail) | PageError::NotFound(detail) => detail.clone(),
            PageError::Forbidden(detail) => detail.to_string(),
            other => format!("{}.", capitalised(&other.to_string())),
        };
        let page = MessagePage {
            root: "",
            title,
            text,
        };
        let html = page.render().unwrap_or_else(|_| title.to_owned());
        let mut response = HttpResponse::build(self.status_code())
            .content_type("text/html; charset=utf-8")
            .body(html);
        if let PageError::Busy(limited) = self {
            limited.add_to(&mut response);
        }
        response
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
