//! Process logs: [`init`]. In text, every line a log event writes passes through
//! [`PrintableWriter`], so no field (a name, a user, an error from a store) can forge a
//! log line or a terminal escape: control characters are written as escapes. In JSON,
//! the encoder escapes them.

use std::io::{self, Write};

use clap::ValueEnum;

use crate::text::printable;

/// How log events are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Logs to stderr in `format` at the level `RUST_LOG` selects (default `info`), one
/// line per event.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_writer(|| PrintableWriter(io::stderr())).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_writer(io::stderr)
            .init(),
    }
}

/// Writes each event (one `write` of a whole line) with its control characters escaped,
/// except the newline that ends it.
#[derive(Debug)]
pub struct PrintableWriter<W>(pub W);

impl<W: Write> Write for PrintableWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        let text = String::from_utf8_lossy(body);
        let mut line = printable(&text).into_owned().into_bytes();
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::PrintableWriter;

    #[test]
    fn a_field_cannot_start_a_new_line() {
        let mut out = PrintableWriter(Vec::new());
        out.write_all(b"INFO denied name=a\nFORGED line\x1b[2J\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "INFO denied name=a\\nFORGED line\\u{1b}[2J\n"
        );
    }
}
