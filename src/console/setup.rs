//! Setup links: an Owner hands a customer's IT admin a link that opens the workspace's IdP
//! connection and SCIM pages, and nothing else, until it expires or is revoked.
//!
//! Opening the link trades its URL for a cookie sent only to `/setup/` (so the secret leaves the
//! address bar and the history at once), and is audited; every change made through it is audited
//! with the link as the actor. The cookie is `SameSite=Lax`, not `Strict`: the link is followed
//! from another site (a mail), and a browser would not send a strict cookie on that navigation's
//! redirect to the pages; forms are held to this origin by their CSRF token and origin check.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{
    Chrome, NoFields, Notice, PageError, SETUP_COOKIE, Saved, Section, Submitted, Visitor,
    app_data, csrf_token, overview, render, root, see_other,
};
use crate::api::links::{SetupLinkError, create_setup_link};
use crate::audit::{Actor, AuditContext};
use crate::config::BaseUrl;
use crate::db::Store;
use crate::links::{self, Kind, Link};
use crate::permissions::{Scope, Scopes};
use crate::telemetry::request_id;
use crate::time::Clock;
use crate::workspaces;

/// The setup-link pages of a workspace's console, for its Owners.
pub fn manage_routes(config: &mut web::ServiceConfig) {
    config
        .route("/setup-links", web::get().to(list))
        .route("/setup-links", web::post().to(create))
        .route("/setup-links/{link}/revoke", web::post().to(revoke));
}

/// The visitor a setup link makes: the link's workspace, with what the IdP and SCIM pages need.
pub async fn visitor(request: &HttpRequest, root: String) -> Result<Visitor, PageError> {
    let secret = request
        .cookie(SETUP_COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .ok_or(PageError::LinkEnded)?;
    let store = app_data::<Store>(request);
    let now = app_data::<Clock>(request).now();
    let csrf = csrf_token(&secret);
    let (link, workspace) = store
        .read(move |conn| {
            let link =
                links::find_live(conn, Kind::Setup, &secret, now)?.ok_or(PageError::LinkEnded)?;
            let workspace = workspaces::find(conn, &link.workspace_id)?;
            Ok::<_, PageError>((link, workspace))
        })
        .await?;
    Ok(Visitor {
        workspace,
        scopes: Scopes::from_list(["workspace:read", "workspace:write", "tokens:write"])
            .expect("valid scopes"),
        person: None,
        acting_for: None,
        audit: AuditContext {
            actor: Actor::SetupLink(link.id),
            request_id: request_id(),
        },
        base: format!("{root}/setup"),
        root,
        csrf,
    })
}

/// Opens a setup link: records the use, leaves the cookie, and moves on to the pages.
pub async fn open(
    store: web::Data<Store>,
    clock: web::Data<Clock>,
    base_url: web::Data<BaseUrl>,
    secret: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let now = clock.now();
    let secret = secret.into_inner();
    let looked_up = secret.clone();
    let request_id = request_id();
    let link = store
        .run(move |conn| {
            let link = links::find_live(conn, Kind::Setup, &looked_up, now)?
                .ok_or(PageError::LinkEnded)?;
            let context = AuditContext {
                actor: Actor::SetupLink(link.id.clone()),
                request_id,
            };
            conn.write(|tx| links::record_use(tx, Kind::Setup, &link, &context, now))?;
            Ok::<_, PageError>(link)
        })
        .await?;
    let root = root(&base_url);
    let cookie = Cookie::build(SETUP_COOKIE, secret)
        .path(format!("{root}/setup/"))
        .http_only(true)
        .secure(base_url.as_str().starts_with("https://"))
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(
            (link.expires_at - now).num_seconds().max(0),
        ))
        .finish();
    let mut response = see_other(&format!("{root}/setup/"));
    response
        .add_cookie(&cookie)
        .expect("a link secret is a valid cookie value");
    Ok(response)
}

#[derive(Template)]
#[template(path = "console/setup.html")]
struct SetupOverview {
    chrome: Chrome,
    steps: Vec<overview::Step>,
}

/// What a setup link opens on: the IdP and SCIM steps of the checklist.
pub async fn overview(
    visitor: Visitor,
    store: web::Data<Store>,
) -> Result<HttpResponse, PageError> {
    let steps = overview::steps(&visitor, &store)
        .await?
        .into_iter()
        .filter(|step| step.for_setup_link)
        .collect();
    let page = SetupOverview {
        chrome: visitor.chrome("Set up single sign-on", Section::Overview),
        steps,
    };
    Ok(render(StatusCode::OK, &page))
}

pub struct LinkRow {
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
    pub last_used_at: String,
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "console/setup_links.html")]
struct LinksPage {
    chrome: Chrome,
    base: String,
    links: Vec<LinkRow>,
    /// A link just made, shown this once.
    created: Option<String>,
}

async fn links_page(
    visitor: &Visitor,
    store: &Store,
    notice: Option<Notice>,
    created: Option<String>,
) -> Result<LinksPage, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let workspace_id = visitor.workspace.id.clone();
    let found: Vec<Link> = store
        .read(move |conn| Ok::<_, PageError>(links::list_setup(conn, &workspace_id)?))
        .await?;
    let now = crate::time::now();
    Ok(LinksPage {
        chrome: visitor
            .chrome("Setup links", Section::SetupLinks)
            .with_notice(notice),
        base: visitor.base.clone(),
        links: found
            .iter()
            .map(|link| LinkRow {
                id: link.id.clone(),
                created_at: crate::time::rfc3339(&link.created_at),
                expires_at: crate::time::rfc3339(&link.expires_at),
                last_used_at: link
                    .used_at
                    .map_or_else(|| "never".to_owned(), |at| crate::time::rfc3339(&at)),
                status: link.status(now),
            })
            .collect(),
        created,
    })
}

async fn list(
    visitor: Visitor,
    store: web::Data<Store>,
    saved: web::Query<Saved>,
) -> Result<HttpResponse, PageError> {
    let page = links_page(&visitor, &store, saved.notice(), None).await?;
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    expires_in: String,
}

async fn create(
    visitor: Visitor,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    form: Submitted<CreateForm>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let expires_in = Some(form.0.expires_in.trim().to_owned()).filter(|raw| !raw.is_empty());
    let (workspace_id, acting_for, audit) = (
        visitor.workspace.id.clone(),
        visitor.acting_for.clone(),
        visitor.audit.clone(),
    );
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
        .await
        .map_err(|error| match error {
            SetupLinkError::NotOwner => PageError::Forbidden(
                "Only an Owner makes setup links: a setup link can connect another IdP.".into(),
            ),
            SetupLinkError::Invalid(detail) => PageError::Invalid(detail),
            SetupLinkError::NotFound(detail) => PageError::NotFound(detail),
            SetupLinkError::Store(error) => PageError::Unavailable(error),
        })?;
    let notice = Notice::saved("Link made. Copy it now: it is not shown again.");
    let page = links_page(&visitor, &store, notice, Some(made.url)).await?;
    Ok(render(StatusCode::CREATED, &page))
}

async fn revoke(
    visitor: Visitor,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
    _form: Submitted<NoFields>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let (_, id) = path.into_inner();
    let (workspace_id, audit) = (visitor.workspace.id.clone(), visitor.audit.clone());
    store
        .write(move |tx| {
            links::revoke_setup(tx, &workspace_id, &id, &audit).map_err(PageError::from)
        })
        .await?;
    Ok(see_other(&format!("{}/setup-links?saved=1", visitor.base)))
}
