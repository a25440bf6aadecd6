//! Provisioning: the SCIM base URL, the workspace's SCIM tokens (made here, their secret shown
//! once), when the IdP last used one, what it provisioned lately and which of its writes were
//! refused.
//!
//! A SCIM token is the IdP's, not a person's: it is made without an expiry unless one is asked
//! for, and carries only the `scim` scope. What it can do (make anyone a member of a group mapped
//! to Owner) is an Owner's to hand out, so only an Owner, or a setup link an Owner made, makes one.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{
    Chrome, NoFields, Notice, PageError, Saved, Section, Submitted, Visitor, render, see_other,
};
use crate::access::members::OwnerAuthority;
use crate::audit::{self, Filter, Order};
use crate::config::BaseUrl;
use crate::db::Store;
use crate::permissions::{Scope, Scopes};
use crate::tokens::{self, ApiToken, NewToken, Revocation};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/scim", web::get().to(page))
        .route("/scim/tokens", web::post().to(create_token))
        .route("/scim/tokens/{token}/revoke", web::post().to(revoke_token));
}

/// How many recent provisioning events the page lists.
const EVENTS_SHOWN: i64 = 25;

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    pub status: &'static str,
}

pub struct EventRow {
    pub time: String,
    pub action: String,
    pub target: String,
    /// What was refused, for a refused request.
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/provisioning.html")]
struct ProvisioningPage {
    chrome: Chrome,
    base: String,
    scim_base_url: String,
    tokens: Vec<TokenRow>,
    last_activity: Option<String>,
    events: Vec<EventRow>,
    /// A token just made: (name, secret), shown this once.
    created: Option<(String, String)>,
    may_create: bool,
}

async fn page(
    visitor: Visitor,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    saved: web::Query<Saved>,
) -> Result<HttpResponse, PageError> {
    let page = provisioning_page(&visitor, &store, &base_url, saved.notice(), None).await?;
    Ok(render(StatusCode::OK, &page))
}

async fn provisioning_page(
    visitor: &Visitor,
    store: &Store,
    base_url: &BaseUrl,
    notice: Option<Notice>,
    created: Option<(String, String)>,
) -> Result<ProvisioningPage, PageError> {
    visitor.require(Scope::TokensWrite)?;
    let workspace_id = visitor.workspace.id.clone();
    let acting_for = visitor.acting_for.clone();
    let via_setup_link = visitor.via_setup_link();
    let (tokens, events, authority) = store
        .read(move |conn| {
            let tokens: Vec<ApiToken> = tokens::list(conn, &workspace_id)?
                .into_iter()
                .filter(|token| shown_to(token, via_setup_link))
                .collect();
            let filter = Filter {
                action_prefix: Some("scim.".to_owned()),
                ..Filter::default()
            };
            let events = audit::page(
                conn,
                &workspace_id,
                &filter,
                Order::NewestBefore(None),
                EVENTS_SHOWN,
            )?;
            let authority = OwnerAuthority::of(conn, &workspace_id, acting_for.as_deref())?;
            Ok::<_, PageError>((tokens, events, authority))
        })
        .await?;
    let now = crate::time::now();
    let when = |time: Option<chrono::NaiveDateTime>| {
        time.map_or_else(|| "never".to_owned(), |time| crate::time::rfc3339(&time))
    };
    let last_activity = tokens
        .iter()
        .filter_map(|token| token.last_used_at)
        .max()
        .map(|time| crate::time::rfc3339(&time));
    Ok(ProvisioningPage {
        chrome: visitor
            .chrome("Provisioning (SCIM)", Section::Provisioning)
            .with_notice(notice),
        base: visitor.base.clone(),
        scim_base_url: format!("{}{}", base_url.as_str(), crate::api::scim::SCOPE),
        tokens: tokens
            .iter()
            .map(|token| TokenRow {
                id: token.id.clone(),
                name: token.name.clone(),
                created_at: crate::time::rfc3339(&token.created_at),
                last_used_at: when(token.last_used_at),
                expires_at: when(token.expires_at),
                status: token.status(now),
            })
            .collect(),
        last_activity,
        events: events
            .into_iter()
            .map(|event| {
                let details: serde_json::Value =
                    serde_json::from_str(&event.details).unwrap_or_default();
                EventRow {
                    time: crate::time::rfc3339(&event.occurred_at),
                    error: (event.action == "scim.request.refused").then(|| {
                        format!(
                            "{} {}",
                            details["status"],
                            details["detail"].as_str().unwrap_or_default()
                        )
                    }),
                    action: event.action,
                    target: event.target_id.unwrap_or_default(),
                }
            })
            .collect(),
        created,
        may_create: authority == OwnerAuthority::Held,
    })
}

#[derive(Deserialize)]
struct CreateForm {
    name: String,
    /// Blank: the token does not expire (an IdP's provisioning should not stop by surprise).
    #[serde(default)]
    expires_in: String,
}

/// Makes a SCIM token and shows its secret on the page answered, never in a URL.
async fn create_token(
    visitor: Visitor,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    form: Submitted<CreateForm>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::TokensWrite)?;
    let form = form.0;
    let lifetime = Some(form.expires_in.trim())
        .filter(|raw| !raw.is_empty())
        .map(tokens::parse_lifetime)
        .transpose()?;
    let name = Some(form.name.trim().to_owned()).filter(|name| !name.is_empty());
    let (workspace, acting_for, audit) = (
        visitor.workspace.clone(),
        visitor.acting_for.clone(),
        visitor.audit.clone(),
    );
    let setup_link_id = visitor.setup_link().map(str::to_owned);
    let issued = store
        .run(move |conn| {
            if OwnerAuthority::of(conn, &workspace.id, acting_for.as_deref())?
                != OwnerAuthority::Held
            {
                return Err(PageError::Forbidden(
                    "Only an Owner makes SCIM tokens: a SCIM token can put anyone in any group."
                        .into(),
                ));
            }
            let new = NewToken {
                name,
                scopes: Scopes::from_list(["scim"]).expect("scim is a scope"),
                lifetime,
                minted_by: None,
                setup_link_id,
            };
            Ok(tokens::create(conn, &workspace, new, &audit)?)
        })
        .await?;
    let created = Some((issued.token.name.clone(), issued.secret));
    let notice = Notice::saved("Token made. Copy it now: it is not shown again.");
    let page = provisioning_page(&visitor, &store, &base_url, notice, created).await?;
    Ok(render(StatusCode::CREATED, &page))
}

