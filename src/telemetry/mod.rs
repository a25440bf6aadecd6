//! Logging: one subscriber for the process, and the request each line is logged for.
//!
//! A request is served in a [`RequestScope`] holding its id, so every line logged while serving
//! it names it. Its last line records the path but never the query string (SAML's redirect
//! binding carries signed messages there) nor any header, and of a console link only its route:
//! tokens, cookies, link secrets and SAML messages stay out of the logs.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{JoinHandle, LocalKey};
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use uuid::Uuid;

use crate::config::LogFormat;

mod json;
mod text;

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
    let ansi = std::io::stderr().is_terminal();
    let lines: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Pretty => Box::new(text::TextLines::new(buffer, ansi)),
        LogFormat::Json => Box::new(json::JsonLines::new(buffer)),
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
        // What was logged after the last batch, when the stop came while a batch was written.
        self.write_out(&mut batch);
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

/// The id of the request the current task serves, as audit events record it: the id its log
/// lines and its `X-Request-Id` header carry.
pub fn request_id() -> Option<String> {
    REQUEST.try_with(|request| request.id().to_owned()).ok()
}

/// Calls `write` with this thread's line buffer in `kept`, which keeps its memory from line to
/// line: writing a line allocates nothing. An event logged while a line is written (by a field's
/// Debug) gets a buffer of its own.
fn with_line_buffer<B: Default>(kept: &'static LocalKey<RefCell<B>>, write: impl FnOnce(&mut B)) {
    kept.with(|kept| match kept.try_borrow_mut() {
        Ok(mut line) => write(&mut line),
        Err(_) => write(&mut B::default()),
    });
}

/// Writes the time as RFC 3339 to the microsecond, `2026-12-03T05:47:28.123456Z`, in parts to
/// `push`. The part up to the second is formatted once a second (per thread).
fn write_timestamp(mut push: impl FnMut(&str)) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with_borrow_mut(|(second, formatted)| {
        if *second != since_epoch.as_secs() {
            *second = since_epoch.as_secs();
            formatted.clear();
            // `2026-12-03T05:47:28Z` without its `Z`.
            let _ = write!(formatted, "{}", humantime::format_rfc3339_seconds(now));
            formatted.pop();
        }
        push(formatted);
    });
    // A million more than the microseconds: seven digits, the last six zero-padded.
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(1_000_000 + since_epoch.subsec_micros());
    push(".");
    push(&digits[1..]);
    push("Z");
}

tokio::task_local! {
    /// The request the task serves, named by each line logged while it is served.
    static REQUEST: RequestScope;
}

/// What a log line says of the request it was logged for.
///
/// A task-local rather than a tracing span: a span per request (created in the registry's slab,
/// entered and left at each poll, closed) cost more than the line itself: with it, logging cost 9%
/// of a `GET`'s instructions, without it 3.5%. Like a span, it is not carried into
/// `spawn_blocking`.
struct RequestScope {
    /// The id as text, hyphenated.
    id: [u8; 36],
    method: Method,
}

impl RequestScope {
    fn new(id: Uuid, method: Method) -> RequestScope {
        let mut text = [0; 36];
        id.hyphenated().encode_lower(&mut text);
        RequestScope { id: text, method }
    }

    fn id(&self) -> &str {
        std::str::from_utf8(&self.id).expect("a UUID's text is ASCII")
    }

    /// Calls `write` with the request the current task serves, if it serves one.
    fn with_current(write: impl FnOnce(&RequestScope)) {
        // Outside a request's task (at start-up, on the blocking pool) there is none.
        let _ = REQUEST.try_with(write);
    }
}

