//! The text log line, when stderr is not a terminal, and where lines wait to be written.
//!
//! It is tracing-subscriber's `Full` line without colours (`2026-12-03T15:04:05.123456Z  INFO
//! request{interaction_id=… method=GET path=/jwks}: aspen_http::interaction: response
//! status=200`), written without the `nu_ansi_term` styling and `core::fmt` padding the default
//! formatter runs even with colours off: for a JWKS or discovery request that formatting was
//! about a tenth of the server's instructions (issue 15, BENCHMARKS.md). Unlike the default,
//! every value has its control characters escaped, so a request cannot start a log line of its
//! own or colour a terminal that shows the file; and a field's value is bare only when it is one
//! token of printable ASCII, quoted with escapes otherwise (logfmt's rule), so a value a client
//! chose cannot close the span's braces or add a field to the line.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Lines logged and not yet written to stderr (see [`Held`]).
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Past this many bytes the held lines are written without waiting.
const FILLED: usize = 64 * 1024;

/// Log lines for stderr held in memory and written together: when they fill [`FILLED`], at
/// least every `every` (a thread of its own), at exit ([`flush`]), and at once for a warning or
/// an error, with every line before it. A `write` for every line was 2.4% of an AIS page's
/// server CPU (issue 15, twenty-fourth pass); nginx's `access_log … buffer= flush=` makes the
/// same trade. What a kill that cannot be caught loses is at most `every` of `INFO` lines.
pub struct Held;

impl Held {
    /// Starts the thread that writes the held lines out every `every`.
    pub fn start(every: Duration) -> io::Result<Held> {
        std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    flush();
                }
            })?;
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Not `flush`: the panic may have come while this thread held the lines.
            if let Ok(mut p) = PENDING.try_lock() {
                write_out(&mut p);
            }
            before(info);
        }));
        Ok(Held)
    }
}

/// Writes every held line to stderr now.
pub fn flush() {
    write_out(&mut PENDING.lock().unwrap_or_else(PoisonError::into_inner));
}

/// Written with the lines' lock held, so lines reach stderr in the order they were logged.
fn write_out(p: &mut Vec<u8>) {
    if p.is_empty() {
        return;
    }
    // As tracing-subscriber's own writer does, a line that cannot be written is dropped.
    let _ = io::Write::write_all(&mut io::stderr().lock(), p);
    p.clear();
    if p.capacity() > 4 * FILLED {
        p.shrink_to(FILLED);
    }
}

/// One event's line, for [`Held`].
pub struct HeldLine {
    urgent: bool,
}

