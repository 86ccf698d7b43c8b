//! Real Flink snapshots of two releases and Flink's own account of them, shared by the
//! tests that read what Flink writes (`#[path]`-included by each). [`snapshots`] runs
//! `tests/flink/take_savepoints.py` on a local MiniCluster of a [`Release`] once per test
//! process and returns its [`Report`]: a canonical and a native savepoint, a retained
//! incremental checkpoint and a retained checkpoint with many files, each with the
//! checkpoint id, metadata version, operators, files and inline handles that Flink's
//! `Checkpoints.loadCheckpointMetadata` reads back (the script's docstring has the format).
//!
//! Needs `tests/provision-flink.sh` (Java 17 and one venv per release); a release that is
//! not provisioned is a panic that says so, never a skipped test.
// Each including test binary uses a different part of the fixture.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// How long one release may take to start, checkpoint, save, stop and read back.
const FLINK_TIMEOUT: Duration = Duration::from_secs(300);

/// A Flink release the tests run, each from a venv of `tests/provision-flink.sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Release {
    /// apache-flink 1.20.x, the last 1.x line: metadata format version 4.
    V1_20,
    /// apache-flink 2.2.x.
    V2_2,
}

impl Release {
    pub const ALL: [Release; 2] = [Release::V1_20, Release::V2_2];

    /// `1.20` or `2.2`, as Ververica's `artifact.flinkVersion` spells it.
    pub fn label(self) -> &'static str {
        match self {
            Release::V1_20 => "1.20",
            Release::V2_2 => "2.2",
        }
    }

    /// The variable `tests/provision-flink.sh --print-env` sets to its Python.
    pub fn python_env(self) -> &'static str {
        match self {
            Release::V1_20 => "SAVEPOINT_WEBHOOK_FLINK1_PYTHON",
            Release::V2_2 => "SAVEPOINT_WEBHOOK_FLINK_PYTHON",
        }
    }

    fn venv(self) -> &'static str {
        match self {
            Release::V1_20 => "flink-venv-1.20",
            Release::V2_2 => "flink-venv",
        }
    }

    /// The Python of this release's venv.
    pub fn python(self) -> PathBuf {
        venv_bin(self.python_env(), self.venv(), "python")
    }
}

/// `$ENV`, or `NAME` in the provisioned `VENV` under the cache; a panic naming
/// `tests/provision-flink.sh` when neither is there.
pub fn venv_bin(env: &str, venv: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    let path = cache
        .join("savepoint-webhook")
        .join(venv)
        .join("bin")
        .join(name);
    assert!(
        path.exists(),
        "{} not found and {env} is not set: run tests/provision-flink.sh (it installs Java 17 and a venv per Flink release), then eval \"$(tests/provision-flink.sh --print-env)\"",
        path.display()
    );
    path
}

/// This test binary's scratch directory, `CARGO_TARGET_TMPDIR/<test name>`: Flink's
/// output is under `flink-<release>/`, and tests may put files of their own beside it.
pub fn scratch_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(env!("CARGO_CRATE_NAME"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the scratch root");
        std::fs::canonicalize(&root).expect("canonical scratch root")
    })
    .clone()
}

