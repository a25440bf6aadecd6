//! `GET /api/v1/workspaces/{ws}/audit` (a page of events, newest first) and
//! `GET /api/v1/workspaces/{ws}/audit/export?format=jsonl|csv` (every matching event, oldest first,
//! streamed page by page so a long log never sits in memory). Both need scope `audit:read`.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, ResponseError, web};
use futures_util::{StreamExt, stream};
use serde::Deserialize;

use crate::audit::{AuditEvent, EventView, Filter, KindAndId, Order};
use crate::auth::{Authorized, needs};
use crate::csv_export::CsvExport;
use crate::db::{Store, StoreError};

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;
const EXPORT_BATCH: i64 = 500;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/audit").get(list))
        .service(web::resource("/audit/export").get(export));
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    InvalidQuery(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for AuditError {
    fn from(error: diesel::result::Error) -> Self {
        AuditError::Store(error.into())
    }
}

impl ResponseError for AuditError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuditError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            AuditError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AuditError::InvalidQuery(message) => {
                crate::error::json_error(self.status_code(), "invalid_request", message)
            }
            AuditError::Store(error) => error.error_response(),
        }
    }
}

/// The query string of both endpoints. Unknown parameters are refused, so that a misspelt filter
/// (`actions=`) is an error rather than an unfiltered answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Page size for `/audit`.
    limit: Option<i64>,
    /// For `/audit`: the `next_cursor` of the previous page.
    cursor: Option<String>,
    /// For `/audit/export`: `jsonl` or `csv`.
    format: Option<String>,
}

impl AuditQuery {
    fn filter(&self) -> Result<Filter, AuditError> {
        let kind_and_id = |raw: &Option<String>| raw.as_deref().map(KindAndId::parse).transpose();
        let time =
            |raw: &Option<String>| raw.as_deref().map(crate::time::parse_rfc3339).transpose();
        Ok(Filter {
            actor: kind_and_id(&self.actor).map_err(AuditError::InvalidQuery)?,
            action: self.action.clone(),
            action_prefix: None,
            target: kind_and_id(&self.target).map_err(AuditError::InvalidQuery)?,
            since: time(&self.since).map_err(AuditError::InvalidQuery)?,
            until: time(&self.until).map_err(AuditError::InvalidQuery)?,
        })
    }

    fn refuse(present: bool, message: &str) -> Result<(), AuditError> {
        if present {
            Err(AuditError::InvalidQuery(message.to_owned()))
        } else {
            Ok(())
        }
    }
}

async fn list(
    auth: Authorized<needs::AuditRead>,
    store: web::Data<Store>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AuditError> {
    AuditQuery::refuse(query.format.is_some(), "format applies to /audit/export")?;
    let filter = query.filter()?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AuditError::InvalidQuery(format!(
            "limit must be from 1 to {MAX_PAGE}"
        )));
    }
    let before = query
        .cursor
        .as_deref()
        .map(|cursor| {
            cursor
                .parse::<i64>()
                .map_err(|_| AuditError::InvalidQuery("cursor is not one this API gave".into()))
        })
        .transpose()?;
    let workspace_id = auth.workspace.id;
    let events = store
        .run(move |conn| {
            crate::audit::page(
                conn,
                &workspace_id,
                &filter,
                Order::NewestBefore(before),
                limit,
            )
            .map_err(AuditError::from)
        })
        .await?;
    let next_cursor = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    let events: Vec<EventView> = events.into_iter().map(EventView::from).collect();
    Ok(
        HttpResponse::Ok()
            .json(serde_json::json!({ "events": events, "next_cursor": next_cursor })),
    )
}

#[derive(Debug, Clone, Copy)]
enum ExportFormat {
    Jsonl,
    Csv,
}

const CSV_HEADER: [&str; 10] = [
    "id",
    "time",
    "workspace_id",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "details",
    "request_id",
];

fn encode(format: ExportFormat, events: Vec<AuditEvent>) -> Bytes {
    match format {
        ExportFormat::Jsonl => {
            let mut out = Vec::new();
            for event in events {
                serde_json::to_writer(&mut out, &EventView::from(event))
                    .expect("serialising to memory succeeds");
                out.push(b'\n');
            }
            Bytes::from(out)
        }
        ExportFormat::Csv => {
            let mut csv = CsvExport::default();
            for event in events {
                let time = crate::time::rfc3339(&event.occurred_at);
                let record = [
                    event.id.to_string(),
                    time,
                    event.workspace_id.unwrap_or_default(),
                    event.actor_type,
                    event.actor_id.unwrap_or_default(),
                    event.action,
                    event.target_type,
                    event.target_id.unwrap_or_default(),
                    event.details,
                    event.request_id.unwrap_or_default(),
                ];
                csv.row(&record);
            }
            Bytes::from(csv.into_bytes())
        }
    }
}

async fn export(
    auth: Authorized<needs::AuditRead>,
    store: web::Data<Store>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AuditError> {
    AuditQuery::refuse(
        query.limit.is_some() || query.cursor.is_some(),
        "an export has every matching event: no limit or cursor",
    )?;
    let format = match query.format.as_deref() {
        Some("jsonl") => ExportFormat::Jsonl,
        Some("csv") => ExportFormat::Csv,
        _ => {
            return Err(AuditError::InvalidQuery(
                "format must be jsonl or csv".to_owned(),
            ));
        }
    };
    let filter = query.filter()?;
    let workspace_id = auth.workspace.id;
    let (content_type, extension, header) = match format {
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl", Bytes::new()),
        ExportFormat::Csv => (
            "text/csv; charset=utf-8",
            "csv",
            Bytes::from(format!("{}\n", CSV_HEADER.join(","))),
        ),
    };

    // Each batch starts after the last id sent; a short batch is the last.
    let batches = store.stream_batches(move |conn, after: Option<i64>| {
        let events = crate::audit::page(
            conn,
            &workspace_id,
            &filter,
            Order::OldestAfter(after),
            EXPORT_BATCH,
        )?;
        let next = events
            .last()
            .map(|event| event.id)
            .filter(|_| events.len() as i64 == EXPORT_BATCH);
        Ok::<_, AuditError>((encode(format, events), next))
    });
    let body = stream::once(async move { Ok(header) }).chain(batches);
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"audit.{extension}\""),
        ))
        .streaming(body))
}
