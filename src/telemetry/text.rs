//! The plain-text log: one line per event, in tracing-subscriber's `Full` shape
//! (`2026-12-03T05:47:28.123456Z  INFO request{request_id=… method=GET}: idgate::telemetry: request
//! finished status=200`).
//!
//! Written here rather than by tracing-subscriber's formatter because that one passes every field,
//! its padding and its escaping through `core::fmt` a character at a time: on a `GET /Users/{id}`
//! it cost a fifth of the request's instructions, and the request log must cost under 5%. Strings
//! and integers are copied as they are; only values that need it are formatted or quoted.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::{LogBuffer, RequestScope, with_line_buffer, write_timestamp};

/// Writes each event as a line of text into a [`LogBuffer`].
pub struct TextLines {
    output: LogBuffer,
    /// Colours the level, for a terminal.
    ansi: bool,
}

impl TextLines {
    pub fn new(output: LogBuffer, ansi: bool) -> TextLines {
        TextLines { output, ansi }
    }

    fn write_level(&self, line: &mut String, level: Level) {
        let (name, colour) = match level {
            Level::TRACE => ("TRACE", "35"),
            Level::DEBUG => ("DEBUG", "34"),
            Level::INFO => (" INFO", "32"),
            Level::WARN => (" WARN", "33"),
            Level::ERROR => ("ERROR", "31"),
        };
        if self.ansi {
            line.push_str("\x1b[");
            line.push_str(colour);
            line.push('m');
            line.push_str(name);
            line.push_str("\x1b[0m");
        } else {
            line.push_str(name);
        }
    }
}

/// A span's fields as each line logged inside it shows them, formatted once, when the span is
/// created or a field recorded.
struct SpanFields(String);

/// Room for a request's id and method without growing.
const SPAN_FIELDS_CAPACITY: usize = 64;

impl<S> Layer<S> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut text = String::with_capacity(SPAN_FIELDS_CAPACITY);
        attributes.record(&mut Fields::more(&mut text));
        span.extensions_mut().insert(SpanFields(text));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(SpanFields(text)) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(&mut Fields::more(text));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        with_line_buffer(&LINE, |line| {
            line.clear();
            // A record from the `log` crate names its own target and carries it in `log.` fields.
            let normalized = event.normalized_metadata();
            let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
            write_timestamp(|part| line.push_str(part));
            line.push(' ');
            self.write_level(line, *metadata.level());
            line.push(' ');
            let mut in_scope = false;
            RequestScope::with_current(|request| {
                line.push_str("request{request_id=");
                line.push_str(request.id());
                line.push_str(" method=");
                line.push_str(request.method.as_str());
                line.push_str("}:");
                in_scope = true;
            });
            if let Some(spans) = ctx.event_scope(event) {
                for span in spans.from_root() {
                    line.push_str(span.name());
                    if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>()
                        && !fields.is_empty()
                    {
                        line.push('{');
                        line.push_str(fields);
                        line.push('}');
                    }
                    line.push(':');
                }
                in_scope = true;
            }
            if in_scope {
                line.push(' ');
            }
            line.push_str(metadata.target());
            line.push_str(": ");
            event.record(&mut Fields::ending(line));
            line.push('\n');
            // Nowhere to report a failed write to the log.
            let _ = (&self.output).write_all(line.as_bytes());
        });
    }
}

/// Appends fields to a line: the message as it is, every other field as `name=value`, separated
/// by spaces.
struct Fields<'a> {
    line: &'a mut String,
    /// Whether the next field needs a space before it.
    separate: bool,
}