/// What one run of a release wrote, as Flink reported it; the first call per release runs
/// Flink (up to a minute or two), later calls return the same report.
pub fn snapshots(release: Release) -> &'static Report {
    static RUNS: [OnceLock<Report>; 2] = [OnceLock::new(), OnceLock::new()];
    let index = Release::ALL
        .iter()
        .position(|r| *r == release)
        .expect("a known release");
    RUNS[index].get_or_init(|| {
        // One release at a time: two MiniClusters on a small machine slow each other's
        // checkpoints past the script's deadlines.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let report = run(release, &scratch_root());
        eprintln!(
            "Flink {} wrote: {}",
            report.flink_version,
            report
                .snapshots()
                .iter()
                .map(|(name, s)| format!(
                    "{name} {} (checkpoint {}, format {}, {} files, {} inline)",
                    s.path,
                    s.checkpoint_id,
                    s.metadata_version,
                    s.files.len(),
                    s.inline_handles.len()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        report
    })
}

/// Runs `tests/flink/take_savepoints.py ROOT/flink-<release>` with RELEASE's Python and
/// parses its report.
fn run(release: Release, root: &Path) -> Report {
    let started = Instant::now();
    let label = release.label();
    let out = root.join(format!("flink-{label}"));
    let log = root.join(format!("flink-{label}.log"));
    let flink_logs = root.join(format!("flink-{label}-logs"));
    std::fs::create_dir_all(&flink_logs).expect("create Flink's log directory");
    let python = release.python();
    let mut child = Command::new(&python)
        .arg(Path::new(ROOT).join("tests/flink/take_savepoints.py"))
        .arg(&out)
        // Flink's own log beside the output, not in the venv.
        .env("FLINK_LOG_DIR", &flink_logs)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("create the Flink log"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} for Flink {} ({e}): run tests/provision-flink.sh",
                python.display(),
                release.label()
            )
        });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for Flink") {
            break status;
        }
        if started.elapsed() > FLINK_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "Flink {} did not finish within {FLINK_TIMEOUT:?}; Flink's log is in {}; script log:\n{}",
                release.label(),
                flink_logs.display(),
                log_tail(&log, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = reader.join().unwrap_or_default();
    assert!(
        status.success(),
        "Flink {} failed ({status}); is it provisioned (tests/provision-flink.sh)? Flink's log is in {}; script log:\n{}",
        release.label(),
        flink_logs.display(),
        log_tail(&log, 40)
    );
    eprintln!(
        "Flink {} ran in {:.1}s",
        release.label(),
        started.elapsed().as_secs_f64()
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "Flink {} printed a report this fixture cannot read ({e}): {text}",
            release.label()
        )
    })
}

fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

// ---------------------------------------------------------------------------------------
// The report: what take_savepoints.py prints
// ---------------------------------------------------------------------------------------

/// One run of `take_savepoints.py`.
#[derive(Debug, Deserialize)]
pub struct Report {
    /// `EnvironmentInformation.getVersion()`, e.g. `2.2.1`.
    pub flink_version: String,
    pub canonical: Snapshot,
    pub native: Snapshot,
    /// A retained incremental checkpoint referencing files in `<job>/shared/`.
    pub retained: Snapshot,
    /// A retained checkpoint of a job with parallelism 8 and several stateful operators.
    pub many: Option<Snapshot>,
}

impl Report {
    /// Every snapshot with a name for messages: `canonical savepoint`, ….
    pub fn snapshots(&self) -> Vec<(&'static str, &Snapshot)> {
        let mut all = vec![
            ("canonical savepoint", &self.canonical),
            ("native savepoint", &self.native),
            ("retained checkpoint", &self.retained),
        ];
        if let Some(many) = &self.many {
            all.push(("retained checkpoint with many files", many));
        }
        all
    }
}

/// One snapshot as Flink reported and read it back.
#[derive(Debug, Deserialize)]
pub struct Snapshot {
    /// The directory in Flink's spelling, `file:/…`.
    pub path: String,
    /// The hex JobID of the job that wrote it.
    pub job_id: String,
    /// `CheckpointMetadata.getCheckpointId()`.
    pub checkpoint_id: i64,
    /// The format version after the magic number in `_metadata`.
    pub metadata_version: i32,
    /// `getCheckpointProperties()`; `None` where the release stores none.
    pub properties: Option<Properties>,
    pub operators: Vec<Operator>,
    /// One entry per state handle that names a file.
    pub files: Vec<FileRef>,
    /// `ByteStreamStateHandle`s: state held inside `_metadata`.
    pub inline_handles: Vec<InlineHandle>,
    /// `PlaceholderStreamStateHandle`s (none expected in a `_metadata`).
    pub placeholders: Vec<Placeholder>,
    /// How many state handles of each Java class (simple name) the snapshot holds.
    pub handle_types: BTreeMap<String, usize>,
}

