//! Location verification at admission: does a new Savepoint's location hold a Flink
//! savepoint? The webhook reads what Flink itself reads, the first 16 bytes of
//! `LOCATION/_metadata` (magic number, format version, checkpoint id).
//!
//! - [`header`] parses those bytes and [`outcome`] maps the result to a decision under a
//!   [`Mode`]; [`target`] maps a location to the store and key to read. All three are pure.
//! - [`store`] does the I/O through `object_store`, with clients built from the webhook's
//!   own flags and environment (never from the manifest); [`files`] reads `file` locations
//!   on bounded threads of their own, so a read that never returns holds neither other
//!   checks nor shutdown.
//! - [`Verifier`] bounds each check by a budget, caches outcomes per normalized location
//!   (verified for long, anything else briefly) and coalesces concurrent checks of one
//!   location into one read.

pub mod args;
pub mod files;
pub mod findings;
pub mod header;
pub mod inspect;
pub mod metadata;
pub mod metrics;
pub mod outcome;
pub mod store;
pub mod target;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::admission::decode::Request;
use crate::admission::fields::spec_str;
use crate::admission::{Decision, is_savepoint};
use crate::domain::{Location, LocationRules};
use metrics::{LocationCheckLabels, LocationCheckMetrics};

pub use args::VerifyArgs;
pub use findings::{Declared, Finding, Nature, Severity};
pub use inspect::{FullReadLimits, Inspection};
pub use outcome::{
    Mode, Outcome, RestoringFlink, Verdict, apply, incompatibility, verdict, verdict_for,
};
pub use store::{S3Addressing, StoreSettings};
pub use target::{Target, TargetRules};

/// Longest margin kept between the end of a check and the API server's deadline.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(1);
/// Most cached outcomes; expired ones are dropped first when it is reached.
const MAX_CACHED: usize = 10_000;

/// Settings of location verification.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// What outcomes do to decisions.
    pub mode: Mode,
    /// Longest time one check may take.
    pub timeout: Duration,
    /// How long a verified outcome is reused.
    pub verified_ttl: Duration,
    /// How long any other outcome is reused.
    pub failure_ttl: Duration,
    /// Directories `file` locations may be read under.
    pub file_roots: Vec<PathBuf>,
    /// Object store settings.
    pub stores: StoreSettings,
    /// How much of `_metadata` a check reads.
    pub depth: Depth,
    /// Bounds of a full read.
    pub full: FullReadLimits,
}

/// How much of `_metadata` a check reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Depth {
    /// The 16-byte header: a Flink snapshot is there, of a format and checkpoint id.
    #[default]
    Header,
    /// The whole file, and whether every state file it references is there.
    Full,
}

/// What a full read keeps for later checks of the same location: what the snapshot is,
/// and what is wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FullRead {
    /// Savepoint or checkpoint, incremental or not.
    pub nature: Nature,
    /// Findings about the location alone.
    pub findings: Vec<Finding>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Warn,
            timeout: Duration::from_secs(2),
            verified_ttl: Duration::from_secs(600),
            failure_ttl: Duration::from_secs(10),
            file_roots: Vec::new(),
            stores: StoreSettings::default(),
            depth: Depth::Header,
            full: FullReadLimits::default(),
        }
    }
}

/// Why verification cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file root cannot be resolved.
    #[error("--verify-file-root {path}: {source}")]
    FileRoot {
        /// The root as given.
        path: PathBuf,
        /// Why it cannot be resolved.
        source: std::io::Error,
    },
    /// A file root is not a directory.
    #[error("--verify-file-root {0}: not a directory")]
    NotADirectory(PathBuf),
}

/// How a check got its outcome; the `source` label of the check metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A cached outcome.
    Cache,
    /// This check read the store.
    Read,
    /// This check waited for a read another check had started.
    Coalesced,
}

impl Source {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Read => "read",
            Source::Coalesced => "coalesced",
        }
    }
}

