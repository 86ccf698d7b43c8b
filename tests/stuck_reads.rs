//! Location reads that would never return: FIFOs named `_metadata` under a file root. More
//! checks of them than tokio has blocking threads neither starve the checks of other
//! locations (a non-Flink file is still refused in `deny`, a Flink one still verified) nor
//! hold up the shutdown of `serve`.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use savepoint_webhook::domain::{Location, LocationRules};
use savepoint_webhook::verify::header::{FileKind, NotFlink};
use savepoint_webhook::verify::{Mode, Outcome, Verdict, Verifier, VerifyConfig, verdict};
use serde_json::Value;

#[path = "support/kit.rs"]
mod kit;

const BIN: &str = env!("CARGO_BIN_EXE_savepoint-webhook");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// More than tokio's 512 blocking threads.
const FIFOS: usize = 600;

/// The header of `chk-7/_metadata` as written by Flink 2.2.1.
const FLINK_CHK_7: [u8; 16] = [0x49, 0x60, 0x67, 0x2d, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 7];

/// A file root holding `fifo-<i>/_metadata` FIFOs, a Flink `chk-7` and a zip file.
struct FileRoot {
    dir: tempfile::TempDir,
}

impl FileRoot {
    /// With `fifos` FIFOs.
    fn mk(fifos: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fifos: Vec<PathBuf> = (0..fifos)
            .map(|i| {
                let sp = dir.path().join(format!("fifo-{i}"));
                std::fs::create_dir(&sp).unwrap();
                sp.join("_metadata")
            })
            .collect();
        let status = Command::new("mkfifo").args(&fifos).status().unwrap();
        assert!(status.success(), "mkfifo");
        for (name, bytes) in [
            ("job/chk-7", &FLINK_CHK_7[..]),
            ("zip", b"PK\x03\x04 a zip file"),
        ] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("_metadata"), bytes).unwrap();
        }
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn location(&self, rel: &str) -> String {
        format!("file://{}/{rel}", self.path().display())
    }
}

fn loc(raw: &str) -> Location {
    Location::parse(raw, &LocationRules::default()).unwrap()
}

/// Runs `test` on a runtime that does not wait for its blocking threads when it ends, so
/// that reads stuck there make a regression fail rather than hang.
fn run(test: impl std::future::Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(test)));
    runtime.shutdown_background();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn fifo_reads_starve_no_other_check() {
    run(fifo_reads_starve_no_other_check_body());
}

async fn fifo_reads_starve_no_other_check_body() {
    let root = FileRoot::mk(FIFOS);
    let verifier = Verifier::new(VerifyConfig {
        mode: Mode::Deny,
        file_roots: vec![root.path().to_path_buf()],
        ..VerifyConfig::default()
    })
    .unwrap();
    let budget = Duration::from_secs(2);
    let fifo_checks: Vec<_> = (0..FIFOS)
        .map(|i| {
            let (verifier, at) = (verifier.clone(), loc(&root.location(&format!("fifo-{i}"))));
            tokio::spawn(async move { verifier.check(&at, budget).await.outcome })
        })
        .collect();

    let started = Instant::now();
    let zip = root.location("zip");
    let outcome = verifier.check(&loc(&zip), budget).await.outcome;
    assert!(
        matches!(
            verdict(Mode::Deny, &outcome, &zip),
            Verdict::Deny(m) if m.contains("not a Flink savepoint") && m.contains("magic number 0x504b0304")
        ),
        "{outcome:?}"
    );
    let chk = loc(&root.location("job/chk-7"));
    assert_eq!(
        verifier.check(&chk, budget).await.outcome,
        Outcome::Verified {
            checkpoint_id: 7,
            version: 6
        }
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "checks took {took:?}");

    let fifo = Outcome::NotFlink(NotFlink::NotRegular {
        kind: FileKind::Fifo,
    });
    for check in fifo_checks {
        assert_eq!(check.await.unwrap(), fifo);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{FIFOS} FIFO checks took {:?}",
        started.elapsed()
    );
}

