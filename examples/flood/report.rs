//! The flood harness: the table.

use super::*;

/// One flood's row, and its notes.
pub(crate) struct Row {
    pub(crate) kind: Which,
    pub(crate) tally: Tally,
    pub(crate) start_mib: f64,
    pub(crate) peak_mib: f64,
    pub(crate) end_mib: f64,
    pub(crate) fresh: Fresh,
    /// How long the flood ran before it stopped at the RSS limit, if it did.
    pub(crate) limited_after: Option<Duration>,
    /// Set when the server was not running at the end.
    pub(crate) exited: Option<String>,
}

fn size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.2} MiB", bytes as f64 / 1024.0 / 1024.0)
    }
}

fn answers(tally: &Tally) -> String {
    if tally.answers.is_empty() {
        return "-".into();
    }
    tally
        .answers
        .iter()
        .map(|(label, n)| format!("{label}:{}", grouped(*n)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 8]| {
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:<28} {:>9} {:>9} {:>9} {:>12} {:>12}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7]
        );
    };
    line(
        &mut out,
        [
            "kind",
            "sent",
            "answers",
            "start MiB",
            "peak MiB",
            "end MiB",
            "largest ans",
            "fresh client",
        ],
    );
    for row in rows {
        line(
            &mut out,
            [
                row.kind.name(),
                &grouped(row.tally.sent),
                &answers(&row.tally),
                &format!("{:.1}", row.start_mib),
                &format!("{:.1}", row.peak_mib),
                &format!("{:.1}", row.end_mib),
                &row.tally.largest_answer.map_or("-".into(), size),
                &row.fresh.cell(),
            ],
        );
    }
    for row in rows {
        let mut notes = row.tally.notes.clone();
        if let Some(after) = row.limited_after {
            notes.push(format!(
                "stopped at the RSS limit after {:.1} s",
                after.as_secs_f64()
            ));
        }
        if let Some(err) = &row.tally.first_error {
            notes.push(format!("first error: {err}"));
        }
        if !row.fresh.ok {
            notes.push(format!("fresh client: {}", row.fresh.detail));
        }
        if let Some(exited) = &row.exited {
            notes.push(format!("server not running at the end: {exited}"));
        }
        for note in notes {
            let _ = writeln!(out, "  {}: {note}", row.kind.name());
        }
    }
    out
}

pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown memory".into(),
            |kib| format!("{} MiB", kib / 1024),
        );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores, {memory}, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}
