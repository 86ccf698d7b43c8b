//! The binary as a user runs it: `review`, `crds` and `certs`.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::path::Path;
use std::process::{Command, Output};

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
        ("a: 1\n---\nb: 2\n", "holds 2 documents"),
        ("spec: {}\n", "has no kind"),
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
}

#[test]
fn readme_command_reference_matches_the_binary() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    for command in ["serve", "review", "certs", "crds", "probe", "audit"] {
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
            .stderr(std::process::Stdio::null())
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
