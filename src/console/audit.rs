//! The audit log, with the API's filters and paging, and its exports (the API's own endpoints,
//! which the session authenticates), and the access review export.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{Chrome, PageError, Section, Visitor, render};
use crate::audit::{self, EventView, Filter, KindAndId, Order};
use crate::db::Store;
use crate::permissions::Scope;

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/audit", web::get().to(page));
}

const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target: String,
    /// The id of the last event of the page before.
    before: Option<i64>,
}

pub struct EventRow {
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    action: String,
    actor: String,
    target: String,
    events: Vec<EventRow>,
    /// The query string of the next (older) page.
    next: Option<String>,
    /// The filters as the export endpoints take them.
    export_query: String,
    api_base: String,
}

async fn page(
    visitor: Visitor,
    store: web::Data<Store>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::AuditRead)?;
    let query = query.into_inner();
    let given = |raw: &str| Some(raw.trim().to_owned()).filter(|raw| !raw.is_empty());
    let parse = |raw: &str| {
        given(raw)
            .map(|raw| KindAndId::parse(&raw))
            .transpose()
            .map_err(PageError::Invalid)
    };
    let filter = Filter {
        action: given(&query.action),
        actor: parse(&query.actor)?,
        target: parse(&query.target)?,
        ..Filter::default()
    };
    let workspace_id = visitor.workspace.id.clone();
    let before = query.before;
    let events = store
        .read(move |conn| {
            let order = Order::NewestBefore(before);
            Ok::<_, PageError>(audit::page(conn, &workspace_id, &filter, order, PAGE_SIZE)?)
        })
        .await?;
    let mut filters = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("action", &query.action),
        ("actor", &query.actor),
        ("target", &query.target),
    ] {
        if let Some(value) = given(value) {
            filters.append_pair(name, &value);
        }
    }
    let export_query = filters.finish();
    let next = (events.len() as i64 == PAGE_SIZE)
        .then(|| events.last().map(|event| event.id))
        .flatten()
        .map(|id| {
            let separator = if export_query.is_empty() { "" } else { "&" };
            format!("{export_query}{separator}before={id}")
        });
    let rows = events
        .into_iter()
        .map(EventView::from)
        .map(|event| EventRow {
            time: crate::time::rfc3339(&event.time),
            actor: join(&event.actor.kind, event.actor.id.as_deref()),
            target: join(&event.target.kind, event.target.id.as_deref()),
            action: event.action,
            details: event.details.to_string(),
        })
        .collect();
    let page = AuditPage {
        chrome: visitor.chrome("Audit log", Section::Audit),
        action: query.action,
        actor: query.actor,
        target: query.target,
        events: rows,
        next,
        export_query,
        api_base: format!(
            "{}/api/v1/workspaces/{}",
            visitor.root, visitor.workspace.slug
        ),
    };
    Ok(render(StatusCode::OK, &page))
}

fn join(kind: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{kind}:{id}"),
        None => kind.to_owned(),
    }
}
