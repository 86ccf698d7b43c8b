//! `inspect`: read snapshots' whole `_metadata` and print what they say and what a restore
//! from them would hit.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::{InspectArgs, InspectOutput, print_out};
use crate::domain::Location;
use crate::domain::flink::releases_writing;
use crate::verify::metadata::Snapshot;
use crate::verify::{Inspection, Severity};

/// Runs `inspect`; `Ok(false)` when a location is not a readable snapshot or has an error.
pub async fn run(args: &InspectArgs) -> anyhow::Result<bool> {
    let rules = args.policy.location_rules();
    let verifier = args
        .verify
        .verifier()?
        .context("inspect needs --verify-location warn or deny")?;
    let mut ok = true;
    let mut text = String::new();
    let mut json = Vec::new();
    for raw in &args.locations {
        let location = Location::parse(raw, &rules).with_context(|| format!("location {raw:?}"))?;
        let inspection = verifier.inspect(&location, &rules).await;
        ok &= inspection.outcome.is_verified()
            && inspection
                .findings
                .iter()
                .all(|f| f.severity() != Severity::Error);
        let shown = location.to_string();
        match args.output {
            InspectOutput::Text => text.push_str(&describe(&shown, &inspection, args.files)),
            InspectOutput::Json => json.push(to_json(&shown, &inspection)),
        }
    }
    if args.output == InspectOutput::Json {
        text = serde_json::to_string_pretty(&json)? + "\n";
    }
    print_out(&text)?;
    Ok(ok)
}

/// The text report of one location.
pub fn describe(location: &str, inspection: &Inspection, list_files: bool) -> String {
    let mut out = format!("{location}\n");
    let line = |out: &mut String, key: &str, value: String| {
        let _ = writeln!(out, "  {key:<12} {value}");
    };
    line(&mut out, "header:", inspection.outcome.describe(location));
    if let Some(snapshot) = &inspection.snapshot {
        let writers = releases_writing(snapshot.format)
            .map(|r| format!(" (written by Flink {r})"))
            .unwrap_or_default();
        line(&mut out, "format:", format!("{}{writers}", snapshot.format));
        let kind = snapshot
            .properties
            .as_ref()
            .map(|p| p.kind.to_string())
            .unwrap_or_else(|| "not recorded (format 3)".to_string());
        line(
            &mut out,
            "snapshot:",
            format!(
                "{kind}, checkpoint {}{}",
                snapshot.checkpoint_id,
                if snapshot.is_incremental() {
                    ", incremental"
                } else {
                    ""
                }
            ),
        );
        line(&mut out, "operators:", snapshot.operators.len().to_string());
        for op in &snapshot.operators {
            let mut about = format!(
                "parallelism {}/{}, {} subtask state{}",
                op.parallelism,
                op.max_parallelism,
                op.subtasks,
                if op.subtasks == 1 { "" } else { "s" }
            );
            if let Some(name) = &op.name {
                about = format!("{name:?}, {about}");
            }
            if let Some(uid) = &op.uid {
                about.push_str(&format!(", uid {uid:?}"));
            }
            if op.fully_finished {
                about.push_str(", finished");
            }
            let _ = writeln!(out, "    {} {about}", op.id);
        }
        line(&mut out, "state files:", file_summary(snapshot, inspection));
        line(
            &mut out,
            "inline:",
            format!(
                "{} handle{}, {}",
                snapshot.inline.handles,
                if snapshot.inline.handles == 1 {
                    ""
                } else {
                    "s"
                },
                bytes(snapshot.inline.bytes)
            ),
        );
        if list_files {
            for file in &snapshot.files {
                let _ = writeln!(
                    out,
                    "    {:<12} {:>10}  {}",
                    file.role.as_str(),
                    file.size,
                    file.path
                );
            }
        }
    }
    line(
        &mut out,
        "took:",
        format!(
            "{:.1} ms to read _metadata, {:.1} ms in all",
            inspection.read_time.as_secs_f64() * 1000.0,
            inspection.total_time.as_secs_f64() * 1000.0
        ),
    );
    if inspection.findings.is_empty() {
        line(&mut out, "findings:", "none".to_string());
    } else {
        line(&mut out, "findings:", String::new());
        for finding in &inspection.findings {
            let severity = match finding.severity() {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(out, "    {severity}: {}", finding.describe(location));
        }
    }
    out
}

fn file_summary(snapshot: &Snapshot, inspection: &Inspection) -> String {
    let mut roles: BTreeMap<&str, usize> = BTreeMap::new();
    for file in &snapshot.files {
        *roles.entry(file.role.as_str()).or_default() += 1;
    }
    let roles = roles
        .iter()
        .map(|(role, n)| format!("{n} {role}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} distinct of {} referenced ({roles}), {}; {} of {} present",
        inspection.files,
        snapshot.files.len(),
        bytes(snapshot.file_bytes()),
        inspection.present,
        inspection.files
    )
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The JSON report of one location.
pub fn to_json(location: &str, inspection: &Inspection) -> Value {
    let snapshot = inspection.snapshot.as_ref().map(|s| {
        json!({
            "format": s.format,
            "writtenBy": releases_writing(s.format),
            "checkpointId": s.checkpoint_id,
            "kind": s.properties.as_ref().map(|p| p.kind.to_string()),
            "incremental": s.is_incremental(),
            "operators": s.operators.iter().map(|o| json!({
                "id": o.id,
                "name": o.name,
                "uid": o.uid,
                "parallelism": o.parallelism,
                "maxParallelism": o.max_parallelism,
                "subtasks": o.subtasks,
            })).collect::<Vec<_>>(),
            "files": s.files.iter().map(|f| json!({
                "path": f.path.to_string(),
                "relative": matches!(f.path, crate::verify::metadata::FilePath::Relative(_)),
                "size": f.size,
                "role": f.role.as_str(),
                "operator": f.operator,
            })).collect::<Vec<_>>(),
            "fileBytes": s.file_bytes(),
            "inlineHandles": s.inline.handles,
            "inlineBytes": s.inline.bytes,
            "handles": s.handle_counts,
        })
    });
    json!({
        "location": location,
        "header": inspection.outcome.label(),
        "headerMessage": inspection.outcome.describe(location),
        "snapshot": snapshot,
        "distinctFiles": inspection.files,
        "presentFiles": inspection.present,
        "readMillis": inspection.read_time.as_secs_f64() * 1000.0,
        "totalMillis": inspection.total_time.as_secs_f64() * 1000.0,
        "findings": inspection.findings.iter().map(|f| json!({
            "kind": f.label(),
            "severity": match f.severity() { Severity::Error => "error", Severity::Warning => "warning" },
            "message": f.describe(location),
        })).collect::<Vec<_>>(),
    })
}