/// The outcome of one check, and how it was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// What was found.
    pub outcome: Outcome,
    /// Where the answer came from.
    pub source: Source,
    /// What a full read found, when the check read fully.
    pub full: Option<Arc<FullRead>>,
    /// What the Savepoint declares, to compare with a full read.
    pub declared: Declared,
}

/// What one read of a location found.
#[derive(Clone, Debug)]
struct Found {
    outcome: Outcome,
    full: Option<Arc<FullRead>>,
}

impl Found {
    fn settled(&self) -> bool {
        self.outcome.is_verified()
            && self
                .full
                .as_ref()
                .is_none_or(|full| full.findings.is_empty())
    }
}

type SharedRead = Shared<BoxFuture<'static, Found>>;

enum Entry {
    Done { found: Found, until: Instant },
    Pending(SharedRead),
}

struct Inner {
    config: VerifyConfig,
    rules: TargetRules,
    stores: store::Stores,
    cache: Mutex<HashMap<String, Entry>>,
    metrics: OnceLock<LocationCheckMetrics>,
}

/// Checks locations with a budget, a cache and one read per location at a time. Cheap
/// to clone; clones share the cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier with `config`; resolves the file roots, which must exist.
    pub fn new(config: VerifyConfig) -> Result<Self, VerifyError> {
        let mut given = Vec::new();
        let mut canonical = Vec::new();
        for root in &config.file_roots {
            let absolute = std::path::absolute(root).map_err(|source| VerifyError::FileRoot {
                path: root.clone(),
                source,
            })?;
            let resolved =
                std::fs::canonicalize(&absolute).map_err(|source| VerifyError::FileRoot {
                    path: root.clone(),
                    source,
                })?;
            if !resolved.is_dir() {
                return Err(VerifyError::NotADirectory(root.clone()));
            }
            given.push(absolute);
            canonical.push(resolved);
        }
        let roots = given
            .iter()
            .zip(&canonical)
            .map(|(given, canonical)| files::FileRoot {
                given: given.clone(),
                canonical: canonical.clone(),
            })
            .collect();
        let rules = TargetRules {
            file_roots: given.into_iter().chain(canonical).collect(),
            azure_account: store::azure_account_from_env(),
            s3_virtual_hosted: config.stores.s3_addressing == S3Addressing::VirtualHosted,
        };
        let mut settings = config.stores.clone();
        settings.timeout = config.timeout;
        Ok(Self {
            inner: Arc::new(Inner {
                stores: store::Stores::new(settings, roots),
                rules,
                config,
                cache: Mutex::new(HashMap::new()),
                metrics: OnceLock::new(),
            }),
        })
    }

    /// Counts checks and times reads in `metrics` (for this verifier and its clones).
    pub fn with_metrics(self, metrics: LocationCheckMetrics) -> Self {
        let _ = self.inner.metrics.set(metrics);
        self
    }

    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.inner.config.mode
    }

    /// The time a check may take when `remaining` is left before the caller's deadline:
    /// the configured timeout, but never closer to the deadline than a margin (half of
    /// what remains, at most [`DEADLINE_MARGIN`]).
    pub fn budget(&self, remaining: Duration) -> Duration {
        let margin = (remaining / 2).min(DEADLINE_MARGIN);
        self.inner
            .config
            .timeout
            .min(remaining.saturating_sub(margin))
    }

    /// Checks `location` within `budget`. A cached outcome is returned at once; otherwise
    /// one read per location runs (at most the configured timeout) and every concurrent
    /// check of that location waits for it. Past `budget` the outcome is "could not
    /// check: timed out"; the read goes on and its outcome is cached for the next check.
    pub async fn check(&self, location: &Location, budget: Duration) -> Checked {
        let key = location.to_string();
        let (read, source) = {
            let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&key) {
                Some(Entry::Done { found, until }) if *until > Instant::now() => {
                    let checked = Checked {
                        outcome: found.outcome.clone(),
                        source: Source::Cache,
                        full: found.full.clone(),
                        declared: Declared::default(),
                    };
                    drop(cache);
                    self.count(&checked);
                    return checked;
                }
                Some(Entry::Pending(read)) => (read.clone(), Source::Coalesced),
                _ => {
                    let read = self.start_read(key.clone(), location.clone());
                    if cache.len() >= MAX_CACHED {
                        prune(&mut cache);
                    }
                    cache.insert(key, Entry::Pending(read.clone()));
                    (read, Source::Read)
                }
            }
        };
        let found = match tokio::time::timeout(budget, read).await {
            Ok(found) => found,
            Err(_) => Found {
                outcome: Outcome::could_not_check(format!(
                    "timed out after {} waiting for the store",
                    fmt_duration(budget)
                )),
                full: None,
            },
        };
        let checked = Checked {
            outcome: found.outcome,
            source,
            full: found.full,
            declared: Declared::default(),
        };
        self.count(&checked);
        checked
    }

    /// Spawns the one read of `location`; it caches its own outcome when done.
    fn start_read(&self, key: String, location: Location) -> SharedRead {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let timeout = inner.config.timeout;
            let deadline = tokio::time::Instant::now() + timeout;
            let found =
                match tokio::time::timeout_at(deadline, read(&inner, &location, deadline)).await {
                    Ok(found) => found,
                    Err(_) => Found {
                        outcome: Outcome::could_not_check(format!(
                            "timed out after {}: the store did not answer",
                            fmt_duration(timeout)
                        )),
                        full: None,
                    },
                };
            if let Some(metrics) = inner.metrics.get() {
                metrics.duration.observe(started.elapsed().as_secs_f64());
            }
            let ttl = if found.settled() {
                inner.config.verified_ttl
            } else {
                inner.config.failure_ttl
            };
            let mut cache = inner.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.insert(
                key,
                Entry::Done {
                    found: found.clone(),
                    until: Instant::now() + ttl,
                },
            );
            found
        });
        task.map(|joined| {
            joined.unwrap_or_else(|e| Found {
                outcome: Outcome::could_not_check(format!("internal error: {e}")),
                full: None,
            })
        })
        .boxed()
        .shared()
    }

    fn count(&self, checked: &Checked) {
        if let Some(metrics) = self.inner.metrics.get() {
            metrics
                .checks
                .get_or_create(&LocationCheckLabels {
                    outcome: checked.outcome.label(),
                    source: checked.source.as_str(),
                })
                .inc();
        }
    }

    /// Checks the location of a Savepoint CREATE (the final object, as `/validate` sees
    /// it); `None` when checking is off or the request is not one, or its location does
    /// not parse (validation refuses that on its own).
    pub async fn check_request(
        &self,
        request: &Request,
        rules: &LocationRules,
        budget: Duration,
    ) -> Option<(Location, Checked)> {
        let location = location_to_check(self.mode(), request, rules)?;
        let mut checked = self.check(&location, budget).await;
        if let Some(object) = request.object.as_ref() {
            checked.declared = declared(object);
        }
        Some((location, checked))
    }

    /// Reads `location` fully (the whole `_metadata` and every file it references) within
    /// the configured timeout, bypassing the cache: for `review --inspect` and `audit`.
    pub async fn inspect(&self, location: &Location, rules: &LocationRules) -> Inspection {
        let deadline = tokio::time::Instant::now() + self.inner.config.timeout;
        let inner = &self.inner;
        let inspected = inspect::inspect(
            &inner.stores,
            &inner.rules,
            rules,
            location,
            inner.config.full,
            deadline,
        );
        match tokio::time::timeout_at(deadline, inspected).await {
            Ok(inspection) => inspection,
            Err(_) => Inspection::unread(
                Outcome::could_not_check(format!(
                    "timed out after {}: the store did not answer",
                    fmt_duration(inner.config.timeout)
                )),
                inner.config.timeout,
            ),
        }
    }

    /// Applies a check's outcome to a decision under the configured mode; `flink`, the
    /// Flink that would restore from the location, when its version is known.
    pub fn judge(
        &self,
        decision: Decision,
        checked: Option<&(Location, Checked)>,
        flink: Option<&RestoringFlink>,
    ) -> Decision {
        let Some((location, checked)) = checked else {
            return decision;
        };
        let location = location.to_string();
        let mut decision = apply(
            decision,
            verdict_for(self.mode(), &checked.outcome, &location, flink),
        );
        if let (Some(full), true) = (&checked.full, checked.outcome.is_verified()) {
            let mut found = full.findings.clone();
            found.extend(findings::declared_findings(&full.nature, &checked.declared));
            for verdict in findings::findings_verdict(self.mode(), &found, &location) {
                decision = apply(decision, verdict);
            }
        }
        decision
    }
}

