#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg(feature = "e2e")]
//! Location verification against what a real Flink writes: a local MiniCluster (PyPI
//! `apache-flink`, `tests/flink/take_savepoints.py`, run by the shared fixture
//! `tests/support/flink.rs`) takes a canonical and a native savepoint and retains
//! checkpoints; the webhook must verify each with the checkpoint id Flink itself reads
//! back, in Flink's own `file:/…` spelling, for Flink 2.2 and 1.20 alike, and must refuse
//! damaged and foreign files. The same files are served by a moto S3 server on loopback
//! (verified, missing object, wrong credentials), and a TCP server that accepts and never
//! answers shows the deadline holds. Last, a real kube-apiserver calls the webhook in deny
//! mode.
//!
//! Needs `tests/provision-flink.sh` (Java 17, a venv per Flink release, moto) and, for the
//! API server case, `tests/provision.sh`. Each Flink release runs once per test binary.

mod common;
#[path = "support/flink.rs"]
mod flink;

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, Guarded};
use common::{Certs, Cluster, free_port, index_entries, mk_deployment, mk_savepoint, webhook_bin};
use flink::{Release, Report, Snapshot};
use savepoint_webhook::domain::{Location, LocationRules};
use savepoint_webhook::verify::header::NotFlink;
use savepoint_webhook::verify::{Mode, Outcome, Source, Verdict, Verifier, VerifyConfig, verdict};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BUCKET: &str = "flink-state";

// ---------------------------------------------------------------------------------------
// Flink's snapshots and the damaged files
// ---------------------------------------------------------------------------------------

/// Everything the tests read: Flink's snapshots and the damaged files, under one root.
struct Fixture {
    /// The allowed file root: `flink-<release>/` (Flink's output) and `bad/` (damaged files).
    root: PathBuf,
    /// Flink 2.2's snapshots.
    flink: &'static Report,
}

impl Fixture {
    fn bad(&self, name: &str) -> PathBuf {
        self.root.join("bad").join(name)
    }

    fn snapshots(&self) -> [(&'static str, &Snapshot); 3] {
        [
            ("canonical savepoint", &self.flink.canonical),
            ("native savepoint", &self.flink.native),
            ("retained checkpoint", &self.flink.retained),
        ]
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let fixture = Fixture {
            flink: flink::snapshots(Release::V2_2),
            root: flink::scratch_root(),
        };
        write_bad_files(&fixture);
        fixture
    })
}

fn flink_python() -> PathBuf {
    Release::V2_2.python()
}

/// Damaged and foreign files next to Flink's: each a directory with a `_metadata`.
fn write_bad_files(f: &Fixture) {
    let canonical = f.flink.canonical.metadata();
    let mut random = vec![0u8; 4096];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for byte in &mut random {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *byte = seed as u8;
    }
    let mut version_7 = canonical.clone();
    version_7[4..8].copy_from_slice(&7i32.to_be_bytes());
    let other_chk = format!("job/chk-{}", f.flink.retained.checkpoint_id + 100);
    for (dir, bytes) in [
        ("empty", Vec::new()),
        ("truncated", canonical[..10].to_vec()),
        ("random", random),
        ("json", b"{\"not\": \"a savepoint\"}\n".to_vec()),
        ("version-7", version_7),
        (other_chk.as_str(), f.flink.retained.metadata()),
    ] {
        let dir = f.bad(dir);
        std::fs::create_dir_all(&dir).expect("create a bad-file directory");
        std::fs::write(dir.join("_metadata"), bytes).expect("write a bad _metadata");
    }
    std::fs::create_dir_all(f.bad("no-metadata")).expect("create an empty directory");
    std::fs::write(f.bad("no-metadata/part-0"), b"data").expect("write a stray file");
}