impl io::Write for HeldLine {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut p = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
        p.extend_from_slice(b);
        if self.urgent || p.len() >= FILLED {
            write_out(&mut p);
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Held {
    type Writer = HeldLine;

    fn make_writer(&'a self) -> HeldLine {
        HeldLine { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> HeldLine {
        // `WARN` and `ERROR` are the levels at or below `WARN` in tracing's order.
        HeldLine {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Formats an event: time, level, the spans from the root with their fields, target, fields.
pub struct Line;

/// Formats the fields of a span or an event: the message bare, the rest as `name=value`.
pub struct Fields;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_time(&mut writer, SystemTime::now())?;
        let meta = event.metadata();
        writer.write_str(level(meta.level()))?;
        writer.write_char(' ')?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

fn level(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "ERROR",
        Level::WARN => " WARN",
        Level::INFO => " INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

thread_local! {
    /// The formatted `YYYY-MM-DDTHH:MM:SS` of the last whole second this thread logged in: the
    /// date is worked out once a second, not once a line.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// RFC 3339 in UTC with microseconds and a trailing space, as the default formatter writes it.
fn write_time(w: &mut impl Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(at, text)| {
        if *at != secs {
            text.clear();
            let t = i64::try_from(secs)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .unwrap_or_default();
            write!(text, "{}", t.format("%Y-%m-%dT%H:%M:%S"))?;
            *at = secs;
        }
        w.write_str(text)
    })?;
    let mut frac = *b".000000Z ";
    let mut micros = since.subsec_micros();
    for d in frac[1..7].iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    // Only ASCII digits were written into an ASCII template.
    w.write_str(std::str::from_utf8(&frac).map_err(|_| fmt::Error)?)
}

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Visitor {
            w: writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct Visitor<'w> {
    w: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl<'w> Visitor<'w> {
    /// Writes the separator and `name=` (nothing for the message), then the value through `f`.
    fn field(&mut self, field: &Field, f: impl FnOnce(&mut Escaped<'_, 'w>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        let mut w = Escaped(&mut self.w);
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                w.0.write_char(' ')?;
            }
            if name != "message" {
                w.0.write_str(name.strip_prefix("r#").unwrap_or(name))?;
                w.0.write_char('=')?;
            }
            f(&mut w)
        })();
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |w| w.write_str(value));
        } else {
            self.field(field, |w| value_of(w, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w.0, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w.0, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| {
            w.0.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |w| formatted(w, format_args!("{}", Chain(value))));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.field(field, |w| write!(w, "{value:?}"));
        } else {
            self.field(field, |w| formatted(w, format_args!("{value:?}")));
        }
    }
}

/// Whether a value can go on the line bare: printable ASCII without a space, a quote, `=`, a
/// brace or a backslash, so that it reads as one value. Anything else is quoted.
fn bare(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'{' | b'}' | b'\\'))
}

/// A field's value, bare when [`bare`], otherwise quoted with Rust's escapes (`\"`, `\\`,
/// `\n`, `\u{…}`): a value a client chose (its `x-fapi-interaction-id`, a path, a
/// description quoting its request) cannot close the span's braces or add a `name=value` of its
/// own to the line, as logfmt readers split it.
fn value_of(w: &mut Escaped<'_, '_>, v: &str) -> fmt::Result {
    if bare(v) {
        w.0.write_str(v)
    } else {
        write!(w, "{v:?}")
    }
}

thread_local! {
    /// A `Display` or `Debug` value's text, made before [`value_of`] looks at it.
    static TEXT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// [`value_of`] for a value that has to be formatted first.
fn formatted(w: &mut Escaped<'_, '_>, args: fmt::Arguments<'_>) -> fmt::Result {
    // A value whose own formatting logs comes back here (the global dispatcher has no guard
    // against that): it gets a buffer of its own.
    TEXT.with(|t| match t.try_borrow_mut() {
        Ok(mut text) => {
            text.clear();
            text.write_fmt(args)?;
            let r = value_of(w, &text);
            if text.capacity() > 4096 {
                *text = String::new();
            }
            r
        }
        Err(_) => {
            // Not `to_string`, which panics when a `Display` fails.
            let mut text = String::new();
            text.write_fmt(args)?;
            value_of(w, &text)
        }
    })
}

/// An error and its sources, `outer: inner: root`.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

/// Writes control characters (a newline, an ANSI escape) as `\u{…}`.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // C0 controls and DEL are single bytes; C1 controls (U+0080–U+009F)
        // start with 0xC2. Only those bytes need a closer look.
        let mut rest = s;
        while let Some(i) = rest
            .bytes()
            .position(|b| b < 0x20 || b == 0x7f || b == 0xc2)
        {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            if c.is_control() {
                write!(self.0, "{}", c.escape_unicode())?;
            } else {
                self.0.write_char(c)?;
            }
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(Line)
            .fmt_fields(Fields)
            .finish();
        tracing::subscriber::with_default(sub, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn time_is_rfc3339_utc_with_microseconds() {
        let mut s = String::new();
        let t = UNIX_EPOCH + Duration::new(1_796_310_245, 1_234_000);
        write_time(&mut s, t).unwrap();
        assert_eq!(s, "2026-12-03T15:04:05.001234Z ");
        // The next second in the same thread is worked out again, not reused.
        s.clear();
        write_time(&mut s, t + Duration::from_secs(1)).unwrap();
        assert_eq!(s, "2026-12-03T15:04:06.001234Z ");
    }

    #[test]
    fn the_line_has_the_default_shape() {
        let out = logged(|| {
            let span = tracing::info_span!("request", interaction_id = %"abc-1", method = %"GET");
            let _g = span.enter();
            tracing::info!(status = 200u16, "response");
        });
        let (time, rest) = out.split_at(28);
        assert!(time.ends_with("Z "), "{out:?}");
        assert_eq!(
            rest,
            " INFO request{interaction_id=abc-1 method=GET}: aspen::logging::tests: response status=200\n"
        );
    }

    #[test]
    fn values_cannot_start_a_line_or_carry_escapes() {
        let out = logged(|| {
            let evil = "x\n2026-12-03T00:00:00.000000Z ERROR forged\u{1b}[31m\u{9b}£";
            tracing::warn!(path = %evil, "refused {}", "a\rb");
        });
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
        assert!(
            out.ends_with(
                " WARN aspen::logging::tests: refused a\\u{d}b path=\"x\\n2026-12-03T00:00:00.000000Z ERROR forged\\u{1b}[31m\\u{9b}£\"\n"
            ),
            "{out:?}"
        );
    }

    /// A client's value cannot close the span or add a field: anything but one token of
    /// printable ASCII is quoted, whichever way the field was recorded.
    #[test]
    fn values_cannot_add_fields_or_close_the_span() {
        let forged = "a}: aspen::edge: response status=500 forged=yes";
        let out = logged(|| {
            let span = tracing::info_span!("request", interaction_id = forged, path = "/token");
            let _g = span.enter();
            tracing::info!(
                description = %"scope \"x\" unknown",
                detail = ?"y",
                tag = %"a=b",
                back = "c\\d",
                empty = "",
                status = 400u16,
                "oauth error"
            );
        });
        assert!(
            out.ends_with(
                " INFO request{interaction_id=\"a}: aspen::edge: response status=500 forged=yes\" \
                 path=/token}: aspen::logging::tests: oauth error description=\"scope \\\"x\\\" unknown\" \
                 detail=\"\\\"y\\\"\" tag=\"a=b\" back=\"c\\\\d\" empty=\"\" status=400\n"
            ),
            "{out:?}"
        );
    }

    #[derive(Debug)]
    struct Outer(io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot write the token")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// A value formatted while the per-thread buffer is in use (its own formatting logged, and
    /// the global dispatcher lets that event in) gets a buffer of its own and is still quoted; a
    /// `Display` that fails there fails that field, not the thread.
    #[test]
    fn a_value_formatted_while_the_buffer_is_in_use_gets_its_own() {
        struct Failing;
        impl fmt::Display for Failing {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        TEXT.with(|t| {
            let _in_use = t.borrow_mut();
            let mut out = String::new();
            let mut w = Writer::new(&mut out);
            formatted(&mut Escaped(&mut w), format_args!("{}", "a b")).unwrap();
            assert!(formatted(&mut Escaped(&mut w), format_args!("{}", Failing)).is_err());
            assert_eq!(out, "\"a b\"");
        });
    }

    #[test]
    fn errors_are_written_with_their_sources() {
        let e = Outer(io::Error::other("disk full"));
        let out = logged(|| {
            tracing::error!(
                error = &e as &(dyn std::error::Error + 'static),
                "commit failed"
            );
        });
        assert!(
            out.ends_with("commit failed error=\"cannot write the token: disk full\"\n"),
            "{out:?}"
        );
    }
}
