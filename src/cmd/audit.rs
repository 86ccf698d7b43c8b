//! `audit`: list every stored Savepoint that breaks a rule or would warn at admission,
//! from the cluster (paginated lists) or a state directory; with `--verify-location`, also
//! read each one's snapshot fully; with `--report`, also write the findings as
//! `openreports.io` Reports.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli::{AuditArgs, OutputFormat, print_out};
use crate::domain::{Location, LocationRules};
use crate::index::SavepointRecord;
use crate::index::{DeploymentFacts, Index};
use crate::reconcile::plan::{Finding, Plan, Rule, count_by_rule, plan};
use crate::reconcile::publish::ReportWriter;
use crate::reconcile::report::Limits;
use crate::resources::{Deployment, Savepoint};
use crate::state::dir::{derived_uid, kind_of, read_manifests};
use crate::verify::findings::declared_findings;
use crate::verify::{Declared, Nature, Outcome, Severity, Verifier};

/// Objects per page when listing from the cluster.
const PAGE_SIZE: u32 = 500;

async fn list_all(api: &Api<DynamicObject>) -> anyhow::Result<Vec<DynamicObject>> {
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// The client of `--kubeconfig` and `--context`; without either, the usual search
/// (KUBECONFIG, ~/.kube/config, in-cluster).
async fn client(args: &AuditArgs) -> anyhow::Result<kube::Client> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("unusable --kubeconfig {}", path.display()))?
        }
        (None, Some(context)) => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("unusable --context {context}"))?,
        (None, None) => kube::Config::infer().await.context(
            "no Kubernetes configuration found; use --state DIR to audit manifests offline",
        )?,
    };
    kube::Client::try_from(config).context("cannot build a Kubernetes client")
}

/// All objects of `resource`, or those of `namespace`.
fn api(
    client: kube::Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, resource),
        None => Api::all_with(client, resource),
    }
}

async fn from_cluster(
    client: kube::Client,
    args: &AuditArgs,
    index: &mut Index,
) -> anyhow::Result<Vec<SavepointRecord>> {
    let namespace = args.namespace.as_deref();
    let deployments = api(
        client.clone(),
        namespace,
        &ApiResource::erase::<Deployment>(&()),
    );
    let facts = list_all(&deployments)
        .await
        .context("listing Deployments")?
        .into_iter()
        .filter_map(|d| {
            Some(DeploymentFacts::from_parts(
                d.metadata.namespace.as_deref()?,
                d.metadata.name.as_deref()?,
                d.metadata.uid.as_deref()?,
                d.metadata.annotations.as_ref(),
                d.data.get("spec"),
            ))
        });
    index.reset_deployments(facts);
    let savepoints = api(client, namespace, &ApiResource::erase::<Savepoint>(&()));
    Ok(list_all(&savepoints)
        .await
        .context("listing Savepoints")?
        .iter()
        .filter_map(|s| SavepointRecord::from_parts(&s.metadata, &s.data))
        .collect())
}

fn from_dir(dir: &Path, index: &mut Index) -> anyhow::Result<Vec<SavepointRecord>> {
    let mut deployments = Vec::new();
    let mut records = Vec::new();
    for (_, documents) in read_manifests(dir)? {
        for document in &documents {
            match kind_of(document) {
                Some("Deployment") => {
                    deployments.extend(DeploymentFacts::from_manifest(document, derived_uid))
                }
                Some(_) => records.extend(SavepointRecord::from_object(document)),
                None => {}
            }
        }
    }
    index.reset_deployments(deployments);
    Ok(records)
}

