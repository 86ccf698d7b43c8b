//! Process logs: [`init`]. Every line a log event writes passes through
//! [`PrintableWriter`], so no field (a name, a user, an error from a store) can forge a
//! log line or a terminal escape: control characters are written as escapes.

use std::io::{self, Write};

use crate::text::printable;

/// Logs to stderr at the level `RUST_LOG` selects (default `info`), one line per event.
pub fn init() {
    tracing_subscriber::fmt()
        .with_writer(|| PrintableWriter(io::stderr()))
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