fn location(raw: &str) -> Location {
    Location::parse(raw, &LocationRules::default()).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

fn file_verifier(f: &Fixture) -> Verifier {
    Verifier::new(VerifyConfig {
        mode: Mode::Deny,
        file_roots: vec![f.root.clone()],
        ..VerifyConfig::default()
    })
    .expect("a verifier over the fixture root")
}

// ---------------------------------------------------------------------------------------
// Files Flink wrote, and files it did not
// ---------------------------------------------------------------------------------------

/// The metadata format version each release writes.
fn written_format(release: Release) -> i32 {
    match release {
        Release::V1_20 => 4,
        Release::V2_2 => 6,
    }
}

/// Every snapshot Flink wrote verifies, in each spelling of its location, with the
/// checkpoint id and format version Flink itself reads back.
async fn verify_every_snapshot(release: Release, snapshots: &[(&str, &Snapshot)]) {
    let verifier = Verifier::new(VerifyConfig {
        mode: Mode::Deny,
        file_roots: vec![flink::scratch_root()],
        ..VerifyConfig::default()
    })
    .expect("a verifier over the scratch root");
    let budget = Duration::from_secs(5);
    for (what, snapshot) in snapshots {
        let what = format!("Flink {} {what}", release.label());
        assert_eq!(snapshot.metadata_version, written_format(release), "{what}");
        let local = snapshot.local();
        let local = local.display();
        // Flink's own spelling first, then the other spellings of the same location.
        for (i, raw) in [
            snapshot.path.clone(),
            format!("file://{local}/_metadata"),
            format!("file://localhost{local}/"),
        ]
        .into_iter()
        .enumerate()
        {
            let checked = verifier.check(&location(&raw), budget).await;
            assert_eq!(
                checked.outcome,
                Outcome::Verified {
                    checkpoint_id: snapshot.checkpoint_id,
                    version: snapshot.metadata_version,
                },
                "{what} at {raw}"
            );
            let source = if i == 0 { Source::Read } else { Source::Cache };
            assert_eq!(checked.source, source, "{what} at {raw}");
        }
    }
}

#[tokio::test]
async fn flink_written_snapshots_verify_with_flinks_ids() {
    let f = fixture();
    assert_ne!(
        f.flink.canonical.checkpoint_id,
        f.flink.native.checkpoint_id
    );
    verify_every_snapshot(Release::V2_2, &f.snapshots()).await;
    assert!(
        f.flink
            .retained
            .name()
            .ends_with(&format!("chk-{}", f.flink.retained.checkpoint_id)),
        "Flink names a retained checkpoint chk-<id>: {}",
        f.flink.retained.path
    );
}

#[tokio::test]
async fn flink_1_20_snapshots_verify_with_flinks_ids() {
    let report = flink::snapshots(Release::V1_20);
    assert!(
        report.flink_version.starts_with("1.20."),
        "{}",
        report.flink_version
    );
    verify_every_snapshot(Release::V1_20, &report.snapshots()).await;
    for retained in std::iter::once(&report.retained).chain(&report.many) {
        assert!(
            retained
                .name()
                .ends_with(&format!("chk-{}", retained.checkpoint_id)),
            "Flink names a retained checkpoint chk-<id>: {}",
            retained.path
        );
    }
}

#[tokio::test]
async fn damaged_and_foreign_files_are_refused_in_deny_mode() {
    let f = fixture();
    let verifier = file_verifier(f);
    let budget = Duration::from_secs(5);
    let chk = f.flink.retained.checkpoint_id;
    let cases: Vec<(String, Outcome, String)> = vec![
        (
            "empty".into(),
            Outcome::NotFlink(NotFlink::Empty),
            "the file is empty".into(),
        ),
        (
            "truncated".into(),
            Outcome::NotFlink(NotFlink::Truncated {
                len: 10,
                flink_magic: true,
            }),
            "truncated: 10 bytes".into(),
        ),
        (
            "no-metadata".into(),
            Outcome::Missing,
            "no _metadata at file://".into(),
        ),
        (
            "version-7".into(),
            Outcome::UnknownVersion { version: 7 },
            "unknown Flink metadata format version 7".into(),
        ),
        (
            format!("job/chk-{}", chk + 100),
            Outcome::CheckpointMismatch {
                directory: chk + 100,
                found: chk,
            },
            format!("chk-{} holds checkpoint {chk}", chk + 100),
        ),
        (
            "does-not-exist".into(),
            Outcome::Missing,
            "no _metadata at".into(),
        ),
    ];
    for (dir, want, needle) in cases {
        let at = location(&format!("file:{}", f.bad(&dir).display()));
        let outcome = verifier.check(&at, budget).await.outcome;
        assert_eq!(outcome, want, "{dir}");
        match verdict(Mode::Deny, &outcome, &at.to_string()) {
            Verdict::Deny(message) => assert!(message.contains(&needle), "{dir}: {message}"),
            other => panic!("{dir}: expected a refusal, got {other:?}"),
        }
    }
    for dir in ["random", "json"] {
        let at = location(&format!("file:{}", f.bad(dir).display()));
        let outcome = verifier.check(&at, budget).await.outcome;
        assert!(
            matches!(outcome, Outcome::NotFlink(NotFlink::Magic { .. })),
            "{dir}: {outcome:?}"
        );
        let text = outcome.describe(&at.to_string());
        assert!(
            text.contains("not a Flink savepoint") && text.contains("magic number 0x"),
            "{text}"
        );
    }
    // Outside the allowed root: never read, only a warning even in deny mode.
    let outside = location("file:/etc/ssl");
    let outcome = verifier.check(&outside, budget).await.outcome;
    assert!(
        matches!(&outcome, Outcome::CouldNotCheck { why } if why.contains("not under an allowed root")),
        "{outcome:?}"
    );
    assert!(matches!(
        verdict(Mode::Deny, &outcome, "file:///etc/ssl"),
        Verdict::Warn(_)
    ));
}

// ---------------------------------------------------------------------------------------
// `review`, as a user runs it
// ---------------------------------------------------------------------------------------

fn savepoint_manifest(dir: &Path, name: &str, location: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let manifest = json!({
        "apiVersion": "appmanager.dataartisans.com/v1",
        "kind": "Savepoint",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "deploymentName": "top-speed-windowing",
            "savepointLocation": location,
            "flinkSavepointId": "00000000-0000-0000-0000-000000000000",
        },
        "status": { "state": "COMPLETED" },
    });
    std::fs::write(&path, manifest.to_string()).expect("write a manifest");
    path
}

