//! The binary as a user runs it: `review`, `crds`, `certs`, `audit`, `probe`, and the logs
//! of `serve`.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_savepoint-webhook");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("binary runs")
}

fn review(args: &[&str]) -> (i32, Value) {
    let out = run(&[&["review"], args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "review printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), json)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn review_copies_a_respelled_location_and_injects_the_annotation() {
    let (code, out) = review(&[
        "deploy/examples/savepoint.yaml",
        "--state",
        "deploy/examples/state",
        "--patched",
    ]);
    assert_eq!(code, 0, "{out}");
    let response = &out["response"];
    assert_eq!(response["allowed"], true);
    let ops: Vec<(&str, &str)> = response["patch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| (op["op"].as_str().unwrap(), op["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        [
            ("add", "/metadata/annotations"),
            ("add", "/spec/deploymentId"),
            ("add", "/spec/origin")
        ]
    );
    let patched = &out["patchedObject"];
    assert_eq!(patched["spec"]["origin"], "COPIED");
    assert_eq!(
        patched["metadata"]["annotations"]["com.dataartisans.appmanager.controller.deployment.spec.version"],
        "3"
    );
    assert!(
        response["warnings"][0]
            .as_str()
            .unwrap()
            .contains("default/retained-chk-42")
    );
}

#[test]
fn review_denies_with_every_field_named() {
    let (code, out) = review(&[
        "deploy/examples/savepoint-invalid.yaml",
        "--state",
        "deploy/examples/state",
    ]);
    assert_eq!(code, 1);
    let message = out["response"]["status"]["message"].as_str().unwrap();
    for field in [
        "spec.savepointLocation",
        "spec.jobId",
        "spec.deploymentName",
    ] {
        assert!(message.contains(field), "{field} not in {message}");
    }
}

#[test]
fn review_takes_a_whole_admission_review_and_updates() {
    let (code, out) = review(&[
        "tests/fixtures/savepoint-update.json",
        "--state",
        "deploy/examples/state",
    ]);
    assert_eq!(
        (code, &out["response"]["uid"]),
        (0, &Value::from("56659862-b2c9-44ef-ac67-feb55d181489"))
    );

    let dir = tempfile::tempdir().unwrap();
    let old = write(
        dir.path(),
        "old.yaml",
        "apiVersion: appmanager.dataartisans.com/v1\nkind: Savepoint\nmetadata: {name: x}\nspec: {deploymentName: top-speed-windowing, savepointLocation: 's3://b/a'}\n",
    );
    let new = write(
        dir.path(),
        "new.yaml",
        "apiVersion: appmanager.dataartisans.com/v1\nkind: Savepoint\nmetadata: {name: x}\nspec: {deploymentName: top-speed-windowing, savepointLocation: 's3://b/elsewhere'}\n",
    );
    let (code, out) = review(&[&new, "--operation", "UPDATE", "--old", &old]);
    assert_eq!(code, 1);
    assert!(
        out["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.savepointLocation")
    );
}

#[test]
fn review_exits_2_on_unusable_input() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("key: [unclosed", "not valid YAML"),
        ("a: 1\n---\nb: 2\n", "in.yaml#1: the manifest has no kind"),
        ("spec: {}\n", "has no kind"),
        ("# nothing\n", "holds no document"),
    ] {
        let file = write(dir.path(), "in.yaml", text);
        let out = run(&["review", &file]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
    let out = run(&["review", "does-not-exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "review",
        "deploy/examples/savepoint.yaml",
        "--operation",
        "UPDATE",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --old"));
}

#[test]
fn crds_command_prints_what_deploy_holds() {
    let stored = |file: &str| {
        std::fs::read_to_string(Path::new(ROOT).join("deploy/crds").join(file)).unwrap()
    };
    for (args, expected) in [
        (
            &["crds"][..],
            stored("savepoints.yaml") + &stored("deployments.yaml"),
        ),
        (&["crds", "--only", "savepoints"], stored("savepoints.yaml")),
        (
            &["crds", "--only", "deployments"],
            stored("deployments.yaml"),
        ),
        (
            &["crds", "--cel", "--only", "savepoints"],
            stored("cel/savepoints.yaml"),
        ),
        (
            &["crds", "--cel", "--only", "deployments"],
            stored("deployments.yaml"),
        ),
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected, "{args:?}");
    }
}

#[test]
fn certs_command_writes_a_ca_signed_serving_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_string_lossy().into_owned();
    let out = run(&[
        "certs",
        "--service",
        "hook",
        "--namespace",
        "ops",
        "--out",
        &out_dir,
        "--dns",
        "hook.example",
        "--ip",
        "127.0.0.1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use base64::Engine;
    let ca_bundle = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8(out.stdout).unwrap().trim())
        .unwrap();
    assert_eq!(ca_bundle, std::fs::read(dir.path().join("ca.crt")).unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = std::fs::read(dir.path().join("tls.crt")).unwrap();
    let key = std::fs::read(dir.path().join("tls.key")).unwrap();
    savepoint_webhook::server::tls::certified_key_from_pem(
        "tls.crt".as_ref(),
        &cert,
        "tls.key".as_ref(),
        &key,
    )
    .expect("certificate and key match");
    let names = savepoint_webhook::certs::CertRequest {
        service: "hook".into(),
        namespace: "ops".into(),
        extra_dns: vec!["hook.example".into()],
        ips: vec![],
        validity: std::time::Duration::from_secs(1),
    }
    .dns_names();
    assert_eq!(
        names,
        [
            "hook",
            "hook.ops",
            "hook.ops.svc",
            "hook.ops.svc.cluster.local",
            "hook.example"
        ]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the key is private");
    let mode = std::fs::metadata(dir.path().join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the CA key is private");

    // A second run renews the serving certificate with the same CA.
    let again = run(&[
        "certs",
        "--service",
        "hook",
        "--namespace",
        "ops",
        "--out",
        &out_dir,
    ]);
    assert!(again.status.success());
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8(again.stdout).unwrap().trim())
            .unwrap(),
        ca_bundle,
        "the caBundle stays"
    );
    let renewed = std::fs::read_to_string(dir.path().join("tls.crt")).unwrap();
    assert_ne!(renewed.as_bytes(), cert.as_slice());
    assert!(savepoint_webhook::certs::signed_by(
        &renewed,
        &String::from_utf8(ca_bundle).unwrap()
    ));
}

#[test]
fn readme_command_reference_matches_the_binary() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    for command in [
        "serve", "review", "certs", "crds", "probe", "audit", "inspect",
    ] {
        let help = String::from_utf8(run(&[command, "-h"]).stdout).unwrap();
        let block =
            format!("<!-- help:{command} -->\n```text\n{help}```\n<!-- /help:{command} -->");
        assert!(
            readme.contains(&block),
            "README's reference for `{command}` is stale; replace it with:\n{block}"
        );
    }
}

/// A `serve --state --self-signed` process on a free port, killed on drop.
struct Served {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Served {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// Started with `extra` flags; its stderr goes to `log` in its directory.
    fn start_with(extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .current_dir(ROOT)
            .args([
                "serve",
                "--state",
                "deploy/examples/state",
                "--self-signed",
                "--listen",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--self-signed-dir")
            .arg(dir.path())
            .args(extra)
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, port, dir };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve did not start listening");
    }

    fn probe(&self, extra: &[&str]) -> (i32, String) {
        let url = format!("https://localhost:{}", self.port);
        let ca = self
            .dir
            .path()
            .join("ca.crt")
            .to_string_lossy()
            .into_owned();
        let out = run(&[&["probe", "--url", &url, "--ca", &ca], extra].concat());
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Served {
    /// Posts the AdmissionReview `body` to `path` and returns the answer.
    fn post(&self, path: &str, body: &Value) -> Value {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = std::fs::read(self.dir.path().join("ca.crt")).unwrap();
        let url = format!("https://localhost:{}{path}", self.port);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            reqwest::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .build()
                .unwrap()
                .post(url)
                .json(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    }

    /// The lines logged so far that mention `needle`, waiting up to 5 s for one.
    fn log_lines(&self, needle: &str) -> Vec<String> {
        for _ in 0..100 {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.contains(needle))
                .map(String::from)
                .collect();
            if !lines.is_empty() {
                return lines;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "nothing logged mentions {needle:?}:\n{}",
            std::fs::read_to_string(self.dir.path().join("log")).unwrap()
        );
    }
}

fn create_fixture() -> Value {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("tests/fixtures/savepoint-create.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The create fixture with a location no scheme rule accepts.
fn invalid_fixture() -> Value {
    let mut review = create_fixture();
    review["request"]["uid"] = "5a9c1d3e-0000-4000-8000-00000000d3ad".into();
    review["request"]["object"]["spec"]["savepointLocation"] = "ftp://host/p".into();
    review
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn probe_passes_against_a_healthy_webhook_and_fails_on_a_mismatch() {
    let served = Served::start();
    for extra in [&[][..], &["--deployment", "top-speed-windowing"][..]] {
        let (code, out) = served.probe(extra);
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out.lines().filter(|l| l.starts_with("ok ")).count(),
            6,
            "{out}"
        );
    }
    let (code, out) = served.probe(&["--deployment", "not-yet-reconciled"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  POST /mutate well-formed Savepoint: expected allowed"),
        "{out}"
    );
}

#[test]
fn probe_fails_when_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    run(&["certs", "--out", &dir.path().to_string_lossy()]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ca = dir.path().join("ca.crt").to_string_lossy().into_owned();
    let out = run(&[
        "probe",
        "--url",
        &format!("https://localhost:{port}"),
        "--ca",
        &ca,
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  GET /healthz"));
}

#[test]
fn json_logs_name_who_changed_what_and_why_a_request_was_denied() {
    let served = Served::start_with(&["--log-format", "json"]);
    let answer = served.post("/mutate", &create_fixture());
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    served.post("/validate", &invalid_fixture());

    let parse = |line: &String| -> Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let mutated = parse(&served.log_lines("\"mutated\"")[0]);
    assert_eq!(mutated["level"], "INFO");
    assert_eq!(mutated["uid"], "d81cc643-c6b4-4e2b-a381-04dcf48d5e02");
    assert_eq!(mutated["user"], "admin");
    assert_eq!(mutated["namespace"], "default");
    assert_eq!(mutated["name"], "recovered-from-checkpoint");
    let changes = mutated["changes"].as_str().unwrap();
    for expected in [
        "added annotation com.dataartisans.appmanager.controller.deployment.spec.version=3",
        "set spec.origin to COPIED (was unset) because location s3://flink-state/checkpoints/3f2a/chk-42 is already referenced by Savepoint default/retained-chk-42",
    ] {
        assert!(changes.contains(expected), "{expected} not in {changes}");
    }

    let denied = parse(&served.log_lines("\"denied\"")[0]);
    assert_eq!(denied["uid"], "5a9c1d3e-0000-4000-8000-00000000d3ad");
    assert_eq!(denied["user"], "admin");
    assert_eq!(denied["reason"], "invalid");
    assert!(
        denied["detail"]
            .as_str()
            .unwrap()
            .contains("spec.savepointLocation: \"ftp://host/p\" has scheme \"ftp\""),
        "{denied}"
    );
    for line in std::fs::read_to_string(served.dir.path().join("log"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
    {
        parse(&line.to_string());
    }
}

#[test]
fn text_logs_stay_one_escaped_line_per_event() {
    let served = Served::start();
    let mut review = create_fixture();
    review["request"]["userInfo"]["username"] = "mallory\nINFO forged".into();
    served.post("/mutate", &review);
    let line = &served.log_lines(" mutated ")[0];
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains(r#"user="mallory\\nINFO forged""#), "{line}");
    assert!(line.contains("changes="), "{line}");
    assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
}

/// A Savepoint manifest for `deploymentName`, at `location`.
fn savepoint(name: &str, deployment: &str, location: &str) -> String {
    format!(
        "apiVersion: appmanager.dataartisans.com/v1\nkind: Savepoint\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  deploymentName: {deployment}\n  savepointLocation: {location}\n"
    )
}

#[test]
fn review_takes_directories_and_multi_document_files_and_prints_a_table() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "two.yaml",
        &format!(
            "{}---\n{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n",
            savepoint("fresh", "top-speed-windowing", "s3://b/fresh"),
            savepoint("orphan", "no-such-deployment", "s3://b/orphan"),
        ),
    );
    write(dir.path(), "notes.txt", "not a manifest");
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let out = run(&[
        "review",
        &dir_arg,
        "deploy/examples/savepoint.yaml",
        "--state",
        "deploy/examples/state",
    ]);
    assert_eq!(out.status.code(), Some(1), "one is denied");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let two = dir.path().join("two.yaml").to_string_lossy().into_owned();
    assert_eq!(
        rows,
        [
            vec!["DOCUMENT", "SAVEPOINT", "RESULT", "REASON", "WARNINGS"],
            vec![
                &format!("{two}#1"),
                "default/fresh",
                "allowed",
                "mutated",
                "1"
            ],
            vec![
                &format!("{two}#2"),
                "default/orphan",
                "denied",
                "deployment_not_found",
                "0"
            ],
            vec![
                "deploy/examples/savepoint.yaml",
                "default/restore-from-chk-42",
                "allowed",
                "mutated",
                "1"
            ],
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{two}#2 (default/orphan): denied: spec.deploymentName: Deployment \"no-such-deployment\" not found"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("(default/restore-from-chk-42): warning: spec.origin set to COPIED"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("3 document(s): 2 allowed (2 with warnings), 1 denied\n"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("skipped {two}#3: a ConfigMap"))
    );

    let out = run(&[
        "review",
        &dir_arg,
        "--state",
        "deploy/examples/state",
        "--output",
        "json",
    ]);
    let answers: Value = serde_json::from_slice(&out.stdout).unwrap();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1]["document"], 2);
    assert_eq!(answers[1]["review"]["response"]["allowed"], false);
}

#[test]
fn review_writes_junit_and_fails_on_warnings_when_asked() {
    let args = [
        "review",
        "deploy/examples/savepoint.yaml",
        "deploy/examples/savepoint-invalid.yaml",
        "--state",
        "deploy/examples/state",
        "--output",
        "junit",
    ];
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 2, "{xml}");
    assert!(xml.contains(r#"tests="2" failures="1""#), "{xml}");
    assert!(
        xml.contains(
            r#"<testcase classname="deploy/examples/savepoint-invalid.yaml" name="default/broken">"#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<failure type="denied" message="invalid: "#),
        "{xml}"
    );
    assert!(
        xml.contains("&quot;ftp://backup-host/"),
        "quoted text is escaped: {xml}"
    );
    assert!(
        xml.contains("<system-out>spec.origin set to COPIED"),
        "{xml}"
    );

    let out = run(&[&args[..], &["--fail-on-warning"]].concat());
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(xml.contains(r#"tests="2" failures="2""#), "{xml}");
    assert!(
        xml.contains(r#"<failure type="warning" message="1 warning(s)">"#),
        "{xml}"
    );

    let warned_only = [
        "review",
        "deploy/examples/savepoint.yaml",
        "--state",
        "deploy/examples/state",
    ];
    assert_eq!(run(&warned_only).status.code(), Some(0));
    let out = run(&[&warned_only[..], &["--fail-on-warning"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let single: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        single["kind"], "AdmissionReview",
        "one document prints as before"
    );
}

#[test]
fn review_checks_locations_only_when_asked() {
    let args = [
        "review",
        "deploy/examples/savepoint.yaml",
        "--state",
        "deploy/examples/state",
    ];
    let out = Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .env_remove("SAVEPOINT_WEBHOOK_VERIFY_LOCATION")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["response"]["warnings"].as_array().unwrap().len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_string_lossy().into_owned();
    let file = write(
        dir.path(),
        "file.yaml",
        &savepoint(
            "local",
            "top-speed-windowing",
            &format!("file://{root}/missing"),
        ),
    );
    let out = run(&[
        "review",
        &file,
        "--state",
        "deploy/examples/state",
        "--verify-location",
        "warn",
        "--verify-file-root",
        &root,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("location check: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schemes_default_is_shown_as_the_flag_takes_it() {
    use clap::Parser;
    use savepoint_webhook::cli::{Cli, Command as Sub, DEFAULT_SCHEMES_FLAG};
    use savepoint_webhook::domain::location::DEFAULT_SCHEMES;
    assert_eq!(DEFAULT_SCHEMES_FLAG, DEFAULT_SCHEMES.join(","));
    let Sub::Review(args) = Cli::parse_from(["savepoint-webhook", "review", "x.yaml"]).command
    else {
        panic!("not review");
    };
    assert_eq!(args.policy.schemes, DEFAULT_SCHEMES);
    let help = String::from_utf8(run(&["serve", "-h"]).stdout).unwrap();
    assert!(
        help.contains(&format!("[default: {DEFAULT_SCHEMES_FLAG}]")),
        "{help}"
    );
}

/// The state directory of the examples plus `extra` as one more file.
fn state_with(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["deployments.yaml", "savepoints.yaml"] {
        std::fs::copy(
            Path::new(ROOT).join("deploy/examples/state").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    write(dir.path(), "extra.yaml", extra);
    dir
}

#[test]
fn audit_says_what_is_wrong_with_an_unknown_deployment() {
    for (deployment, expected) in [
        (
            "gone",
            "spec.deploymentName \"gone\" names no Deployment in namespace \"default\"",
        ),
        (
            "123",
            "names no Deployment: spec.deploymentName and spec.deploymentId are both unset or not strings",
        ),
    ] {
        let state = state_with(&savepoint("orphan", deployment, "s3://b/orphan"));
        let out = run(&["audit", "--state", &state.path().to_string_lossy()]);
        assert_eq!(out.status.code(), Some(1));
        let table = String::from_utf8(out.stdout).unwrap();
        let line = table
            .lines()
            .find(|l| l.contains("default/orphan"))
            .unwrap();
        assert!(line.starts_with("unknown-deployment "), "{line}");
        assert!(line.ends_with(expected), "{line}");
        assert!(!line.contains("is required"), "{line}");
    }
}

#[test]
fn audit_selects_a_namespace_offline() {
    let mut other = savepoint("orphan", "gone", "s3://b/orphan");
    other = other.replace("namespace: default", "namespace: team-b");
    let state = state_with(&other);
    let dir = state.path().to_string_lossy().into_owned();
    assert_eq!(run(&["audit", "--state", &dir]).status.code(), Some(1));
    let out = run(&["audit", "--state", &dir, "--namespace", "default"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A plain-HTTP stand-in for the Kubernetes API: answers every list with `items` for
/// Savepoints and nothing else, and records the paths asked for.
fn fake_api(savepoints: Value) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = paths.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = request_line
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let items = if path.contains("/savepoints") {
                savepoints.clone()
            } else {
                serde_json::json!([])
            };
            seen.lock().unwrap().push(path);
            let body = serde_json::json!({
                "apiVersion": "appmanager.dataartisans.com/v1",
                "kind": "List",
                "metadata": {},
                "items": items,
            })
            .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, paths)
}

#[test]
fn audit_reads_the_kubeconfig_context_and_namespace_it_is_given() {
    let orphan = serde_json::json!([{
        "apiVersion": "appmanager.dataartisans.com/v1",
        "kind": "Savepoint",
        "metadata": {"name": "orphan", "namespace": "team-a", "uid": "u1"},
        "spec": {"deploymentName": "gone", "savepointLocation": "s3://b/orphan"},
    }]);
    let (port, paths) = fake_api(orphan);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write(
        dir.path(),
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: elsewhere\nclusters:\n- name: fake\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\n- name: nowhere\n  cluster: {{server: 'http://127.0.0.1:1'}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: u}}\n- name: elsewhere\n  context: {{cluster: nowhere, user: u}}\n"
        ),
    );
    let out = run(&[
        "audit",
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "fake",
        "--namespace",
        "team-a",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["findings"][0]["name"], "orphan");
    let paths = paths.lock().unwrap().clone();
    assert!(
        paths
            .iter()
            .any(|p| p
                .starts_with("/apis/appmanager.dataartisans.com/v1/namespaces/team-a/savepoints?")),
        "{paths:?}"
    );
    assert!(
        paths.iter().all(|p| p.contains("/namespaces/team-a/")),
        "{paths:?}"
    );

    let out = run(&["audit", "--kubeconfig", &kubeconfig, "--context", "missing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unusable --kubeconfig"));
}

/// Runs the binary with its stdout closed by the reader before anything is written,
/// as `| head -1` leaves it, and returns its exit status and stderr.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (child.wait().unwrap().code(), stderr)
}

#[test]
fn a_reader_that_goes_away_ends_output_quietly() {
    let served = Served::start();
    let url = format!("https://localhost:{}", served.port);
    let ca = served
        .dir
        .path()
        .join("ca.crt")
        .to_string_lossy()
        .into_owned();
    for (args, code) in [
        (&["crds"][..], 0),
        (
            &[
                "review",
                "deploy/examples/savepoint.yaml",
                "--state",
                "deploy/examples/state",
            ],
            0,
        ),
        (
            &[
                "review",
                "deploy/examples",
                "--state",
                "deploy/examples/state",
            ],
            1,
        ),
        (&["audit", "--state", "deploy/examples/state"], 0),
        (&["probe", "--url", &url, "--ca", &ca], 0),
    ] {
        let (status, stderr) = with_closed_stdout(args);
        assert_eq!(status, Some(code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