/// The location a request asks to verify under `mode`: that of a Savepoint CREATE, when it
/// parses.
pub fn location_to_check(mode: Mode, request: &Request, rules: &LocationRules) -> Option<Location> {
    if mode == Mode::Off
        || !is_savepoint(request)
        || request.operation != Some(crate::domain::Operation::Create)
    {
        return None;
    }
    let object = request.object.as_ref()?;
    Location::parse(spec_str(object, "savepointLocation")?, rules).ok()
}

/// What a Savepoint object declares about its snapshot.
pub fn declared(object: &crate::admission::decode::ObjectView) -> Declared {
    Declared {
        format: spec_str(object, "savepointFormatType").and_then(crate::domain::FormatType::parse),
        origin: spec_str(object, "origin").and_then(crate::domain::Origin::parse),
        snapshot_type: spec_str(object, "type").and_then(crate::domain::SnapshotType::parse),
    }
}

/// Reads `location`'s `_metadata` as deep as configured, by `deadline`.
async fn read(inner: &Inner, location: &Location, deadline: tokio::time::Instant) -> Found {
    if inner.config.depth == Depth::Full {
        let inspection = inspect::inspect(
            &inner.stores,
            &inner.rules,
            &LocationRules::default(),
            location,
            inner.config.full,
            deadline,
        )
        .await;
        let nature = inspection
            .snapshot
            .as_ref()
            .map(Nature::of)
            .unwrap_or_default();
        return Found {
            outcome: inspection.outcome,
            full: Some(Arc::new(FullRead {
                nature,
                findings: inspection.findings,
            })),
        };
    }
    Found {
        outcome: read_header(inner, location, deadline).await,
        full: None,
    }
}

/// Reads and judges the header of `location`'s `_metadata`, by `deadline`.
async fn read_header(
    inner: &Inner,
    location: &Location,
    deadline: tokio::time::Instant,
) -> Outcome {
    let target = match target::target(location, &inner.rules) {
        Ok(target) => target,
        Err(why) => return Outcome::could_not_check(why),
    };
    match inner.stores.read_header(&target, deadline).await {
        Ok(bytes) => Outcome::from_header(header::parse(&bytes), target::directory_name(location)),
        Err(err) => Outcome::from_read_error(err),
    }
}

/// Drops expired outcomes; when none were, drops all settled ones.
fn prune(cache: &mut HashMap<String, Entry>) {
    let now = Instant::now();
    cache.retain(|_, entry| match entry {
        Entry::Done { until, .. } => *until > now,
        Entry::Pending(_) => true,
    });
    if cache.len() >= MAX_CACHED {
        cache.retain(|_, entry| matches!(entry, Entry::Pending(_)));
    }
}

/// `2.0s`, `0.5s`: tenths of a second, as in "timed out after 1.0s".
pub fn fmt_duration(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests;
