//! What a full read of `_metadata` finds wrong with a snapshot for its Savepoint, without
//! I/O: [`references`] resolves the files a snapshot names against its location;
//! [`declared_findings`] compares what the file says with what the Savepoint declares;
//! [`Finding`] says what each means for a restore and what a mode makes of it.

use std::fmt;

use super::metadata::{FilePath, Role, Snapshot, SnapshotKind};
use super::outcome::{Mode, Verdict};
use crate::domain::{FormatType, Location, LocationRules, Origin, SnapshotType};

/// Paths quoted in one finding's message; the rest are counted.
pub const QUOTED_PATHS: usize = 5;

/// What the Savepoint says the snapshot is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declared {
    /// `spec.savepointFormatType`.
    pub format: Option<FormatType>,
    /// `spec.origin`.
    pub origin: Option<Origin>,
    /// `spec.type`.
    pub snapshot_type: Option<SnapshotType>,
}

/// One file a snapshot references, resolved against its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The file as a location (normalized), or why it is not one.
    pub file: Result<Location, String>,
    /// The file as written in `_metadata` (relative ones joined to the location).
    pub written: String,
    /// Whether it lies inside the snapshot's directory.
    pub inside: bool,
    /// What it holds.
    pub role: Role,
}

/// The distinct files `snapshot` references, each once, resolved against `location`
/// (relative paths are relative to the snapshot's directory, as Flink resolves them).
pub fn references(
    snapshot: &Snapshot,
    location: &Location,
    rules: &LocationRules,
) -> Vec<Reference> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for file in &snapshot.files {
        if !seen.insert(&file.path) {
            continue;
        }
        let written = match &file.path {
            FilePath::Absolute(path) => path.clone(),
            FilePath::Relative(path) => format!("{location}/{path}"),
        };
        let parsed = Location::parse(&written, rules).map_err(|e| e.to_string());
        let inside = parsed.as_ref().is_ok_and(|f| is_inside(f, location));
        out.push(Reference {
            file: parsed,
            written,
            inside,
            role: file.role,
        });
    }
    out
}

/// Whether the webhook may ask about `file`, a state file that the snapshot at `location`
/// names: a local file (then only under the configured roots), or an object in the
/// location's own bucket or container. Any other bucket or host is one the metadata file
/// names on its own, and is never asked about.
pub fn may_ask(file: &Location, location: &Location) -> Result<(), String> {
    if file.scheme() == "file" || file.authority() == location.authority() {
        return Ok(());
    }
    Err(format!(
        "it names {:?}, not the location's own {:?}; the webhook reads no bucket or host that only a metadata file names",
        file.authority(),
        location.authority()
    ))
}

/// Whether `file` lies under the directory `location`.
fn is_inside(file: &Location, location: &Location) -> bool {
    file.scheme() == location.scheme()
        && file.authority() == location.authority()
        && file
            .path()
            .strip_prefix(location.path())
            .is_some_and(|rest| rest.starts_with('/'))
}

/// How much a finding matters for a restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The restore can succeed, but something deserves attention, or was not checked.
    Warning,
    /// The restore fails, or restores something other than what the Savepoint says.
    Error,
}

/// Something a full read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The file ends early: no Flink can restore it.
    Damaged {
        /// What the reader found.
        why: String,
    },
    /// The file could not be enumerated: a format or handle type this reader does not
    /// know, or a file past the read's limits. Nothing is claimed about it.
    CouldNotEnumerate {
        /// Why.
        why: String,
    },
    /// Referenced state files are not there.
    MissingFiles {
        /// How many.
        count: usize,
        /// The first few.
        paths: Vec<String>,
    },
    /// Referenced files lie outside the snapshot's directory: deleting those other
    /// directories breaks this snapshot.
    OutsideLocation {
        /// How many.
        count: usize,
        /// The first few.
        paths: Vec<String>,
    },
    /// Referenced files that could not be checked.
    Unchecked {
        /// How many.
        count: usize,
        /// The first one and why.
        first: String,
    },
    /// `spec.savepointFormatType` is not the snapshot's format.
    FormatMismatch {
        /// What the Savepoint says.
        declared: FormatType,
        /// What the file says.
        found: SnapshotKind,
    },
    /// `spec.origin` says savepoint where the file is a checkpoint, or the reverse.
    OriginMismatch {
        /// What the Savepoint says.
        declared: Origin,
        /// What the file says.
        found: SnapshotKind,
    },
    /// `spec.type` is not what the file holds.
    TypeMismatch {
        /// What the Savepoint says.
        declared: SnapshotType,
        /// Whether the file is an incremental checkpoint.
        incremental: bool,
    },
}