/// Whether the page lists `token`, and so may revoke it: a SCIM token, and under a setup link only
/// one made through a setup link, never the operator's or a person's, whatever its scopes.
fn shown_to(token: &ApiToken, via_setup_link: bool) -> bool {
    token.scopes.contains(Scope::Scim) && (!via_setup_link || token.setup_link_id.is_some())
}

async fn revoke_token(
    visitor: Visitor,
    store: web::Data<Store>,
    request: actix_web::HttpRequest,
    _form: Submitted<NoFields>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::TokensWrite)?;
    // By name: under `/setup` the path has no workspace segment.
    let token_id = request
        .match_info()
        .get("token")
        .unwrap_or_default()
        .to_owned();
    let (workspace_id, audit) = (visitor.workspace.id.clone(), visitor.audit.clone());
    let via_setup_link = visitor.via_setup_link();
    store
        .run(move |conn| {
            let revocable = tokens::find(conn, &workspace_id, &token_id)?
                .is_some_and(|token| shown_to(&token, via_setup_link));
            if !revocable {
                return Err(PageError::NotFound("No such SCIM token.".to_owned()));
            }
            let _: Revocation = tokens::revoke(conn, &token_id, Some(&workspace_id), &audit)?;
            Ok(())
        })
        .await?;
    Ok(see_other(&format!("{}/scim?saved=1", visitor.base)))
}