/// `savepoint-webhook review MANIFEST --state deploy/examples/state ARGS` with only `env`
/// in its environment (no inherited credentials).
fn review(manifest: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, Value) {
    let mut command = Command::new(webhook_bin());
    command
        .arg("review")
        .arg(manifest)
        .args(["--state", &format!("{ROOT}/deploy/examples/state")])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run savepoint-webhook review");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "review printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, json)
}

fn warnings(review: &Value) -> Vec<String> {
    review["response"]["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn review_verifies_flinks_spelling_and_refuses_a_bad_location() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let root = f.root.display().to_string();
    let flags = ["--verify-location", "deny", "--verify-file-root", &root];
    for (what, snapshot) in f.snapshots() {
        let manifest = savepoint_manifest(dir.path(), "restore", &snapshot.path);
        let (output, answer) = review(&manifest, &flags, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{what}: {answer}\n{stderr}");
        let line = format!("verified: checkpoint {}", snapshot.checkpoint_id);
        assert!(stderr.contains(&line), "{what}: {stderr}");
        // Read fully: a savepoint is self-contained; an incremental checkpoint's shared/
        // files lie beside its chk-N, which is worth a warning.
        let found = warnings(&answer);
        match what.contains("savepoint") {
            true => assert!(found.is_empty(), "{what}: {answer}"),
            false => assert!(
                found.len() == 1 && found[0].contains("not relocatable"),
                "{what}: {answer}"
            ),
        }
    }
    let manifest = savepoint_manifest(dir.path(), "bad", &format!("file:{root}/bad/no-metadata"));
    let (output, answer) = review(&manifest, &flags, &[]);
    assert_eq!(output.status.code(), Some(1), "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("no _metadata at file://"), "{message}");

    // warn: admitted, with the finding as a warning.
    let (output, answer) = review(
        &manifest,
        &["--verify-location", "warn", "--verify-file-root", &root],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{answer}");
    assert!(
        warnings(&answer)
            .iter()
            .any(|w| w.contains("no _metadata at")),
        "{answer}"
    );
    // Without an allowed root, file locations are not read.
    let (output, answer) = review(&manifest, &["--verify-location", "deny"], &[]);
    assert_eq!(output.status.code(), Some(0), "{answer}");
    assert!(
        warnings(&answer)
            .iter()
            .any(|w| w.contains("could not check") && w.contains("no file roots")),
        "{answer}"
    );
}

// ---------------------------------------------------------------------------------------
// S3 on loopback: moto, and a server that never answers
// ---------------------------------------------------------------------------------------

/// A moto S3 server on loopback holding Flink's files, with IAM credentials enforced.
struct Moto {
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
    process: Option<Guarded>,
    _log: tempfile::NamedTempFile,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }
}

/// Object keys in the moto bucket.
struct Keys {
    canonical: String,
    native: String,
    retained: String,
}

fn s3_keys(f: &Fixture) -> Keys {
    Keys {
        canonical: format!("savepoints/{}", f.flink.canonical.name()),
        native: format!("savepoints/{}", f.flink.native.name()),
        retained: format!("checkpoints/job/{}", f.flink.retained.name()),
    }
}

/// The key of the copy of the native savepoint uploaded without one of its state files,
/// and that file's name.
fn damaged_native(f: &Fixture) -> (String, String) {
    let lost = f
        .flink
        .native
        .files
        .iter()
        .find_map(|file| file.relative_path.clone())
        .expect("a native savepoint has state files of its own");
    (format!("damaged/{}", f.flink.native.name()), lost)
}

fn start_moto(f: &Fixture, copies: usize) -> Moto {
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let process = Guarded::spawn(
        &flink::venv_bin("SAVEPOINT_WEBHOOK_MOTO_SERVER", "flink-venv", "moto_server"),
        &[
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string().into(),
        ],
        &[("INITIAL_NO_AUTH_ACTION_COUNT", OsStr::new("3"))],
        log.path(),
        None,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not listen within 30 s:\n{}",
            common::log_tail(log.path(), 20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let keys = s3_keys(f);
    let empty = f.bad("empty/_metadata");
    let mut objects = vec![
        format!(
            "{}/_metadata={}",
            keys.canonical,
            f.flink.canonical.local().join("_metadata").display()
        ),
        format!(
            "{}/_metadata={}",
            keys.native,
            f.flink.native.local().join("_metadata").display()
        ),
        format!(
            "{}/_metadata={}",
            keys.retained,
            f.flink.retained.local().join("_metadata").display()
        ),
        format!("empty/_metadata={}", empty.display()),
    ];
    // The savepoints' state files beside their _metadata (full reads ask for each), and a
    // copy of the native savepoint that lost one of them.
    for (key, snapshot) in [
        (&keys.canonical, &f.flink.canonical),
        (&keys.native, &f.flink.native),
        (&keys.retained, &f.flink.retained),
    ] {
        for file in &snapshot.files {
            if let Some(relative) = &file.relative_path {
                objects.push(format!("{key}/{relative}={}", file.local().display()));
            }
        }
    }
    let (damaged, lost) = damaged_native(f);
    objects.push(format!(
        "{damaged}/_metadata={}",
        f.flink.native.local().join("_metadata").display()
    ));
    for file in &f.flink.native.files {
        match &file.relative_path {
            Some(relative) if relative != &lost => {
                objects.push(format!("{damaged}/{relative}={}", file.local().display()))
            }
            _ => {}
        }
    }
    for i in 0..copies {
        objects.push(format!(
            "copies/sp-{i}/_metadata={}",
            f.flink.canonical.local().join("_metadata").display()
        ));
    }
    let out = Command::new(flink_python())
        .arg(Path::new(ROOT).join("tests/flink/s3_fixture.py"))
        .arg(&endpoint)
        .arg(BUCKET)
        .args(&objects)
        .output()
        .expect("run s3_fixture.py");
    assert!(
        out.status.success(),
        "s3_fixture.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Value = serde_json::from_slice(&out.stdout).expect("s3_fixture.py prints JSON");
    Moto {
        endpoint,
        access_key_id: keys["access_key_id"].as_str().unwrap().to_string(),
        secret_access_key: keys["secret_access_key"].as_str().unwrap().to_string(),
        process: Some(process),
        _log: log,
    }
}

/// A TCP server on loopback that accepts connections and never answers; counts them.
struct Stall {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

fn start_stall() -> Stall {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stalling server");
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    Stall { addr, accepted }
}

fn s3_flags(endpoint: &str) -> Vec<String> {
    [
        "--verify-s3-endpoint",
        endpoint,
        "--verify-s3-allow-http",
        "--verify-s3-region",
        "us-east-1",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn s3_locations_are_read_from_the_configured_endpoint() {
    let f = fixture();
    let moto = start_moto(f, 0);
    let keys = s3_keys(f);
    let dir = tempfile::tempdir().unwrap();
    let mut flags = s3_flags(&moto.endpoint);
    flags.extend(["--verify-location", "deny"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let creds = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()),
    ];

    for (key, id, spelling) in [
        (&keys.canonical, f.flink.canonical.checkpoint_id, "s3"),
        (&keys.native, f.flink.native.checkpoint_id, "s3a"),
        (&keys.retained, f.flink.retained.checkpoint_id, "s3p"),
    ] {
        let at = format!("{spelling}://{BUCKET}/{key}");
        let (output, answer) = review(&savepoint_manifest(dir.path(), "s3", &at), &flags, &creds);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{at}: {answer}\n{stderr}");
        assert!(
            stderr.contains(&format!("verified: checkpoint {id}")),
            "{at}: {stderr}"
        );
    }

    // A full read asks the store for every state file: one the copy lost is refused.
    let (damaged, lost) = damaged_native(f);
    let at = format!("s3://{BUCKET}/{damaged}");
    let (output, answer) = review(&savepoint_manifest(dir.path(), "d", &at), &flags, &creds);
    assert_eq!(output.status.code(), Some(1), "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("1 state file the snapshot references is missing")
            && message.contains(&format!("{at}/{lost}")),
        "{message}"
    );
    // The header alone cannot tell.
    let mut header_only = flags.clone();
    header_only.extend(["--verify-depth", "header"]);
    let (output, answer) = review(
        &savepoint_manifest(dir.path(), "d", &at),
        &header_only,
        &creds,
    );
    assert_eq!(output.status.code(), Some(0), "{answer}");

    let missing = format!("s3://{BUCKET}/savepoints/savepoint-000000-000000000000");
    let (output, answer) = review(
        &savepoint_manifest(dir.path(), "m", &missing),
        &flags,
        &creds,
    );
    assert_eq!(output.status.code(), Some(1), "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("no _metadata at {missing}")),
        "{message}"
    );

    let empty = format!("s3://{BUCKET}/empty");
    let (output, answer) = review(&savepoint_manifest(dir.path(), "e", &empty), &flags, &creds);
    assert_eq!(output.status.code(), Some(1), "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("the file is empty"), "{message}");

    // Wrong credentials: the store refuses; that proves nothing about the location.
    let good = format!("s3://{BUCKET}/{}", keys.canonical);
    let manifest = savepoint_manifest(dir.path(), "w", &good);
    let wrong = [
        ("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1"),
        ("AWS_SECRET_ACCESS_KEY", "wrong"),
    ];
    let (output, answer) = review(&manifest, &flags, &wrong);
    assert_eq!(output.status.code(), Some(0), "{answer}");
    let all = warnings(&answer).join("\n");
    assert!(
        all.contains(&format!("could not check {good}: the store refused access")),
        "{all}"
    );
    // No credentials at all: not even a request.
    let (output, answer) = review(&manifest, &flags, &[]);
    assert_eq!(output.status.code(), Some(0), "{answer}");
    let all = warnings(&answer).join("\n");
    assert!(all.contains("no credentials for S3"), "{all}");
    // The bucket comes from the location, the endpoint never does: a location naming
    // another host is still read from the configured endpoint.
    let elsewhere = format!("s3://{BUCKET}/{}", keys.native);
    let (output, _) = review(
        &savepoint_manifest(dir.path(), "x", &elsewhere),
        &flags,
        &creds,
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_store_that_never_answers_is_could_not_check_within_the_timeout() {
    let stall = start_stall();
    let dir = tempfile::tempdir().unwrap();
    let mut flags = s3_flags(&format!("http://{}", stall.addr));
    flags.extend(["--verify-location", "deny", "--verify-timeout", "1s"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let creds = [
        ("AWS_ACCESS_KEY_ID", "AKIA"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    let manifest = savepoint_manifest(dir.path(), "s", "s3://flink-state/savepoints/stalled");
    let started = Instant::now();
    let (output, answer) = review(&manifest, &flags, &creds);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{answer}");
    let all = warnings(&answer).join("\n");
    assert!(
        all.contains("could not check s3://flink-state/savepoints/stalled: timed out after 1.0s"),
        "{all}"
    );
    assert!(took < Duration::from_secs(3), "review took {took:?}");
    assert!(
        stall.accepted.load(Ordering::SeqCst) >= 1,
        "the store was dialed"
    );
}

// ---------------------------------------------------------------------------------------
// `serve`: cache, coalescing, deadline, metrics, latency
// ---------------------------------------------------------------------------------------

/// The webhook binary serving `--state deploy/examples/state` over self-signed TLS, with
/// `env` added to its environment.
struct Served {
    port: u16,
    http: reqwest::Client,
    process: Option<Guarded>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("webhook log:\n{}", common::log_tail(&self.log, 40));
        }
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }
}

impl Served {
    async fn start(args: &[String], env: &[(&str, &str)]) -> Served {
        common::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut all: Vec<std::ffi::OsString> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}").into(),
            "--state".into(),
            format!("{ROOT}/deploy/examples/state").into(),
            "--self-signed".into(),
            "--self-signed-dir".into(),
            dir.path().into(),
        ];
        all.extend(args.iter().map(Into::into));
        let log = dir.path().join("webhook.log");
        let mut vars: Vec<(&str, &OsStr)> = vec![
            ("RUST_LOG", OsStr::new("info")),
            ("NO_COLOR", OsStr::new("1")),
            ("HOME", OsStr::new("/nonexistent")),
        ];
        vars.extend(env.iter().map(|(k, v)| (*k, OsStr::new(*v))));
        let process = Guarded::spawn(&webhook_bin(), &all, &vars, &log, None);
        let ca = loop_until(Duration::from_secs(30), || {
            std::fs::read(dir.path().join("ca.crt")).ok()
        })
        .await
        .expect("the webhook wrote its CA");
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let served = Served {
            port,
            http,
            process: Some(process),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = served
                .http
                .get(served.url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return served;
            }
            assert!(Instant::now() < deadline, "the webhook is not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// POSTs a `/validate` CREATE of a Savepoint at `location`; returns the response and
    /// the time it took.
    async fn validate(&self, location: &str, query: &str) -> (Value, Duration) {
        let mut review: Value = serde_json::from_slice(
            &std::fs::read(format!("{ROOT}/tests/fixtures/savepoint-create.json")).unwrap(),
        )
        .unwrap();
        review["request"]["object"]["spec"]["savepointLocation"] = location.into();
        let started = Instant::now();
        let answer: Value = self
            .http
            .post(self.url(&format!("/validate{query}")))
            .header("content-type", "application/json")
            .body(review.to_string())
            .send()
            .await
            .expect("POST /validate")
            .json()
            .await
            .expect("an AdmissionReview");
        (answer["response"].clone(), started.elapsed())
    }

    async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap()
    }
}

async fn loop_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(value) = f() {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The value of the sample `name{labels}` (labels in encoding order) in a metrics text.
fn sample(metrics: &str, name: &str, labels: &str) -> f64 {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn checks(metrics: &str, outcome: &str, source: &str) -> f64 {
    sample(
        metrics,
        "savepoint_webhook_location_checks_total",
        &format!("outcome=\"{outcome}\",source=\"{source}\""),
    )
}

fn response_warnings(response: &Value) -> String {
    response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_coalesces_checks_and_keeps_the_api_servers_deadline() {
    let stall = start_stall();
    let mut flags = s3_flags(&format!("http://{}", stall.addr));
    flags.extend(["--verify-location", "deny", "--verify-timeout", "5s"].map(String::from));
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIA"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    let served = Served::start(&flags, &env).await;

    // Eight concurrent creates of one location: one read, seven wait for it; the API
    // server's ?timeout=2s leaves a budget of 1 s, and every answer comes within it.
    let at = "s3://flink-state/savepoints/stalled-1";
    let answers =
        futures::future::join_all((0..8).map(|_| served.validate(at, "?timeout=2s"))).await;
    for (response, took) in &answers {
        assert_eq!(response["allowed"], true, "{response}");
        let all = response_warnings(response);
        assert!(
            all.contains(&format!("could not check {at}: timed out after 1.0s")),
            "{all}"
        );
        assert!(
            *took < Duration::from_millis(1900),
            "answered after {took:?}"
        );
    }
    let metrics = served.metrics().await;
    assert_eq!(
        checks(&metrics, "could_not_check", "read"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        checks(&metrics, "could_not_check", "coalesced"),
        7.0,
        "{metrics}"
    );
    assert_eq!(
        stall.accepted.load(Ordering::SeqCst),
        1,
        "one connection to the store for eight checks"
    );
    // The read goes on after the budget; once it gives up (5 s), its outcome is cached
    // briefly: the next check is answered from the cache.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (response, took) = served.validate(at, "").await;
    let all = response_warnings(&response);
    assert!(all.contains("timed out after 5.0s"), "{all}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    let metrics = served.metrics().await;
    assert_eq!(
        checks(&metrics, "could_not_check", "cache"),
        1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_verifies_s3_and_caches_latency_on_loopback() {
    let f = fixture();
    const N: usize = 20;
    let moto = start_moto(f, N);
    let keys = s3_keys(f);
    let mut flags = s3_flags(&moto.endpoint);
    flags.extend(["--verify-location", "deny"].map(String::from));
    let env = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()),
    ];
    let served = Served::start(&flags, &env).await;

    let good = format!("s3://{BUCKET}/{}", keys.canonical);
    let (response, _) = served.validate(&good, "").await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response_warnings(&response), "", "{response}");
    let (response, _) = served.validate(&format!("s3://{BUCKET}/nothing"), "").await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("no _metadata at s3://flink-state/nothing"),
        "{message}"
    );

    // Latency: N distinct locations (each one read), then one location N times (cached).
    let mut uncached = Vec::new();
    for i in 0..N {
        let (response, took) = served
            .validate(&format!("s3://{BUCKET}/copies/sp-{i}"), "")
            .await;
        assert_eq!(response["allowed"], true, "{response}");
        uncached.push(took);
    }
    let mut cached = Vec::new();
    for _ in 0..N {
        let (response, took) = served.validate("s3://flink-state/copies/sp-0", "").await;
        assert_eq!(response["allowed"], true, "{response}");
        cached.push(took);
    }
    let off = Served::start(&["--verify-location".into(), "off".into()], &[]).await;
    let mut baseline = Vec::new();
    for _ in 0..N {
        baseline.push(off.validate("s3://flink-state/copies/sp-0", "").await.1);
    }
    let metrics = served.metrics().await;
    let reads = sample(
        &metrics,
        "savepoint_webhook_location_check_duration_seconds_count",
        "",
    );
    let read_sum = sample(
        &metrics,
        "savepoint_webhook_location_check_duration_seconds_sum",
        "",
    );
    assert_eq!(
        checks(&metrics, "verified", "read"),
        (N + 1) as f64,
        "{metrics}"
    );
    assert_eq!(checks(&metrics, "verified", "cache"), N as f64, "{metrics}");
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    eprintln!(
        "POST /validate over HTTPS on loopback, median of {N}: verification off {:?}, cached {:?}, uncached (S3 read from moto) {:?}; mean store read {:.2} ms over {reads} reads",
        median(&mut baseline),
        median(&mut cached),
        median(&mut uncached),
        read_sum / reads * 1000.0,
    );
}

// ---------------------------------------------------------------------------------------
// A real API server calls the webhook in deny mode
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_refuses_a_location_without_a_savepoint_in_deny_mode() {
    let f = fixture();
    common::install_crypto_provider();
    let stall = start_stall();
    let cp = ControlPlane::start();
    let cluster = Cluster::connect(&cp).await;
    cluster.apply_crds().await;
    let certs = Certs::generate();
    let port = free_port();
    let root = f.root.display().to_string();
    let stalled = format!("http://{}", stall.addr);
    let args: Vec<std::ffi::OsString> = [
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--tls-cert",
        &certs.dir.path().join("tls.crt").display().to_string(),
        "--tls-key",
        &certs.dir.path().join("tls.key").display().to_string(),
        "--reconcile",
        "false",
        "--verify-location",
        "deny",
        "--verify-depth",
        "full",
        "--verify-file-root",
        &root,
        "--verify-s3-endpoint",
        &stalled,
        "--verify-s3-allow-http",
    ]
    .map(Into::into)
    .to_vec();
    let log = cp.dir().join("webhook-verify.log");
    let env: [(&str, &OsStr); 5] = [
        ("KUBECONFIG", cp.kubeconfig_path().as_os_str()),
        ("RUST_LOG", OsStr::new("info")),
        ("NO_COLOR", OsStr::new("1")),
        ("AWS_ACCESS_KEY_ID", OsStr::new("AKIA")),
        ("AWS_SECRET_ACCESS_KEY", OsStr::new("secret")),
    ];
    let webhook = Guarded::spawn(&webhook_bin(), &args, &env, &log, None);
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&certs.ca_pem()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let ready = async {
        loop {
            let metrics = match http.get(format!("{url}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if index_entries(&metrics, "deployments").is_some_and(|n| n >= 3) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    cluster.create_namespace("verify").await;
    cluster
        .create_deployment(mk_deployment("verify", "app", Some("3")))
        .await;
    // Deployments on two Flink releases: 1.20 reads metadata up to format 4, 2.2 up to 6.
    for (name, flink) in [("app-flink-1-20", "1.20"), ("app-flink-2-2", "2.2")] {
        let mut deployment = mk_deployment("verify", name, Some("3"));
        deployment["spec"]["template"]["spec"]["artifact"] = json!({ "flinkVersion": flink });
        cluster.create_deployment(deployment).await;
    }
    if tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .is_err()
    {
        panic!(
            "the webhook did not see the Deployment:\n{}",
            common::log_tail(&log, 40)
        );
    }
    cluster
        .register_shipped_webhooks(&url, &certs.ca_bundle)
        .await;

    // The API server takes a moment to use new webhook configurations: wait until a
    // refusal comes from the webhook.
    let bad = format!("file:{root}/bad/no-metadata");
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let reply = cluster
            .create_savepoint(&mk_savepoint("verify", "bad", "app", &bad), true)
            .await;
        if !reply.ok() || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let message = reply
        .refusal("a dry run of a location without _metadata")
        .to_string();
    assert!(message.contains("no _metadata at file://"), "{message}");

    let reply = cluster
        .create_savepoint(&mk_savepoint("verify", "bad", "app", &bad), false)
        .await;
    let message = reply.refusal("a location without _metadata").to_string();
    assert!(message.contains("no _metadata at file://"), "{message}");
    assert!(
        cluster.get_savepoint("verify", "bad").await.is_none(),
        "nothing stored"
    );

    let reply = cluster
        .create_savepoint(
            &mk_savepoint("verify", "chk", "app", &f.flink.retained.path),
            false,
        )
        .await;
    reply.savepoint("the retained checkpoint in Flink's spelling");
    // Read fully: admitted, with the one thing to know about an incremental checkpoint.
    let location_warnings: Vec<_> = reply
        .warnings
        .iter()
        .filter(|w| w.contains("savepointLocation"))
        .collect();
    assert!(
        location_warnings.len() == 1 && location_warnings[0].contains("not relocatable"),
        "{:?}",
        reply.warnings
    );

    // A copy of the native savepoint that lost a state file: the header is fine, the
    // restore would not be; refused through the API server, naming the file.
    let copy = f.root.join("bad").join("native-lost-a-file");
    flink::copy_tree(&f.flink.native.local(), &copy);
    let lost = f
        .flink
        .native
        .files
        .iter()
        .find_map(|file| file.relative_path.clone())
        .expect("a native savepoint has state files of its own");
    std::fs::remove_file(copy.join(&lost)).unwrap();
    let reply = cluster
        .create_savepoint(
            &mk_savepoint("verify", "lost", "app", &format!("file:{}", copy.display())),
            false,
        )
        .await;
    let message = reply
        .refusal("a savepoint missing a state file")
        .to_string();
    assert!(
        message.contains("1 state file the snapshot references is missing")
            && message.contains(&lost),
        "{message}"
    );
    eprintln!("verify: a savepoint missing a state file: refused: {message}");

    // A retained checkpoint no one holds yet registered as a user's savepoint: refused.
    let unheld = &f
        .flink
        .many
        .as_ref()
        .expect("a checkpoint with many files")
        .path;
    let mut as_savepoint = mk_savepoint("verify", "chk-as-savepoint", "app", unheld);
    as_savepoint["spec"]["origin"] = json!("USER_REQUEST");
    let message = cluster
        .create_savepoint(&as_savepoint, false)
        .await
        .refusal("a checkpoint registered as a savepoint")
        .to_string();
    assert!(message.contains("spec.origin is USER_REQUEST"), "{message}");
    eprintln!("verify: a checkpoint registered as a savepoint: refused: {message}");

    // The same snapshot for a Deployment whose Flink cannot read its format: refused,
    // naming both; for one that can: admitted.
    let format = match savepoint_webhook::verify::header::parse(&f.flink.retained.metadata()) {
        savepoint_webhook::verify::header::Header::Flink { version, .. } => version,
        other => panic!("the retained checkpoint's header: {other:?}"),
    };
    let old_flink = mk_savepoint(
        "verify",
        "chk-old-flink",
        "app-flink-1-20",
        &f.flink.retained.path,
    );
    let reply = cluster.create_savepoint(&old_flink, false).await;
    if format > 4 {
        let message = reply
            .refusal("a snapshot format Flink 1.20 cannot read")
            .to_string();
        assert!(
            message.contains(&format!("has Flink metadata format version {format}"))
                && message.contains(
                    "Deployment \"app-flink-1-20\" runs Flink 1.20, which reads up to version 4"
                ),
            "{message}"
        );
        eprintln!("verify: Flink 1.20 Deployment, format {format} snapshot: refused: {message}");
    } else {
        reply.savepoint("a snapshot format Flink 1.20 reads");
    }
    let new_flink = mk_savepoint(
        "verify",
        "chk-new-flink",
        "app-flink-2-2",
        &f.flink.retained.path,
    );
    cluster
        .create_savepoint(&new_flink, false)
        .await
        .savepoint("a snapshot format Flink 2.2 reads");

    let started = Instant::now();
    let reply = cluster
        .create_savepoint(
            &mk_savepoint(
                "verify",
                "stalled",
                "app",
                "s3://flink-state/savepoints/stalled",
            ),
            false,
        )
        .await;
    let took = started.elapsed();
    reply.savepoint("a location on a store that never answers");
    assert!(
        reply
            .warnings
            .iter()
            .any(|w| w.contains("could not check s3://flink-state/savepoints/stalled: timed out")),
        "{:?}",
        reply.warnings
    );
    assert!(took < Duration::from_secs(8), "the create took {took:?}");
    eprintln!("create with a stalled store answered in {took:?}");
    webhook.kill();
}
