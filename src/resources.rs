//! The custom resources: [`Savepoint`] and [`Deployment`] of `appmanager.dataartisans.com/v1`,
//! and [`crds`], which renders their CustomResourceDefinitions for API servers back to 1.20.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, ValidationRule,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::LocationRules;
pub use crate::domain::names::{GROUP, SAVEPOINTS_DIR_KEY, SPEC_VERSION_ANNOTATION, VERSION};
use crate::domain::schema_rules::{DNS_SUBDOMAIN_MAX, UUID_FIELDS, spec_validations};
pub use crate::domain::{FormatType, Origin, RestoreKind, SavepointState, SnapshotType};

/// A pointer to one Flink savepoint or retained checkpoint, usable to restore a Deployment.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "appmanager.dataartisans.com",
    version = "v1",
    kind = "Savepoint",
    namespaced,
    status = "SavepointStatus",
    shortname = "sp",
    printcolumn = r#"{"name":"Location","type":"string","jsonPath":".spec.savepointLocation"}"#,
    printcolumn = r#"{"name":"Origin","type":"string","jsonPath":".spec.origin"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Deployment","type":"string","jsonPath":".spec.deploymentName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SavepointSpec {
    /// `metadata.uid` of the Deployment this Savepoint belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "uuid"))]
    pub deployment_id: Option<String>,
    /// Name of the Deployment this Savepoint belongs to, in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// How the snapshot came to be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Absolute URI of the savepoint or retained checkpoint directory.
    #[schemars(url)]
    pub savepoint_location: String,
    /// Flink's id of the savepoint; the nil UUID for snapshots the platform did not take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "uuid"))]
    pub flink_savepoint_id: Option<String>,
    /// Id of the Flink job that wrote the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "uuid"))]
    pub job_id: Option<String>,
    /// Kind of snapshot.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<SnapshotType>,
    /// Flink's on-disk format of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_format_type: Option<FormatType>,
}

/// Observed state of a Savepoint; manually added ones are created `COMPLETED`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SavepointStatus {
    /// Lifecycle state; the platform restores only from `COMPLETED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SavepointState>,
}

/// A Flink application managed by the platform. Only the fields the webhook reads are typed;
/// everything else under `spec` is preserved by the API server and ignored here.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "appmanager.dataartisans.com",
    version = "v1",
    kind = "Deployment",
    namespaced,
    shortname = "vvpdep",
    printcolumn = r#"{"name":"Restore","type":"string","jsonPath":".spec.restoreStrategy.kind"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct DeploymentSpec {
    /// Which Savepoint a (re)start restores from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_strategy: Option<RestoreStrategy>,
    /// The template of the Flink job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<DeploymentTemplate>,
}

/// Restore strategy of a Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct RestoreStrategy {
    /// `NONE`, `LATEST_SAVEPOINT` or `LATEST_STATE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RestoreKind>,
}

/// Template of a Deployment's Flink job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct DeploymentTemplate {
    /// The job's spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<DeploymentTemplateSpec>,
}

/// The part of a job spec the webhook reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct DeploymentTemplateSpec {
    /// The job's artifact; the webhook reads its Flink version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// Flink configuration; the webhook reads the savepoint directory and the claim mode
    /// under the keys the artifact's Flink version reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flink_configuration: Option<BTreeMap<String, String>>,
}

/// The artifact of a Deployment's job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct Artifact {
    /// The Flink release the job runs on, `MAJOR.MINOR` (e.g. `"1.20"`, `"2.2"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flink_version: Option<String>,
}

/// Both CRDs, made structural for API servers back to 1.20 and with no status subresource
/// on Savepoint (manually added Savepoints are created with their status, as in the product).
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    let mut savepoint = Savepoint::crd();
    for version in &mut savepoint.spec.versions {
        version.subresources = None;
    }
    [savepoint, Deployment::crd()]
        .into_iter()
        .map(make_structural_for_old_servers)
        .collect()
}

/// Both CRDs as [`crds`] makes them, with the Savepoint's field rules that need no other
/// object as CEL on its `spec` (see [`crate::domain::schema_rules`]) and length bounds on
/// the strings they read (the API server's CEL cost estimate needs them), for API servers
/// from 1.25; the Savepoint CRD is written to `deploy/crds/cel/`.
pub fn crds_with_cel(locations: &LocationRules) -> Vec<CustomResourceDefinition> {
    let mut crds = crds();
    for version in crds[0].spec.versions.iter_mut() {
        let Some(spec) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
        else {
            continue;
        };
        let properties = spec.properties.get_or_insert_with(Default::default);
        let mut bound = |field: &str, max: usize| {
            if let Some(property) = properties.get_mut(field) {
                property.max_length = Some(i64::try_from(max).unwrap_or(i64::MAX));
            }
        };
        bound("savepointLocation", locations.max_len);
        bound("deploymentName", DNS_SUBDOMAIN_MAX);
        for (field, _) in UUID_FIELDS {
            bound(field, 36);
        }
        spec.x_kubernetes_validations = Some(
            spec_validations(locations)
                .into_iter()
                .map(|v| ValidationRule {
                    rule: v.rule,
                    message: Some(v.message),
                    field_path: Some(v.field_path),
                    ..ValidationRule::default()
                })
                .collect(),
        );
    }
    crds
}

/// CRDs as one multi-document YAML stream.
pub fn to_yaml(
    crds: &[CustomResourceDefinition],
) -> Result<String, serde_saphyr::ser_error::Error> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(crd)?);
    }
    Ok(out)
}

/// All CRDs as one multi-document YAML stream; `deploy/crds/` holds each in a file of its own.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

/// Removes `null` from every `enum` list: schemars emits it for `Option<enum>`, and API
/// servers before 1.23 refuse such a schema as non-structural.
fn make_structural_for_old_servers(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn strip_null_enums(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(options)) = map.get_mut("enum") {
                    options.retain(|option| !option.is_null());
                }
                map.values_mut().for_each(strip_null_enums);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_null_enums),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(&crd).expect("a CRD always serializes");
    strip_null_enums(&mut json);
    serde_json::from_value(json).expect("removing enum entries keeps a valid CRD")
}
