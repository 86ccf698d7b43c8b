//! The release artifacts agree on one version, the crate's (Cargo.toml): what
//! `savepoint-webhook --version` prints, the image tag of `deploy/base` (its `images:`
//! and the Deployment's image), the chart's `version`, `appVersion` and default image
//! tag, the image `deploy/release/install.yaml` runs, and every `savepoint-webhook:X.Y.Z`
//! the docs and the Dockerfile name. With `e2e` (which needs a current `kubectl`, as
//! `tests/deploy.rs` does): the committed `deploy/release/install.yaml` is byte for byte
//! what `deploy/release.sh manifest` renders now.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const INSTALL: &str = "deploy/release/install.yaml";

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

fn yaml(relative: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} does not parse: {e}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The image of the one container of the Deployment in `docs`.
fn deployment_image(docs: &[Value]) -> &str {
    let deployments: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 1);
    deployments[0]["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
}

#[test]
fn every_artifact_names_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_savepoint-webhook"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("savepoint-webhook {VERSION}"),
        "--version"
    );

    let image = format!("savepoint-webhook:{VERSION}");
    let kustomization = &yaml("deploy/base/kustomization.yaml")[0];
    let images = kustomization["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["name"], "savepoint-webhook");
    assert_eq!(images[0]["newTag"], VERSION, "deploy/base images: newTag");
    assert_eq!(
        deployment_image(&yaml("deploy/base/deployment.yaml")),
        image,
        "deploy/base/deployment.yaml"
    );

    let chart = &yaml("deploy/chart/savepoint-webhook/Chart.yaml")[0];
    assert_eq!(chart["version"], VERSION, "Chart.yaml version");
    assert_eq!(chart["appVersion"], VERSION, "Chart.yaml appVersion");
    let values = &yaml("deploy/chart/savepoint-webhook/values.yaml")[0];
    assert_eq!(
        values["image"]["tag"], "",
        "values.yaml image.tag stays empty: the default tag is appVersion"
    );
    assert!(
        read("deploy/chart/savepoint-webhook/templates/deployment.yaml")
            .contains(r#"image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}""#),
        "the chart's image tag defaults to appVersion"
    );

    let install = yaml(INSTALL);
    assert_eq!(deployment_image(&install), image, "{INSTALL}");
    assert!(
        read(INSTALL).starts_with(&format!("# savepoint-webhook {VERSION}:")),
        "{INSTALL} names its version"
    );

    for doc in ["README.md", "certs/README.md", "deploy/Dockerfile"] {
        let text = read(doc);
        let named: Vec<&str> = text
            .match_indices("savepoint-webhook:")
            .map(|(at, prefix)| {
                let rest = &text[at + prefix.len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .filter(|tag| tag.contains('.'))
            .collect();
        assert!(
            named.iter().all(|tag| *tag == VERSION),
            "{doc} names image tags {named:?}, not only {VERSION}"
        );
    }
}

/// The committed release manifest is what `deploy/release.sh manifest` renders now, so it
/// never drifts from `deploy/`.
#[cfg(feature = "e2e")]
#[test]
fn install_yaml_is_a_fresh_render() {
    let kubectl = std::env::var("SAVEPOINT_WEBHOOK_KUBECTL")
        .ok()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "kubectl".into());
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("install.yaml");
    let out = Command::new("sh")
        .arg(Path::new(ROOT).join("deploy/release.sh"))
        .arg("manifest")
        .arg(&fresh)
        .env("KUBECTL", &kubectl)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy/release.sh manifest failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_to_string(&fresh).unwrap() == read(INSTALL),
        "{INSTALL} differs from a fresh render: run deploy/release.sh manifest and commit it"
    );
}
