//! The I/O of a full read: [`inspect`] reads a location's whole `_metadata` (bounded in
//! bytes), parses it, and asks the store whether every file it references is there, a
//! bounded number at a time and only through the stores and file roots of the webhook's
//! own configuration, in the location's own bucket ([`findings::may_ask`]), never a host
//! or bucket the metadata file names on its own.

use std::time::Instant;

use futures::StreamExt;

use super::findings::{self, Finding, Reference};
use super::header::{self, HEADER_LEN};
use super::metadata::{self, Snapshot};
use super::outcome::Outcome;
use super::store::{ReadError, Stores};
use super::target::{self, TargetRules};
use crate::domain::{Location, LocationRules};

/// Bounds of one full read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FullReadLimits {
    /// Longest `_metadata` read; a longer one is "could not enumerate".
    pub max_metadata_bytes: u64,
    /// Referenced files asked about at once.
    pub concurrency: usize,
    /// Most distinct referenced files asked about; the rest are "could not check".
    pub max_files: usize,
}

impl Default for FullReadLimits {
    fn default() -> Self {
        Self {
            max_metadata_bytes: 64 << 20,
            concurrency: 16,
            max_files: 100_000,
        }
    }
}

/// What a full read found at a location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// What the header says (as a header-only check would).
    pub outcome: Outcome,
    /// The whole file, when it could be read and enumerated.
    pub snapshot: Option<Snapshot>,
    /// Distinct referenced files, and how many of them were found.
    pub files: usize,
    /// Referenced files that are there.
    pub present: usize,
    /// What is wrong, about the location alone (not yet compared with a Savepoint).
    pub findings: Vec<Finding>,
    /// How long reading `_metadata` took.
    pub read_time: std::time::Duration,
    /// How long the whole inspection took.
    pub total_time: std::time::Duration,
}

impl Inspection {
    /// An inspection that read nothing past the header's `outcome`, after `elapsed`.
    pub fn unread(outcome: Outcome, elapsed: std::time::Duration) -> Self {
        Self {
            outcome,
            snapshot: None,
            files: 0,
            present: 0,
            findings: Vec::new(),
            read_time: elapsed,
            total_time: elapsed,
        }
    }
}

/// Reads `location` fully by `deadline`.
pub async fn inspect(
    stores: &Stores,
    rules: &TargetRules,
    location_rules: &LocationRules,
    location: &Location,
    limits: FullReadLimits,
    deadline: tokio::time::Instant,
) -> Inspection {
    let started = Instant::now();
    let mut inspection =
        Inspection::unread(Outcome::could_not_check("not read"), Default::default());
    let finish = |mut inspection: Inspection| {
        inspection.total_time = started.elapsed();
        inspection
    };
    let target = match target::target(location, rules) {
        Ok(target) => target,
        Err(why) => {
            inspection.outcome = Outcome::could_not_check(why);
            return finish(inspection);
        }
    };
    let directory = target::directory_name(location);
    let bytes = match stores
        .read_all(&target, limits.max_metadata_bytes, deadline)
        .await
    {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge { limit }) => {
            inspection.outcome = match stores.read_header(&target, deadline).await {
                Ok(head) => Outcome::from_header(header::parse(&head), directory),
                Err(err) => Outcome::from_read_error(err),
            };
            inspection.findings.push(Finding::CouldNotEnumerate {
                why: format!("it is larger than the {limit} bytes a full read may take"),
            });
            return finish(inspection);
        }
        Err(err) => {
            inspection.outcome = Outcome::from_read_error(err);
            return finish(inspection);
        }
    };
    inspection.read_time = started.elapsed();
    inspection.outcome = Outcome::from_header(
        header::parse(&bytes[..bytes.len().min(HEADER_LEN)]),
        directory,
    );
    if !inspection.outcome.is_verified() {
        return finish(inspection);
    }
    let snapshot = match metadata::parse(&bytes) {
        Ok(snapshot) => snapshot,
        Err(err) if err.is_truncated() => {
            inspection.findings.push(Finding::Damaged {
                why: err.to_string(),
            });
            return finish(inspection);
        }
        Err(err) => {
            inspection.findings.push(Finding::CouldNotEnumerate {
                why: err.to_string(),
            });
            return finish(inspection);
        }
    };
    drop(bytes);
    let references = findings::references(&snapshot, location, location_rules);
    inspection.files = references.len();
    let (missing, unchecked) =
        check_files(stores, rules, location, &references, limits, deadline).await;
    inspection.present = references.len() - missing.len() - unchecked.len();
    inspection
        .findings
        .extend(findings::existence_findings(&missing, &unchecked));
    inspection
        .findings
        .extend(findings::placement_findings(&references));
    inspection.snapshot = Some(snapshot);
    finish(inspection)
}

/// Asks whether each referenced file is there: the missing ones, and those that could
/// not be asked about, with why. Past `deadline` the files not yet answered are unchecked.
async fn check_files(
    stores: &Stores,
    rules: &TargetRules,
    location: &Location,
    references: &[Reference],
    limits: FullReadLimits,
    deadline: tokio::time::Instant,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut missing = Vec::new();
    let mut unchecked = Vec::new();
    let mut asked = Vec::new();
    for (i, reference) in references.iter().enumerate() {
        let target = reference
            .file
            .as_ref()
            .map_err(|why| why.clone())
            .and_then(|file| {
                findings::may_ask(file, location)?;
                target::file_target(file, rules)
            });
        match target {
            Ok(_) if i >= limits.max_files => unchecked.push((
                reference.written.clone(),
                format!("past the {} files a full read asks about", limits.max_files),
            )),
            Ok(target) => asked.push((reference.written.clone(), target)),
            Err(why) => unchecked.push((reference.written.clone(), why)),
        }
    }
    let mut answered = vec![false; asked.len()];
    let asked_ref = &asked;
    let mut answers = futures::stream::iter(0..asked.len())
        .map(move |i| async move { (i, stores.size(&asked_ref[i].1, deadline).await) })
        .buffer_unordered(limits.concurrency.max(1));
    loop {
        let next = tokio::time::timeout_at(deadline, answers.next()).await;
        let Ok(Some((i, answer))) = next else {
            break;
        };
        answered[i] = true;
        let written = &asked[i].0;
        match answer {
            Ok(_) => {}
            Err(ReadError::Missing | ReadError::NotRegular(_)) => missing.push(written.clone()),
            Err(ReadError::Failed(why)) => unchecked.push((written.clone(), why)),
            Err(ReadError::TooLarge { .. }) => {}
        }
    }
    for (i, (written, _)) in asked.iter().enumerate() {
        if !answered[i] {
            unchecked.push((written.clone(), "timed out".to_string()));
        }
    }
    (missing, unchecked)
}