impl<'a> Fields<'a> {
    /// An event's fields, ending its line.
    fn ending(line: &'a mut String) -> Fields<'a> {
        Fields {
            line,
            separate: false,
        }
    }

    /// A span's fields, after those it already holds.
    fn more(line: &'a mut String) -> Fields<'a> {
        let separate = !line.is_empty();
        Fields { line, separate }
    }

    /// Starts a field: a separating space, and the name unless it is the message. Returns where
    /// its value starts, or None for a field the line leaves out.
    fn begin(&mut self, field: &Field) -> Option<usize> {
        let name = field.name();
        // What the `log` crate's records carry about themselves, already in the line's target.
        if name.starts_with("log.") {
            return None;
        }
        if self.separate {
            self.line.push(' ');
        }
        self.separate = true;
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
        Some(self.line.len())
    }

    /// Quotes and escapes the value written from `value_start` if a reader could mistake it: a
    /// line break or terminal escape in any value, and for a field other than the message a space,
    /// quote, `=` or backslash (which would blur where it ends).
    fn seal(&mut self, field: &Field, value_start: usize) {
        let is_message = field.name() == "message";
        let value = &self.line[value_start..];
        let ambiguous_char =
            |c: char| c.is_control() || (!is_message && matches!(c, ' ' | '"' | '=' | '\\'));
        // The table picks out, in one pass over the bytes, the few values worth a look at their
        // characters.
        let mask = if is_message {
            IN_ANY
        } else {
            IN_ANY | IN_FIELD
        };
        let ambiguous = (value.is_empty() && !is_message)
            || (value
                .bytes()
                .any(|byte| AMBIGUOUS[usize::from(byte)] & mask != 0)
                && value.chars().any(ambiguous_char));
        if ambiguous {
            let raw = self.line.split_off(value_start);
            let _ = write!(self.line, "{raw:?}");
        }
    }
}

/// Marks a byte that may make any value ambiguous.
const IN_ANY: u8 = 1;
/// Marks a byte that makes the value of a field other than the message ambiguous.
const IN_FIELD: u8 = 2;

/// For each byte, whether it may make a value ambiguous: ASCII's controls and the first byte of
/// Latin-1's (U+0080 to U+009F, encoded 0xC2 0x80 to 0xC2 0x9F) in any value; a space, quote, `=`
/// or backslash in a field's.
const AMBIGUOUS: [u8; 256] = {
    let mut table = [0; 256];
    let mut byte = 0;
    while byte < table.len() {
        table[byte] = match byte as u8 {
            0..0x20 | 0x7f | 0xc2 => IN_ANY | IN_FIELD,
            b' ' | b'"' | b'=' | b'\\' => IN_FIELD,
            _ => 0,
        };
        byte += 1;
    }
    table
};

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let Some(value_start) = self.begin(field) else {
            return;
        };
        self.line.push_str(value);
        self.seal(field, value_start);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.begin(field).is_some() {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.begin(field).is_some() {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.begin(field).is_some() {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let Some(value_start) = self.begin(field) else {
            return;
        };
        let _ = write!(self.line, "{value:?}");
        self.seal(field, value_start);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::REQUEST;
    use crate::telemetry::tests::Captured;

    /// What `log` logs, as lines of text.
    fn lines_of(ansi: bool, log: impl FnOnce()) -> String {
        let output = Captured::default();
        let (buffer, flusher) = LogBuffer::start(Box::new(output.clone()));
        let subscriber = tracing_subscriber::registry().with(TextLines::new(buffer, ansi));
        tracing::subscriber::with_default(subscriber, log);
        drop(flusher);
        output.text()
    }

    #[test]
    fn a_line_names_its_time_level_spans_target_message_and_fields() {
        let text = lines_of(false, || {
            let span = tracing::info_span!(
                "request",
                request_id = "r-1",
                method = "GET",
                status = tracing::field::Empty
            );
            let _entered = span.enter();
            span.record("status", 201);
            let inner = tracing::info_span!("inner");
            let _inner = inner.enter();
            tracing::warn!(count = 3, ok = true, delta = -2, "made it");
        });
        let (timestamp, rest) = text.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(timestamp).is_ok(), "{text}");
        assert_eq!(
            rest,
            " WARN request{request_id=r-1 method=GET status=201}:inner: \
             idgate::telemetry::text::tests: made it count=3 ok=true delta=-2\n"
        );
    }

    /// A value that could be read as the line's end, another field or a terminal's command is
    /// quoted with its characters escaped.
    #[test]
    fn values_that_would_blur_the_line_are_quoted_and_escaped() {
        let text = lines_of(false, || {
            tracing::info!(
                path = "/a b",
                quote = "say \"hi\"",
                pair = "a=b",
                empty = "",
                newline = %"one\ntwo",
                escape = "\u{1b}[31mred",
                latin1 = "\u{85}",
                plain = "/ünïcode",
                "line\nbreak, \"quoted\""
            );
        });
        let fields = text.split_once("tests: ").unwrap().1;
        let expected = [
            r#""line\nbreak, \"quoted\"""#,
            r#"path="/a b""#,
            r#"quote="say \"hi\"""#,
            r#"pair="a=b""#,
            r#"empty="""#,
            r#"newline="one\ntwo""#,
            r#"escape="\u{1b}[31mred""#,
            r#"latin1="\u{85}""#,
            "plain=/ünïcode\n",
        ];
        assert_eq!(fields, expected.join(" "));
    }

    /// A line logged while a request is served names the request, before any span.
    #[test]
    fn a_line_logged_for_a_request_names_it() {
        let id = uuid::Uuid::new_v4();
        let text = lines_of(false, || {
            let request = RequestScope::new(id, actix_web::http::Method::DELETE);
            REQUEST.sync_scope(request, || {
                let span = tracing::info_span!("inner", step = 2);
                let _entered = span.enter();
                tracing::info!("within");
            });
            tracing::info!("without");
        });
        let lines: Vec<&str> = text
            .lines()
            .map(|line| line.split_once(' ').unwrap().1)
            .collect();
        assert_eq!(
            lines,
            [
                format!(
                    " INFO request{{request_id={id} method=DELETE}}:inner{{step=2}}: \
                     idgate::telemetry::text::tests: within"
                ),
                " INFO idgate::telemetry::text::tests: without".to_owned(),
            ]
        );
    }

    #[test]
    fn a_terminal_sees_the_level_in_colour() {
        let text = lines_of(true, || tracing::error!("down"));
        assert!(
            text.ends_with("Z \x1b[31mERROR\x1b[0m idgate::telemetry::text::tests: down\n"),
            "{text:?}"
        );
    }

    /// Records of the `log` crate (actix-server's) name their own target, not `log`, and not the
    /// fields that carry it.
    #[test]
    fn records_from_the_log_crate_name_their_own_target() {
        let text = lines_of(false, || {
            tracing_log::format_trace(
                &log::Record::builder()
                    .level(log::Level::Info)
                    .target("actix_server::builder")
                    .module_path(Some("actix_server::builder"))
                    .args(format_args!("starting {} workers", 2))
                    .build(),
            )
            .unwrap();
        });
        assert!(
            text.ends_with("Z  INFO actix_server::builder: starting 2 workers\n"),
            "{text}"
        );
    }
}
