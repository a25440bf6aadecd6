//! Logging: one subscriber for the process, and the root span every request runs in.
//!
//! The root span carries the request id, so every line logged while serving a request names it.
//! It records the path but never the query string (SAML's redirect binding carries signed messages
//! there) nor any header, and of a console link only its route: tokens, cookies, link secrets and
//! SAML messages stay out of the logs.

use std::io::{BufWriter, IsTerminal};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber, writing to stderr. `RUST_LOG` overrides `default_level`.
/// Calling it again (tests start many servers in one process) keeps the first subscriber.
///
/// A line is formatted where it is logged and written by a thread of the subscriber's own, which
/// takes every line queued and writes them in one go: a `write` to stderr per request line cost
/// the server more than formatting it. No line is dropped; past 128,000 queued lines, logging
/// waits for the writer. Colours only when stderr is a terminal. The returned guard writes out
/// what is queued when dropped: hold it until the process ends.
pub fn init(format: LogFormat, default_level: &str) -> Option<WorkerGuard> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("idgate-log")
        .finish(BufWriter::new(std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.is_ok().then_some(guard)
}

pub struct RootSpan;

/// The route template a request matched (None: no route matched), found once by the root span and
/// used by the request counters too: matching walks the router's patterns again.
#[derive(Clone)]
struct MatchedRoute(Option<String>);

/// The request's route template, as the root span found it (every route runs inside it).
fn matched_route(request: &HttpRequest) -> Option<String> {
    request
        .extensions()
        .get::<MatchedRoute>()
        .and_then(|MatchedRoute(route)| route.clone())
}

impl RootSpanBuilder for RootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().copied();
        let route = request.match_pattern();
        request.extensions_mut().insert(MatchedRoute(route.clone()));
        // A console link carries its secret in the path: the route template stands in for it.
        let path = match &route {
            Some(route) if route.contains("{secret}") => route.as_str(),
            _ => request.path(),
        };
        tracing::info_span!(
            "request",
            request_id = %request_id.map(|id| id.to_string()).unwrap_or_default(),
            method = %request.method(),
            path = %path,
            route = route.as_deref().unwrap_or_default(),
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let _entered = span.enter();
        let (status, error) = match outcome {
            Ok(response) => (response.status(), response.response().error()),
            Err(error) => (error.as_response_error().status_code(), Some(error)),
        };
        span.record("status", status.as_u16());
        match error {
            Some(error) if status.is_server_error() => {
                // The Debug form names the cause chain; error types keep secrets out of both forms.
                tracing::error!(error = %error, cause = ?error, "request failed");
            }
            _ => tracing::info!("request finished"),
        }
    }
}

/// Counts each request and its time in `/metrics`, by its route template (a path holds ids and
/// secrets; a request no route matched counts as `unmatched`).
pub async fn count_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let outcome = next.call(request).await;
    let (status, route) = match &outcome {
        Ok(response) => (response.status(), matched_route(response.request())),
        Err(error) => (error.as_response_error().status_code(), None),
    };
    let route = route.as_deref().unwrap_or("unmatched");
    let metrics = crate::metrics::metrics();
    metrics
        .requests
        .with_label_values(&[method.as_str(), route, status.as_str()])
        .inc();
    metrics
        .request_seconds
        .with_label_values(&[method.as_str(), route])
        .observe(started.elapsed().as_secs_f64());
    outcome
}

/// Echoes the request id that `TracingLogger` assigned as the `X-Request-Id` response header.
pub async fn request_id_header(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = request.extensions().get::<RequestId>().copied();
    let mut response = next.call(request).await?;
    if let Some(id) = request_id {
        let value = HeaderValue::from_str(&id.to_string()).expect("a UUID is a valid header value");
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}
