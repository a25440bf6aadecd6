//! A workspace's front page: the setup checklist, each step with its state and where to fix it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::{Chrome, PageError, Section, Visitor, render, see_other};
use crate::access::members;
use crate::audit::{self, Filter, Order};
use crate::db::{DbConnection, Store};
use crate::permissions::Scope;
use crate::saml::connection;
use crate::tokens;

pub struct Step {
    pub title: &'static str,
    pub done: bool,
    pub detail: String,
    /// Where to take the step; None when the visitor's roles do not reach that page.
    pub href: Option<String>,
    pub action: &'static str,
    /// Whether a setup link's holder can take the step (the IdP and SCIM ones).
    pub for_setup_link: bool,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    steps: Vec<Step>,
    done: usize,
}

/// `/console/{ws}` goes on to `/console/{ws}/`, where relative links resolve.
pub async fn to_slash(request: HttpRequest) -> HttpResponse {
    see_other(&format!("{}/", request.path()))
}

pub async fn page(visitor: Visitor, store: web::Data<Store>) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceRead)?;
    let steps = steps(&visitor, &store).await?;
    let page = OverviewPage {
        chrome: visitor.chrome("Overview", Section::Overview),
        done: steps.iter().filter(|step| step.done).count(),
        steps,
    };
    Ok(render(StatusCode::OK, &page))
}

/// The newest event of `action` in the workspace, if any: when it happened.
fn latest(
    conn: &mut DbConnection,
    workspace_id: &str,
    action: &str,
) -> diesel::QueryResult<Option<String>> {
    let filter = Filter {
        action: Some(action.to_owned()),
        ..Filter::default()
    };
    Ok(
        audit::page(conn, workspace_id, &filter, Order::NewestBefore(None), 1)?
            .first()
            .map(|event| crate::time::rfc3339(&event.occurred_at)),
    )
}

/// The setup checklist of the visitor's workspace.
pub async fn steps(visitor: &Visitor, store: &Store) -> Result<Vec<Step>, PageError> {
    let workspace_id = visitor.workspace.id.clone();
    let (connection, scim_tokens, provisioned, mappings, signed_in) = store
        .read(move |conn| {
            let connection = connection::get(conn, &workspace_id)?;
            let now = crate::time::now();
            let scim_tokens = tokens::list(conn, &workspace_id)?
                .iter()
                .filter(|token| token.scopes.contains(Scope::Scim) && token.status(now) == "active")
                .count();
            let provisioned = match latest(conn, &workspace_id, "scim.user.created")? {
                Some(at) => Some(at),
                None => latest(conn, &workspace_id, "scim.group.created")?,
            };
            let mappings = members::mappings(conn, &workspace_id)?.len();
            let signed_in = latest(conn, &workspace_id, "saml.login")?;
            Ok::<_, PageError>((connection, scim_tokens, provisioned, mappings, signed_in))
        })
        .await?;
    let base = &visitor.base;
    let link = |page: &str, needs: Scope| {
        visitor
            .scopes
            .contains(needs)
            .then(|| format!("{base}/{page}"))
    };
    Ok(vec![
        Step {
            title: "Connect your identity provider",
            done: connection.is_some(),
            detail: connection.as_ref().map_or_else(
                || "No IdP is connected yet.".to_owned(),
                |connection| format!("Connected to {}.", connection.entity_id),
            ),
            href: link("idp", Scope::WorkspaceWrite),
            action: "IdP connection",
            for_setup_link: true,
        },
        Step {
            title: "Issue a SCIM token",
            done: scim_tokens > 0,
            detail: match scim_tokens {
                0 => "No active SCIM token.".to_owned(),
                1 => "One active SCIM token.".to_owned(),
                n => format!("{n} active SCIM tokens."),
            },
            href: link("scim", Scope::TokensWrite),
            action: "Provisioning",
            for_setup_link: true,
        },
        Step {
            title: "See the first provisioning",
            done: provisioned.is_some(),
            detail: provisioned.map_or_else(
                || "The IdP has not provisioned anyone yet.".to_owned(),
                |at| format!("Latest provisioning at {at}."),
            ),
            href: link("scim", Scope::TokensWrite),
            action: "Provisioning",
            for_setup_link: true,
        },
        Step {
            title: "Map a group to a role",
            done: mappings > 0,
            detail: match mappings {
                0 => "No IdP group is mapped to a role.".to_owned(),
                n => format!("{n} group mapping(s)."),
            },
            href: link("groups", Scope::WorkspaceWrite),
            action: "Groups and roles",
            for_setup_link: false,
        },
        Step {
            title: "Do a test sign-in",
            done: signed_in.is_some(),
            detail: signed_in.map_or_else(
                || "Nobody has signed in through the IdP yet.".to_owned(),
                |at| format!("Latest sign-in at {at}."),
            ),
            href: link("idp", Scope::WorkspaceWrite),
            action: "IdP connection",
            for_setup_link: true,
        },
    ])
}