impl Finding {
    /// How much it matters.
    pub fn severity(&self) -> Severity {
        match self {
            Finding::Damaged { .. }
            | Finding::MissingFiles { .. }
            | Finding::FormatMismatch { .. }
            | Finding::OriginMismatch { .. } => Severity::Error,
            Finding::CouldNotEnumerate { .. }
            | Finding::OutsideLocation { .. }
            | Finding::Unchecked { .. }
            | Finding::TypeMismatch { .. } => Severity::Warning,
        }
    }

    /// A short name, for metrics, tables and JSON.
    pub fn label(&self) -> &'static str {
        match self {
            Finding::Damaged { .. } => "damaged",
            Finding::CouldNotEnumerate { .. } => "could_not_enumerate",
            Finding::MissingFiles { .. } => "missing_files",
            Finding::OutsideLocation { .. } => "outside_location",
            Finding::Unchecked { .. } => "unchecked_files",
            Finding::FormatMismatch { .. } => "format_mismatch",
            Finding::OriginMismatch { .. } => "origin_mismatch",
            Finding::TypeMismatch { .. } => "type_mismatch",
        }
    }

    /// The message for the person who created the Savepoint at `location`.
    pub fn describe(&self, location: &str) -> String {
        self.to_string().replace("{location}", location)
    }

    /// The message as an admission answer gives it: led by the field it is about (the
    /// mismatches name their own field).
    pub fn answer(&self, location: &str) -> String {
        match self {
            Finding::FormatMismatch { .. }
            | Finding::OriginMismatch { .. }
            | Finding::TypeMismatch { .. } => self.describe(location),
            _ => format!("spec.savepointLocation: {}", self.describe(location)),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Damaged { why } => write!(
                f,
                "{{location}}/_metadata is damaged ({why}); Flink cannot restore from it"
            ),
            Finding::CouldNotEnumerate { why } => write!(
                f,
                "could not enumerate the state files of {{location}}/_metadata: {why}"
            ),
            Finding::MissingFiles { count, paths } => write!(
                f,
                "{{location}}: {count} state file{} the snapshot references {} missing ({}); a restore from it would fail",
                plural(*count),
                if *count == 1 { "is" } else { "are" },
                quote(paths, *count)
            ),
            Finding::OutsideLocation { count, paths } => write!(
                f,
                "{{location}}: {count} state file{} lie{} outside the snapshot's directory ({}); the snapshot is not relocatable, and deleting those files breaks it",
                plural(*count),
                if *count == 1 { "s" } else { "" },
                quote(paths, *count)
            ),
            Finding::Unchecked { count, first } => write!(
                f,
                "{{location}}: {count} referenced state file{} could not be checked ({first})",
                plural(*count)
            ),
            Finding::FormatMismatch { declared, found } => write!(
                f,
                "spec.savepointFormatType is {}, but {{location}}/_metadata is {found}; accepted: {}",
                declared.as_str(),
                accepted_format(found).unwrap_or("no savepointFormatType")
            ),
            Finding::OriginMismatch { declared, found } => write!(
                f,
                "spec.origin is {}, but {{location}}/_metadata is {found}; accepted: {}",
                declared.as_str(),
                accepted_origins(found)
            ),
            Finding::TypeMismatch {
                declared,
                incremental,
            } => write!(
                f,
                "spec.type is {}, but {{location}}/_metadata holds {}",
                declared.as_str(),
                if *incremental {
                    "an incremental checkpoint"
                } else {
                    "a full snapshot"
                }
            ),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn quote(paths: &[String], count: usize) -> String {
    let mut text = paths.join(", ");
    if count > paths.len() {
        text.push_str(&format!(" and {} more", count - paths.len()));
    }
    text
}

fn accepted_format(found: &SnapshotKind) -> Option<&'static str> {
    match found {
        SnapshotKind::Savepoint {
            format: Some(format),
            ..
        } => Some(format.as_str()),
        SnapshotKind::Savepoint { format: None, .. } => None,
        SnapshotKind::Checkpoint { .. } => Some("NATIVE"),
    }
}

fn accepted_origins(found: &SnapshotKind) -> &'static str {
    match found {
        SnapshotKind::Savepoint { .. } => "USER_REQUEST, SUSPEND or COPIED",
        SnapshotKind::Checkpoint { .. } => "RETAINED_CHECKPOINT or COPIED",
    }
}

