//! `deploy/crds/` holds exactly what the Rust types generate, one CRD per file.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Checks that `deploy/crds/<dir>` holds `<plural>.yaml` for each of `crds`, equal to what
/// `command` prints, and no other file.
fn check_stored(dir: &str, crds: &[CustomResourceDefinition], command: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
    let mut expected = Vec::new();
    for crd in crds {
        let file = format!("{dir}{}.yaml", crd.spec.names.plural);
        let generated = savepoint_webhook::resources::to_yaml(std::slice::from_ref(crd)).unwrap();
        let stored = std::fs::read_to_string(root.join(&file))
            .unwrap_or_else(|e| panic!("deploy/crds/{file}: {e}"));
        let only = &crd.spec.names.plural;
        assert!(
            stored == generated,
            "deploy/crds/{file} differs from the types; regenerate it with \
             `cargo run -- {command} --only {only} > deploy/crds/{file}`"
        );
        expected.push(file);
    }
    let mut files: Vec<String> = std::fs::read_dir(root.join(dir))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| format!("{dir}{}", e.file_name().to_string_lossy()))
        .collect();
    files.sort();
    expected.sort();
    assert_eq!(
        files, expected,
        "deploy/crds/{dir} holds exactly these files"
    );
}

#[test]
fn deploy_crds_match_the_generated_ones() {
    check_stored("", &savepoint_webhook::resources::crds(), "crds");
}

/// Only the Savepoint CRD has rules as CEL: the Deployment CRD is the same either way
/// (the next test), so `deploy/crds/deployments.yaml` serves both.
#[test]
fn deploy_crds_with_cel_match_the_generated_ones() {
    let crds = savepoint_webhook::resources::crds_with_cel(&Default::default());
    check_stored("cel/", &crds[..1], "crds --cel");
}

#[test]
fn the_cel_crds_differ_from_the_plain_ones_only_in_the_savepoint_spec_rules() {
    let mut cel = savepoint_webhook::resources::crds_with_cel(&Default::default());
    let plain = savepoint_webhook::resources::crds();
    let spec = cel[0].spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .and_then(|s| s.properties.as_mut())
        .and_then(|p| p.get_mut("spec"))
        .unwrap();
    assert!(
        spec.x_kubernetes_validations
            .take()
            .is_some_and(|v| !v.is_empty())
    );
    for property in spec.properties.iter_mut().flat_map(|p| p.values_mut()) {
        property.max_length = None;
    }
    assert_eq!(cel, plain);
}

#[test]
fn crds_are_structural_for_old_api_servers() {
    let yaml = savepoint_webhook::resources::crds_yaml().expect("CRDs render");
    assert!(
        !yaml.contains("- null"),
        "an enum still lists null:\n{yaml}"
    );
    let crds = savepoint_webhook::resources::crds();
    let savepoint = &crds[0];
    assert_eq!(savepoint.spec.names.kind, "Savepoint");
    assert!(
        savepoint
            .spec
            .versions
            .iter()
            .all(|v| v.subresources.is_none()),
        "Savepoint must have no status subresource"
    );
    let columns: Vec<_> = savepoint.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.json_path.as_str())
        .collect();
    for path in [
        ".spec.savepointLocation",
        ".spec.origin",
        ".status.state",
        ".spec.deploymentName",
    ] {
        assert!(columns.contains(&path), "missing printer column {path}");
    }
}