impl Snapshot {
    /// The directory on this machine.
    pub fn local(&self) -> PathBuf {
        PathBuf::from(
            self.path
                .strip_prefix("file:")
                .expect("Flink reports file:/ paths"),
        )
    }

    /// The bytes of its `_metadata`.
    pub fn metadata(&self) -> Vec<u8> {
        std::fs::read(self.local().join("_metadata")).expect("Flink wrote _metadata")
    }

    /// The directory name: `savepoint-…` or `chk-<n>`.
    pub fn name(&self) -> String {
        self.local()
            .file_name()
            .and_then(OsStr::to_str)
            .expect("a directory name")
            .to_string()
    }

    /// The distinct files it references, as local paths.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.files.iter().map(FileRef::local).collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

/// `CheckpointProperties` of a snapshot.
#[derive(Debug, Deserialize)]
pub struct Properties {
    #[serde(rename = "type")]
    pub kind: SnapshotKind,
    /// The savepoint format; `None` for checkpoints.
    pub format: Option<Format>,
    /// `SnapshotType.getName()`: `Savepoint`, `Checkpoint`, ….
    pub name: String,
    /// `NO_SHARING` for savepoints, `FORWARD_BACKWARD` for incremental checkpoints.
    pub sharing_files_strategy: String,
    pub unclaimed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SnapshotKind {
    Savepoint,
    Checkpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Format {
    Canonical,
    Native,
}

/// One `OperatorState`.
#[derive(Debug, Deserialize)]
pub struct Operator {
    /// `OperatorID.toHexString()`.
    pub id: String,
    /// `None` where the release stores no names (1.20).
    pub name: Option<String>,
    pub uid: Option<String>,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Subtasks with state.
    pub subtask_count: u32,
    pub state_size: u64,
    pub coordinator_state: bool,
}

/// A state handle that names a file.
#[derive(Debug, Deserialize)]
pub struct FileRef {
    /// Absolute, in Flink's spelling (`file:/…`), also for a relative handle.
    pub path: String,
    /// The bytes this handle covers (`getStateSize()`).
    pub size: u64,
    /// The handle's Java class: `FileStateHandle`, `RelativeFileStateHandle`, ….
    pub handle: String,
    /// `managed_keyed`, `managed_operator`, …, then `/shared`, `/private`, `/metadata`
    /// below an incremental RocksDB handle.
    pub role: String,
    pub operator: String,
    pub subtask: Option<u32>,
    /// The path stored in `_metadata`, relative to the snapshot (savepoints).
    pub relative_path: Option<String>,
    /// RocksDB's own name for the file (`000012.sst`, `MANIFEST-000004`).
    pub local_path: Option<String>,
    /// Where the handle's bytes start (file merging).
    pub offset: Option<u64>,
    /// The key-group range of the keyed handle it belongs to.
    pub key_groups: Option<[u32; 2]>,
}

impl FileRef {
    pub fn local(&self) -> PathBuf {
        PathBuf::from(
            self.path
                .strip_prefix("file:")
                .expect("Flink reports file:/ paths"),
        )
    }
}

/// State held inside `_metadata` (`ByteStreamStateHandle`).
#[derive(Debug, Deserialize)]
pub struct InlineHandle {
    /// The handle's name: the file it would have been, or the operator id.
    pub name: String,
    pub size: u64,
    pub role: String,
    pub operator: String,
    /// `None` for operator-coordinator state.
    pub subtask: Option<u32>,
    pub local_path: Option<String>,
    pub key_groups: Option<[u32; 2]>,
}

/// A `PlaceholderStreamStateHandle`: a reference to a file of an earlier checkpoint.
#[derive(Debug, Deserialize)]
pub struct Placeholder {
    pub size: u64,
    pub handle: String,
    pub role: String,
    pub operator: String,
    pub subtask: Option<u32>,
    pub local_path: Option<String>,
    pub key_groups: Option<[u32; 2]>,
}

/// Copies the directory tree `from` to `to` (a snapshot moved elsewhere, to damage).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the directory to copy") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}
