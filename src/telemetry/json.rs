//! The JSON log (`--log-format json`): one object per line, in tracing-subscriber's JSON shape
//! (`{"timestamp":…,"level":"INFO","fields":{"message":…},"target":…,"span":{"request_id":…,
//! "method":"GET","name":"request"}}`), with `spans` listing tracing's spans, outermost first,
//! when the event is inside any.
//!
//! Written here because the request a line is logged for is no tracing span (see
//! [`RequestScope`]), which tracing-subscriber's JSON formatter could not name. Strings are
//! escaped by serde_json.

use std::cell::RefCell;
use std::fmt;
use std::io::Write as _;

use serde::Serializer as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::{LogBuffer, RequestScope, with_line_buffer, write_timestamp};

/// Writes each event as a JSON object on a line of its own into a [`LogBuffer`].
pub struct JsonLines {
    output: LogBuffer,
}

impl JsonLines {
    pub fn new(output: LogBuffer) -> JsonLines {
        JsonLines { output }
    }
}

/// A span's fields as JSON members (`"name":value,` each), formatted once, when the span is
/// created or a field recorded.
struct SpanFields(Vec<u8>);

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut members = Vec::new();
        attributes.record(&mut Members(&mut members));
        span.extensions_mut().insert(SpanFields(members));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(SpanFields(members)) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(&mut Members(members));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        with_line_buffer(&LINE, |line| {
            line.clear();
            // A record from the `log` crate names its own target and carries it in `log.` fields.
            let normalized = event.normalized_metadata();
            let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
            line.extend_from_slice(b"{\"timestamp\":\"");
            write_timestamp(|part| line.extend_from_slice(part.as_bytes()));
            line.extend_from_slice(b"\",\"level\":\"");
            line.extend_from_slice(metadata.level().as_str().as_bytes());
            line.extend_from_slice(b"\",\"fields\":{");
            event.record(&mut Members(line));
            close_members(line, b"}");
            line.extend_from_slice(b",\"target\":");
            write_string(line, metadata.target());
            RequestScope::with_current(|request| {
                line.extend_from_slice(b",\"span\":{\"request_id\":\"");
                line.extend_from_slice(request.id().as_bytes());
                line.extend_from_slice(b"\",\"method\":");
                write_string(line, request.method.as_str());
                line.extend_from_slice(b",\"name\":\"request\"}");
            });
            if let Some(spans) = ctx.event_scope(event) {
                line.extend_from_slice(b",\"spans\":[");
                for span in spans.from_root() {
                    line.push(b'{');
                    if let Some(SpanFields(members)) = span.extensions().get::<SpanFields>() {
                        line.extend_from_slice(members);
                    }
                    line.extend_from_slice(b"\"name\":");
                    write_string(line, span.name());
                    line.extend_from_slice(b"},");
                }
                close_members(line, b"]");
            }
            line.extend_from_slice(b"}\n");
            // Nowhere to report a failed write to the log.
            let _ = (&self.output).write_all(line);
        });
    }
}

/// Ends a list of members or elements, each written with a comma after it, with `close`.
fn close_members(line: &mut Vec<u8>, close: &[u8]) {
    if line.last() == Some(&b',') {
        line.pop();
    }
    line.extend_from_slice(close);
}

/// Writes `value` as a JSON string, quoted and escaped.
fn write_string(line: &mut Vec<u8>, value: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::Serializer::new(line).serialize_str(value);
}

/// Appends fields to a line as JSON members, each followed by a comma: strings, numbers and
/// booleans as themselves, other values as the string of their Debug form.
struct Members<'a>(&'a mut Vec<u8>);

impl Members<'_> {
    /// Writes a field's name, or returns false for a field the line leaves out.
    fn name(&mut self, field: &Field) -> bool {
        let name = field.name();
        // What the `log` crate's records carry about themselves, already in the line's target.
        if name.starts_with("log.") {
            return false;
        }
        write_string(self.0, name.strip_prefix("r#").unwrap_or(name));
        self.0.push(b':');
        true
    }
}

impl Visit for Members<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.name(field) {
            write_string(self.0, value);
            self.0.push(b',');
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.name(field) {
            self.0
                .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
            self.0.push(b',');
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.name(field) {
            self.0
                .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
            self.0.push(b',');
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.name(field) {
            // serde_json writes a number that is not finite as null.
            let _ = serde_json::Serializer::new(&mut *self.0).serialize_f64(value);
            self.0.push(b',');
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.name(field) {
            self.0
                .extend_from_slice(if value { b"true" } else { b"false" });
            self.0.push(b',');
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.name(field) {
            // Escaped as it is formatted, with no string between.
            let _ =
                serde_json::Serializer::new(&mut *self.0).collect_str(&format_args!("{value:?}"));
            self.0.push(b',');
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::REQUEST;
    use crate::telemetry::tests::Captured;

    /// What `log` logs, each line parsed.
    fn entries_of(log: impl FnOnce()) -> Vec<Value> {
        let output = Captured::default();
        let (buffer, flusher) = LogBuffer::start(Box::new(output.clone()));
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(buffer));
        tracing::subscriber::with_default(subscriber, log);
        drop(flusher);
        output
            .text()
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is a JSON object"))
            .collect()
    }

    #[test]
    fn an_entry_holds_time_level_fields_target_and_spans() {
        let entries = entries_of(|| {
            let span = tracing::info_span!("job", name = "sync", status = tracing::field::Empty);
            let _entered = span.enter();
            span.record("status", 201);
            let inner = tracing::info_span!("inner");
            let _inner = inner.enter();
            tracing::warn!(
                count = 3,
                ok = true,
                delta = -2,
                ratio = 0.5,
                path = "/a \"b\"\n",
                shown = ?Some("x"),
                r#type = "raw",
                "made it"
            );
            tracing::info!("outside");
        });
        let mut entry = entries[0].clone();
        let timestamp = entry.as_object_mut().unwrap().remove("timestamp").unwrap();
        assert!(humantime::parse_rfc3339(timestamp.as_str().unwrap()).is_ok());
        assert_eq!(
            entry,
            json!({
                "level": "WARN",
                "fields": {
                    "message": "made it",
                    "count": 3,
                    "ok": true,
                    "delta": -2,
                    "ratio": 0.5,
                    "path": "/a \"b\"\n",
                    "shown": "Some(\"x\")",
                    "type": "raw",
                },
                "target": "idgate::telemetry::json::tests",
                "spans": [{"name": "job", "status": 201}, {"name": "inner"}],
            })
        );
        assert_eq!(entries[1]["fields"], json!({"message": "outside"}));
        assert_eq!(entries[1]["spans"].as_array().map(Vec::len), Some(2));
    }

    /// A line logged while a request is served names the request.
    #[test]
    fn an_entry_logged_for_a_request_names_it() {
        let id = uuid::Uuid::new_v4();
        let entries = entries_of(|| {
            let request = RequestScope::new(id, actix_web::http::Method::PATCH);
            REQUEST.sync_scope(request, || tracing::info!("within"));
            tracing::info!("without");
        });
        assert_eq!(
            entries[0]["span"],
            json!({"request_id": id.to_string(), "method": "PATCH", "name": "request"})
        );
        assert_eq!(entries[1].get("span"), None);
    }
}