/// A `serve` process, killed on drop if still running.
struct Served {
    child: Child,
    api: Api,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// An HTTPS client of a [`Served`] process.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "webhook log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    async fn start(args: &[&str]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("webhook.log");
        let child = Command::new(BIN)
            .current_dir(ROOT)
            .args(["serve", "--state", "deploy/examples/state", "--self-signed"])
            .arg("--self-signed-dir")
            .arg(dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut served = Self {
            child,
            api: Api {
                http: reqwest::Client::new(),
                port,
            },
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "the webhook is not ready");
            assert!(served.child.try_wait().unwrap().is_none(), "serve exited");
            if let Ok(ca) = std::fs::read(served._dir.path().join("ca.crt")) {
                served.api.http = reqwest::Client::builder()
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let ready = served
                    .api
                    .http
                    .get(served.api.url("/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    return served;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM; waits at most `limit` for the exit.
    async fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success(), "kill -TERM {pid}");
        let signalled = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(
                signalled.elapsed() < limit,
                "serve still running {limit:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// The response to a `/validate` CREATE of a Savepoint at `location`.
    async fn validate(&self, location: &str) -> reqwest::Result<Value> {
        let mut review: Value =
            serde_json::from_slice(&kit::fixture("savepoint-create.json")).unwrap();
        review["request"]["object"]["spec"]["savepointLocation"] = location.into();
        let answer: Value = self
            .http
            .post(self.url("/validate?timeout=10s"))
            .header("content-type", "application/json")
            .body(review.to_string())
            .send()
            .await?
            .json()
            .await?;
        Ok(answer["response"].clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_within_the_drain_timeout_on_sigterm_with_fifo_reads_pending() {
    let root = FileRoot::mk(2 * FIFOS);
    let drain = Duration::from_secs(3);
    let root_arg = root.path().to_string_lossy().into_owned();
    let mut served = Served::start(&[
        "--verify-location",
        "deny",
        "--verify-file-root",
        &root_arg,
        "--drain-timeout",
        "3s",
        // No delay before draining: the bound under test is the drain.
        "--shutdown-delay",
        "0s",
    ])
    .await;
    let api = served.api.clone();

    let fifo_checks = |range: std::ops::Range<usize>| -> Vec<_> {
        range
            .map(|i| {
                let (api, at) = (api.clone(), root.location(&format!("fifo-{i}")));
                tokio::spawn(async move { api.validate(&at).await })
            })
            .collect()
    };
    let first = fifo_checks(0..FIFOS);

    let started = Instant::now();
    let zip = api.validate(&root.location("zip")).await.unwrap();
    assert_eq!(zip["allowed"], false, "{zip}");
    let message = zip["status"]["message"].as_str().unwrap();
    assert!(message.contains("not a Flink savepoint"), "{message}");
    let chk = api.validate(&root.location("job/chk-7")).await.unwrap();
    assert_eq!(chk["allowed"], true, "{chk}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "checks took {took:?}");
    for check in first {
        assert_fifo_refused(&check.await.unwrap().unwrap());
    }

    // A second wave, in flight when SIGTERM arrives.
    let mut second = fifo_checks(FIFOS..2 * FIFOS).into_iter();
    assert_fifo_refused(&second.next().unwrap().await.unwrap().unwrap());
    let signalled = Instant::now();
    let exit = served.terminate(drain + Duration::from_secs(5)).await;
    let exited = signalled.elapsed();
    assert!(exit.success(), "{exit:?}");
    let mut answered = 0;
    for check in second {
        if let Ok(response) = check.await.unwrap() {
            answered += 1;
            assert_fifo_refused(&response);
        }
    }
    eprintln!(
        "exited {exited:?} after SIGTERM; {answered} of {} later FIFO checks answered",
        FIFOS - 1
    );
}

fn assert_fifo_refused(response: &Value) {
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("a FIFO, not a regular file"), "{message}");
}
