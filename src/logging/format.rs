//! PgBouncer-like text lines for `tracing` events:
//! `2026-01-02 03:04:05.678 UTC [1234] LOG C-7: db/user@10.0.0.1:5555 login attempt: ... tls=no`.
//! Levels use PgBouncer's words (LOG for info, WARNING, ERROR, DEBUG, NOISE for trace); a
//! client's span becomes PgBouncer's `C-<id>: db/user@addr` prefix.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Between span fields in their stored form; never part of a value we log.
const SEP: char = '\u{1f}';

/// Span fields stored as `key=value` (strings unquoted) separated by [`SEP`], so the event
/// formatter can pick out `id`, `db`, `user` and `addr`. `K` only tells two output layers
/// apart (each stores its own copy of a span's fields under its own type).
pub struct PlainFields<const K: u8>;

struct FieldWriter<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    res: fmt::Result,
}

impl FieldWriter<'_, '_> {
    fn put(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.res.is_err() {
            return;
        }
        if !self.first {
            self.res = self.out.write_char(SEP);
        }
        self.first = false;
        self.res = self
            .res
            .and_then(|()| write!(self.out, "{}={}", field.name(), value));
    }
}

impl Visit for FieldWriter<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format_args!("{value:?}"));
    }
}

impl<'w, const K: u8> FormatFields<'w> for PlainFields<K> {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = FieldWriter {
            out: &mut writer,
            first: true,
            res: Ok(()),
        };
        fields.record(&mut v);
        v.res
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        if !current.fields.is_empty() {
            current.fields.push(SEP);
        }
        self.format_fields(current.as_writer(), fields)
    }
}

/// The event's message first, then its other fields as ` key=value`.
#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl Visit for EventText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

/// PgBouncer's level words.
pub fn level_word(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "LOG",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "NOISE",
    }
}

/// `2026-01-02T03:04:05.678901Z` -> `2026-01-02 03:04:05.678 UTC`.
fn pgbouncer_time(rfc3339: &str) -> String {
    let s = rfc3339.trim_end_matches('Z').replacen('T', " ", 1);
    let s = match s.find('.') {
        Some(dot) => s[..(dot + 4).min(s.len())].to_string(),
        None => s,
    };
    format!("{s} UTC")
}

/// `C-<id>: db/user@addr` from a client span's stored fields.
#[cfg(test)]
fn client_prefix(fields: &str) -> String {
    conn_prefix('C', fields)
}

/// `C-<id>: db/user@addr` (a client span) or `S-<id>: db/user@addr` (a server span, whose
/// address is the server's) from the span's stored fields.
fn conn_prefix(kind: char, fields: &str) -> String {
    let get = |key: &str| {
        fields
            .split(SEP)
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    };
    format!(
        "{kind}-{}: {}/{}@{}",
        get("id").unwrap_or("?"),
        get("db").unwrap_or("(nodb)"),
        get("user").unwrap_or("(nouser)"),
        get("addr").unwrap_or("?")
    )
}

/// The text format; `with_time_and_pid = false` for syslog, which stamps lines itself.
pub struct PgBouncerFormat {
    pub with_time_and_pid: bool,
}

impl<S, const K: u8> FormatEvent<S, PlainFields<K>> for PgBouncerFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, PlainFields<K>>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.with_time_and_pid {
            let mut t = String::new();
            SystemTime.format_time(&mut Writer::new(&mut t))?;
            write!(writer, "{} [{}] ", pgbouncer_time(&t), std::process::id())?;
        }
        write!(writer, "{} ", level_word(event.metadata().level()))?;
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<_> = scope.from_root().collect();
            // a server event inside a client's span is the server's, as PgBouncer's `slog_*`
            // names one socket: only the innermost connection span becomes the prefix
            let innermost_conn = spans
                .iter()
                .rposition(|s| matches!(s.name(), "client" | "server"));
            for (i, span) in spans.iter().enumerate() {
                let ext = span.extensions();
                let fields = ext
                    .get::<FormattedFields<PlainFields<K>>>()
                    .map(|f| f.fields.as_str())
                    .unwrap_or("");
                if matches!(span.name(), "client" | "server") {
                    if Some(i) == innermost_conn {
                        let kind = if span.name() == "client" { 'C' } else { 'S' };
                        write!(writer, "{} ", conn_prefix(kind, fields))?;
                    }
                } else if fields.is_empty() {
                    write!(writer, "{}: ", span.name())?;
                } else {
                    write!(writer, "{}{{{}}}: ", span.name(), fields.replace(SEP, " "))?;
                }
            }
        }
        let mut text = EventText::default();
        event.record(&mut text);
        writeln!(writer, "{}{}", text.message, text.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_and_prefix_look_like_pgbouncer() {
        assert_eq!(
            pgbouncer_time("2026-01-02T03:04:05.678901Z"),
            "2026-01-02 03:04:05.678 UTC"
        );
        let fields = format!("id=7{SEP}addr=10.0.0.1:5555{SEP}db=app db{SEP}user=bob");
        assert_eq!(client_prefix(&fields), "C-7: app db/bob@10.0.0.1:5555");
        assert_eq!(
            client_prefix(&format!("id=3{SEP}addr=unix")),
            "C-3: (nodb)/(nouser)@unix"
        );
    }
}
