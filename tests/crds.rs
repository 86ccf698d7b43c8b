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
fn deploy_crds_with_cel_match_the_generated_ones() {
    let crds = savepoint_webhook::resources::crds_with_cel(&Default::default());
    let generated = savepoint_webhook::resources::to_yaml(&crds).expect("CRDs render");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crds/cel/crds.yaml");
    let stored = std::fs::read_to_string(path).expect("deploy/crds/cel/crds.yaml exists");
    assert!(
        stored == generated,
        "deploy/crds/cel/crds.yaml differs from the rules; regenerate it with `cargo run -- crds --cel > deploy/crds/cel/crds.yaml`"
    );
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