/// What a full read keeps of a snapshot to compare with any Savepoint's declarations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nature {
    /// Savepoint or checkpoint, when the format records it (4 and later).
    pub kind: Option<SnapshotKind>,
    /// Whether it is an incremental checkpoint.
    pub incremental: bool,
}

impl Nature {
    /// The nature of `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Self {
        Self {
            kind: snapshot.properties.as_ref().map(|p| p.kind.clone()),
            incremental: snapshot.is_incremental(),
        }
    }
}

/// What the file says against what the Savepoint declares: format, origin and type.
pub fn declared_findings(nature: &Nature, declared: &Declared) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(found) = &nature.kind {
        if let Some(format) = declared.format {
            let matches = match found {
                SnapshotKind::Savepoint { format: found, .. } => {
                    found.is_none_or(|found| found == format)
                }
                SnapshotKind::Checkpoint { .. } => format == FormatType::Native,
            };
            if !matches {
                out.push(Finding::FormatMismatch {
                    declared: format,
                    found: found.clone(),
                });
            }
        }
        if let Some(origin) = declared.origin {
            let matches = matches!(
                (origin, found),
                (Origin::Copied, _)
                    | (
                        Origin::UserRequest | Origin::Suspend,
                        SnapshotKind::Savepoint { .. }
                    )
                    | (Origin::RetainedCheckpoint, SnapshotKind::Checkpoint { .. })
            );
            if !matches {
                out.push(Finding::OriginMismatch {
                    declared: origin,
                    found: found.clone(),
                });
            }
        }
    }
    let incremental = nature.incremental;
    match declared.snapshot_type {
        Some(SnapshotType::Full) if incremental => out.push(Finding::TypeMismatch {
            declared: SnapshotType::Full,
            incremental,
        }),
        Some(SnapshotType::Incremental) if !incremental => out.push(Finding::TypeMismatch {
            declared: SnapshotType::Incremental,
            incremental,
        }),
        _ => {}
    }
    out
}

/// The findings about where the referenced files lie: outside the snapshot's directory,
/// or not checkable.
pub fn placement_findings(references: &[Reference]) -> Vec<Finding> {
    let mut out = Vec::new();
    let outside: Vec<_> = references.iter().filter(|r| !r.inside).collect();
    if !outside.is_empty() {
        out.push(Finding::OutsideLocation {
            count: outside.len(),
            paths: outside
                .iter()
                .take(QUOTED_PATHS)
                .map(|r| r.written.clone())
                .collect(),
        });
    }
    out
}

/// Groups missing and unchecked files into findings.
pub fn existence_findings(missing: &[String], unchecked: &[(String, String)]) -> Vec<Finding> {
    let mut out = Vec::new();
    if !missing.is_empty() {
        out.push(Finding::MissingFiles {
            count: missing.len(),
            paths: missing.iter().take(QUOTED_PATHS).cloned().collect(),
        });
    }
    if let Some((path, why)) = unchecked.first() {
        out.push(Finding::Unchecked {
            count: unchecked.len(),
            first: format!("{path}: {why}"),
        });
    }
    out
}