fn table(plan: &Plan) -> String {
    if plan.findings.is_empty() {
        return "no findings: every Savepoint follows the rules\n".into();
    }
    let width = plan
        .findings
        .iter()
        .map(|f| f.namespace.len() + f.name.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = format!("{:<28} {:<width$} MESSAGE\n", "RULE", "SAVEPOINT");
    for finding in &plan.findings {
        let who = format!("{}/{}", finding.namespace, finding.name);
        let _ = writeln!(
            out,
            "{:<28} {who:<width$} {}",
            finding.rule.as_str(),
            finding.message
        );
    }
    let repairable = plan.repairs.len();
    let _ = writeln!(
        out,
        "\n{} finding(s); {repairable} Savepoint(s) the reconciler would repair",
        plan.findings.len()
    );
    out
}

/// Savepoints whose snapshot a restore would fail from, read fully a few at a time:
/// nothing at the location, not Flink's, files missing, damaged, or not what the
/// Savepoint says. "Could not check" and warnings are left to admission.
async fn snapshot_findings(
    verifier: &Verifier,
    records: &[SavepointRecord],
    rules: &LocationRules,
) -> Vec<Finding> {
    let checks = records.iter().filter_map(|record| {
        let location = Location::parse(record.location.as_deref()?, rules).ok()?;
        Some(async move {
            let inspection = verifier.inspect(&location, rules).await;
            let shown = location.to_string();
            let mut messages = Vec::new();
            match &inspection.outcome {
                Outcome::Verified { .. } => {
                    let nature = inspection
                        .snapshot
                        .as_ref()
                        .map(Nature::of)
                        .unwrap_or_default();
                    let declared = Declared {
                        origin: record.origin,
                        ..Declared::default()
                    };
                    let mut found = inspection.findings.clone();
                    found.extend(declared_findings(&nature, &declared));
                    messages.extend(
                        found
                            .iter()
                            .filter(|f| f.severity() == Severity::Error)
                            .map(|f| f.answer(&shown)),
                    );
                }
                Outcome::CouldNotCheck { .. } => {}
                other => messages.push(format!(
                    "spec.savepointLocation: {}",
                    other.describe(&shown)
                )),
            }
            messages
                .into_iter()
                .map(|message| Finding {
                    rule: Rule::UnrestorableSnapshot,
                    namespace: record.namespace.clone(),
                    name: record.name.clone(),
                    message,
                })
                .collect::<Vec<_>>()
        })
    });
    futures::stream::iter(checks)
        .buffer_unordered(SNAPSHOT_READS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Snapshots `audit` reads at once.
const SNAPSHOT_READS: usize = 8;

/// Runs `audit`; `Ok(true)` when nothing was found.
pub async fn run(args: &AuditArgs) -> anyhow::Result<bool> {
    let policy = args.policy.policy()?;
    let mut index = Index::new(policy.locations.clone());
    let (mut records, client) = match &args.state {
        Some(dir) => (from_dir(dir, &mut index)?, None),
        None => {
            let client = client(args).await?;
            let records = from_cluster(client.clone(), args, &mut index).await?;
            (records, Some(client))
        }
    };
    if let Some(namespace) = &args.namespace {
        records.retain(|record| &record.namespace == namespace);
    }
    records.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut plan = plan(&records, &index, &policy);
    if let Some(verifier) = args.verify.verifier()? {
        plan.findings
            .extend(snapshot_findings(&verifier, &records, &policy.locations).await);
        plan.findings
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    }
    let text = match args.output {
        OutputFormat::Table => table(&plan),
        OutputFormat::Json => {
            let counts: serde_json::Map<String, serde_json::Value> = count_by_rule(&plan.findings)
                .into_iter()
                .map(|(rule, count)| (rule.as_str().to_string(), count.into()))
                .collect();
            let out = serde_json::json!({
                "savepoints": records.len(),
                "findings": plan.findings,
                "countsByRule": counts,
                "repairable": plan.repairs.len(),
            });
            serde_json::to_string_pretty(&out)? + "\n"
        }
    };
    print_out(&text)?;
    if let (true, Some(client)) = (args.report, client) {
        let limits = Limits {
            max_results: args.report_max_results,
        };
        let published = ReportWriter::new(client, limits)
            .publish(&records, &plan.findings, args.namespace.as_deref())
            .await?;
        eprintln!(
            "reports: {} written, {} unchanged, {} deleted, {} failed",
            published.applied, published.unchanged, published.deleted, published.failed
        );
        if published.failed > 0 {
            anyhow::bail!("{} report write(s) failed", published.failed);
        }
    }
    Ok(plan.findings.is_empty())
}
