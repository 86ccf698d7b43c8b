//! `deploy/crds/` holds exactly what the Rust types generate.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

#[test]
fn deploy_crds_match_the_generated_ones() {
    let generated = savepoint_webhook::resources::crds_yaml().expect("CRDs render");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crds/crds.yaml");
    let stored = std::fs::read_to_string(path).expect("deploy/crds/crds.yaml exists");
    assert!(
        stored == generated,
        "deploy/crds/crds.yaml differs from the types; regenerate it with `cargo run -- crds > deploy/crds/crds.yaml`"
    );
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