/// What `findings` do to a decision under `mode`: in `deny` an error refuses; anything
/// else is a warning. One verdict: the first error, or every message as one warning.
pub fn findings_verdict(mode: Mode, findings: &[Finding], location: &str) -> Vec<Verdict> {
    if mode == Mode::Off {
        return Vec::new();
    }
    if mode == Mode::Deny
        && let Some(error) = findings.iter().find(|f| f.severity() == Severity::Error)
    {
        return vec![Verdict::Deny(error.answer(location))];
    }
    findings
        .iter()
        .map(|f| Verdict::Warn(f.answer(location)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::metadata::{Properties, StateFile};

    fn rules() -> LocationRules {
        LocationRules::default()
    }

    fn snapshot(kind: SnapshotKind, files: &[FilePath]) -> Snapshot {
        Snapshot {
            format: 6,
            checkpoint_id: 7,
            properties: Some(Properties {
                kind,
                unclaimed: false,
            }),
            files: files
                .iter()
                .map(|p| StateFile {
                    path: p.clone(),
                    size: 10,
                    role: Role::Keyed,
                    operator: 0,
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    fn native_savepoint() -> SnapshotKind {
        SnapshotKind::Savepoint {
            format: Some(FormatType::Native),
            action: None,
        }
    }

    #[test]
    fn relative_files_are_inside_and_absolute_ones_may_not_be() {
        let location = Location::parse("s3://bucket/savepoints/sp-1", &rules()).unwrap();
        let s = snapshot(
            native_savepoint(),
            &[
                FilePath::Relative("a".into()),
                FilePath::Relative("a".into()),
                FilePath::Absolute("s3://bucket/savepoints/sp-1/b".into()),
                FilePath::Absolute("s3://bucket/savepoints/sp-10/c".into()),
                FilePath::Absolute("s3://other/savepoints/sp-1/d".into()),
            ],
        );
        let refs = references(&s, &location, &rules());
        let inside: Vec<_> = refs
            .iter()
            .map(|r| (r.written.as_str(), r.inside))
            .collect();
        assert_eq!(
            inside,
            vec![
                ("s3://bucket/savepoints/sp-1/a", true),
                ("s3://bucket/savepoints/sp-1/b", true),
                ("s3://bucket/savepoints/sp-10/c", false),
                ("s3://other/savepoints/sp-1/d", false),
            ]
        );
        let placement = placement_findings(&refs);
        assert_eq!(placement.len(), 1);
        assert!(
            placement[0]
                .describe("L")
                .contains("2 state files lie outside")
        );
    }

    #[test]
    fn only_the_locations_own_bucket_is_asked_about() {
        let location = Location::parse("s3://bucket/savepoints/sp-1", &rules()).unwrap();
        let same = Location::parse("s3a://bucket/elsewhere/a", &rules()).unwrap();
        let other = Location::parse("s3://attacker-bucket/a", &rules()).unwrap();
        let local = Location::parse("file:/data/flink/a", &rules()).unwrap();
        assert!(may_ask(&same, &location).is_ok());
        assert!(may_ask(&local, &location).is_ok());
        let why = may_ask(&other, &location).unwrap_err();
        assert!(why.contains("\"attacker-bucket\""), "{why}");
    }

    #[test]
    fn declared_format_and_origin_are_checked_against_the_file() {
        let checkpoint = snapshot(SnapshotKind::Checkpoint { full: false }, &[]);
        let declared = Declared {
            format: Some(FormatType::Canonical),
            origin: Some(Origin::UserRequest),
            snapshot_type: None,
        };
        let found = declared_findings(&Nature::of(&checkpoint), &declared);
        let labels: Vec<_> = found.iter().map(Finding::label).collect();
        assert_eq!(labels, ["format_mismatch", "origin_mismatch"]);
        assert_eq!(
            found[1].describe("s3://b/chk-7"),
            "spec.origin is USER_REQUEST, but s3://b/chk-7/_metadata is a checkpoint; accepted: RETAINED_CHECKPOINT or COPIED"
        );

        let savepoint = snapshot(native_savepoint(), &[]);
        let declared = Declared {
            format: Some(FormatType::Canonical),
            origin: Some(Origin::RetainedCheckpoint),
            snapshot_type: None,
        };
        let found = declared_findings(&Nature::of(&savepoint), &declared);
        assert_eq!(
            found[0].describe("L"),
            "spec.savepointFormatType is CANONICAL, but L/_metadata is a NATIVE savepoint; accepted: NATIVE"
        );
        assert_eq!(found[1].label(), "origin_mismatch");

        let copied = Declared {
            origin: Some(Origin::Copied),
            format: Some(FormatType::Native),
            snapshot_type: None,
        };
        assert!(declared_findings(&Nature::of(&savepoint), &copied).is_empty());
        assert!(declared_findings(&Nature::of(&checkpoint), &copied).is_empty());
    }

    #[test]
    fn deny_refuses_errors_and_warns_of_the_rest() {
        let findings = [
            Finding::OutsideLocation {
                count: 1,
                paths: vec!["x".into()],
            },
            Finding::MissingFiles {
                count: 7,
                paths: (0..5).map(|i| format!("f{i}")).collect(),
            },
        ];
        let deny = findings_verdict(Mode::Deny, &findings, "L");
        assert_eq!(
            deny,
            vec![Verdict::Deny(
                "spec.savepointLocation: L: 7 state files the snapshot references are missing (f0, f1, f2, f3, f4 and 2 more); a restore from it would fail".into()
            )]
        );
        assert_eq!(findings_verdict(Mode::Warn, &findings, "L").len(), 2);
        assert!(findings_verdict(Mode::Off, &findings, "L").is_empty());
        assert_eq!(
            findings_verdict(Mode::Deny, &findings[..1], "L"),
            vec![Verdict::Warn("spec.savepointLocation: L: 1 state file lies outside the snapshot's directory (x); the snapshot is not relocatable, and deleting those files breaks it".into())]
        );
    }
}