/// Serves each request in a [`RequestScope`] named by a new request id, so that every line logged
/// while it is served names it; then logs the request's line (path, route, status), counts it and
/// its time in `/metrics`, and answers its id in `X-Request-Id`.
///
/// tracing-actix-web's middleware did the span and the line, but entered the span again for each
/// poll of the response's body and cloned it to log; with the counters and the header, three
/// middlewares per request became this one.
pub async fn observe_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().clone();
    let scope = RequestScope::new(Uuid::new_v4(), method.clone());
    let id_header = HeaderValue::from_bytes(&scope.id).expect("a UUID is a valid header value");
    let outcome = REQUEST
        .scope(scope, async move {
            let outcome = next.call(request).await;
            record_request(&outcome, &method, started);
            outcome
        })
        .await;
    let mut response = outcome?;
    response.headers_mut().insert(REQUEST_ID_HEADER, id_header);
    Ok(response)
}

/// Segments this long or longer of a path that matched no route are not logged: a secret (256
/// bits, 43 characters) is far longer, and a word an operator needs to see is shorter.
const UNMATCHED_SEGMENT_SHOWN: usize = 16;

/// `path`, matched by no route, with every segment that could be a secret, whole or in part,
/// replaced by `…`.
fn unmatched_path(path: &str) -> Cow<'_, str> {
    let long = |segment: &str| segment.len() >= UNMATCHED_SEGMENT_SHOWN;
    if !path.split('/').any(long) {
        return Cow::Borrowed(path);
    }
    let shown: Vec<&str> = path
        .split('/')
        .map(|segment| if long(segment) { "…" } else { segment })
        .collect();
    Cow::Owned(shown.join("/"))
}

/// Logs a request's line (its path, route and status, and its error if it failed), and counts it
/// and its time in `/metrics`.
fn record_request(
    outcome: &Result<ServiceResponse<impl MessageBody>, actix_web::Error>,
    method: &Method,
    started: Instant,
) {
    let (status, error) = match outcome {
        Ok(response) => (response.status(), response.response().error()),
        Err(error) => (error.as_response_error().status_code(), Some(error)),
    };
    // The template of the route the router chose; None when no route matched.
    let route = outcome
        .as_ref()
        .ok()
        .and_then(|response| response.request().match_pattern());
    // A console link carries its secret in the path: the route template stands in for it. A path
    // that matched no route (a link with a slash too many, say) may carry one too.
    let path = outcome.as_ref().ok().map(|response| match &route {
        Some(route) if route.contains("{secret}") => Cow::Borrowed(route.as_str()),
        Some(_) => Cow::Borrowed(response.request().path()),
        None => unmatched_path(response.request().path()),
    });
    let path = path.as_deref();
    let route = route.as_deref();
    let code = status.as_u16();
    // Error types keep secrets out of both their forms; the Debug form names the cause chain.
    match error {
        Some(error) if status.is_server_error() => {
            let cause = tracing::field::debug(error);
            tracing::error!(message = "request failed", path, route, status = code, error = %error, cause);
        }
        Some(error) => {
            tracing::info!(message = "request finished", path, route, status = code, error = %error);
        }
        // The message as a string, not format_args: copied, not formatted.
        None => tracing::info!(message = "request finished", path, route, status = code),
    }

    let metrics = crate::metrics::metrics();
    let route = route.unwrap_or("unmatched");
    metrics
        .requests
        .with_label_values(&[method.as_str(), route, status.as_str()])
        .inc();
    metrics
        .request_seconds
        .with_label_values(&[method.as_str(), route])
        .observe(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_path_no_route_matched_is_logged_without_what_could_be_a_secret() {
        let secret = crate::secrets::random_secret();
        for shape in [
            "/setup/{}/",
            "/setup/{}/more",
            "/setup//{}",
            "/SETUP/{}",
            "/x{}",
        ] {
            let path = shape.replace("{}", &secret);
            let logged = unmatched_path(&path);
            assert!(
                !logged.contains(&secret[..UNMATCHED_SEGMENT_SHOWN]),
                "{logged}"
            );
        }
        assert_eq!(unmatched_path("/setup/abc/more/"), "/setup/abc/more/");
        assert_eq!(unmatched_path(&format!("/setup/{secret}/x")), "/setup/…/x");
    }
    use super::*;

    /// An output the test reads back.
    #[derive(Clone, Default)]
    pub(super) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(super) fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

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
        let mut writer = &buffer;
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
        assert_eq!(output.text(), expected);
    }
}
