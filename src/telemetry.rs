//! Logging: one subscriber for the process, and the root span every request runs in.
//!
//! The root span carries the request id, so every line logged while serving a request names it.
//! It records the path but never the query string (SAML's redirect binding carries signed messages
//! there) nor any header, and of a console link only its route: tokens, cookies, link secrets and
//! SAML messages stay out of the logs.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber, writing to stderr (see [`LogBuffer`]). `RUST_LOG` overrides
/// `default_level`. Calling it again (tests start many servers in one process) keeps the first
/// subscriber. Colours only when stderr is a terminal. The returned guard writes out what is
/// buffered when dropped: hold it until the process ends.
pub fn init(format: LogFormat, default_level: &str) -> Option<LogFlusher> {
    // `RUST_LOG` may name targets, spans and fields: an EnvFilter. Without it, a level alone,
    // which costs a span nothing when entered and left (an EnvFilter looks each one up then).
    let from_env = EnvFilter::try_from_default_env().ok();
    let level = match from_env {
        Some(_) => LevelFilter::TRACE,
        None => default_level.parse().unwrap_or(LevelFilter::INFO),
    };
    let (buffer, flusher) = LogBuffer::start(Box::new(std::io::stderr()));
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(buffer);
    let lines: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Pretty => Box::new(lines),
        LogFormat::Json => Box::new(lines.json().with_current_span(true).with_span_list(false)),
    };
    let installed = tracing_subscriber::registry()
        .with(from_env)
        .with(level)
        .with(lines)
        .try_init();
    installed.is_ok().then_some(flusher)
}

/// How long a line may wait in the [`LogBuffer`] before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Buffered bytes past which the thread logging writes them out itself.
const BUFFER_LIMIT: usize = 1 << 20;

/// Where log lines go on their way to stderr. A line is formatted where it is logged and copied
/// into a buffer; a thread of the buffer's own writes the buffer out every [`FLUSH_INTERVAL`], in
/// one write. Handing each line to a writer thread (tracing-appender's non-blocking writer) woke
/// that thread for nearly every line: on two cores, with each request a line, a fifth of a
/// `GET`'s time went to logging, most of it switching threads; a `write` per line was dearer
/// still. No line is dropped: past [`BUFFER_LIMIT`] buffered bytes, the thread logging writes
/// the buffer out itself, and waits for that.
#[derive(Clone)]
pub struct LogBuffer(Arc<Buffered>);

struct Buffered {
    lines: Mutex<Vec<u8>>,
    /// Held while a batch of lines is written, so that batches reach it in the order taken.
    output: Mutex<Box<dyn Write + Send>>,
    /// Set when the [`LogFlusher`] is dropped; the flushing thread then writes what is left.
    stopping: Mutex<bool>,
    stop: Condvar,
}

/// Writes out what the [`LogBuffer`] holds when dropped, and stops its thread.
pub struct LogFlusher {
    buffer: LogBuffer,
    thread: Option<JoinHandle<()>>,
}

impl LogBuffer {
    fn start(output: Box<dyn Write + Send>) -> (LogBuffer, LogFlusher) {
        let buffer = LogBuffer(Arc::new(Buffered {
            lines: Mutex::new(Vec::new()),
            output: Mutex::new(output),
            stopping: Mutex::new(false),
            stop: Condvar::new(),
        }));
        let flushing = buffer.clone();
        let thread = std::thread::Builder::new()
            .name("idgate-log".to_owned())
            .spawn(move || flushing.flush_until_stopped())
            .expect("the log's thread starts");
        let flusher = LogFlusher {
            buffer: buffer.clone(),
            thread: Some(thread),
        };
        (buffer, flusher)
    }

    fn flush_until_stopped(&self) {
        let mut batch = Vec::new();
        let mut stopping = lock(&self.0.stopping);
        while !*stopping {
            stopping = self
                .0
                .stop
                .wait_timeout(stopping, FLUSH_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            self.write_out(&mut batch);
        }
    }

    /// Writes out the lines buffered, through `batch` (left empty, its memory kept for the next).
    fn write_out(&self, batch: &mut Vec<u8>) {
        let mut output = lock(&self.0.output);
        std::mem::swap(&mut *lock(&self.0.lines), batch);
        if !batch.is_empty() {
            // Nowhere to report a failed write to stderr: the lines are dropped.
            let _ = output.write_all(batch).and_then(|()| output.flush());
            batch.clear();
        }
    }
}

impl Drop for LogFlusher {
    fn drop(&mut self) {
        *lock(&self.buffer.0.stopping) = true;
        self.buffer.0.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A lock that a panic elsewhere leaves usable: a log buffer is bytes, consistent at any point.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Write for &LogBuffer {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut lines = lock(&self.0.lines);
        lines.extend_from_slice(line);
        if lines.len() >= BUFFER_LIMIT {
            drop(lines);
            self.write_out(&mut Vec::new());
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = &'a LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

pub struct RootSpan;

/// The route template a request matched (None: no route matched), kept for the request counters
/// and the root span, which both name it.
#[derive(Clone)]
struct MatchedRoute(Option<String>);

/// The request's route template, found once the request was routed: a look-up of the route the
/// router chose. Before routing, finding it meant matching the path against every pattern again.
fn matched_route(request: &HttpRequest) -> Option<String> {
    if let Some(MatchedRoute(route)) = request.extensions().get::<MatchedRoute>() {
        return route.clone();
    }
    let route = request.match_pattern();
    request.extensions_mut().insert(MatchedRoute(route.clone()));
    route
}

impl RootSpanBuilder for RootSpan {
    /// The path and route are recorded when the request ends, once routed (see
    /// [`matched_route`]): lines logged while it is served name its id and method.
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().copied();
        tracing::info_span!(
            "request",
            request_id = request_id.map(tracing::field::display),
            method = %request.method(),
            path = tracing::field::Empty,
            route = tracing::field::Empty,
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
        if let Ok(response) = outcome {
            let request = response.request();
            let route = matched_route(request);
            // A console link carries its secret in the path: the route template stands in for it.
            let path = match &route {
                Some(route) if route.contains("{secret}") => route.as_str(),
                _ => request.path(),
            };
            span.record("path", tracing::field::display(path));
            span.record("route", route.as_deref().unwrap_or_default());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Lines reach the output in the order logged: written out by the buffer's thread, by a
    /// thread that filled the buffer, or when the flusher is dropped.
    #[test]
    fn every_line_is_written_out_in_order() {
        let output = Captured::default();
        let (buffer, flusher) = LogBuffer::start(Box::new(output.clone()));
        let line = |n: usize| format!("line {n} {}\n", "x".repeat(1000));
        let mut writer = buffer.make_writer();
        // Past the limit: the logging thread writes out itself, with no wait for the interval.
        let filling = BUFFER_LIMIT / line(0).len() + 1;
        for n in 0..filling {
            writer.write_all(line(n).as_bytes()).unwrap();
        }
        assert!(lock(&output.0).len() >= BUFFER_LIMIT);
        // Within the interval, by the buffer's thread.
        writer.write_all(line(filling).as_bytes()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let last = line(filling);
        while !lock(&output.0).ends_with(last.as_bytes()) {
            assert!(
                std::time::Instant::now() < deadline,
                "written out by the thread"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // What is left, when the flusher is dropped.
        writer.write_all(line(filling + 1).as_bytes()).unwrap();
        drop(flusher);
        let expected: String = (0..filling + 2).map(line).collect();
        assert_eq!(
            String::from_utf8(lock(&output.0).clone()).unwrap(),
            expected
        );
    }
}
