//! Writing the Reports of [`super::report`]: [`ReportWriter::publish`] lists the reports
//! this program manages, applies (server-side, field manager [`SOURCE`]) each one whose
//! content changed, and deletes those of namespaces that no longer have Savepoints.

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;

use super::metrics::{ReportMetrics, ReportWriteLabels};
use super::plan::Finding;
use super::report::{
    self, FirstSeen, Limits, MANAGED_BY_LABEL, REPORT_GROUP, REPORT_KIND, REPORT_NAME,
    REPORT_PLURAL, REPORT_VERSION, SOURCE, Timestamp,
};
use crate::index::SavepointRecord;

/// Reports written or deleted at once.
const CONCURRENT_WRITES: usize = 4;

/// Why no report could be written.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The API server does not serve `openreports.io/v1alpha1` Reports.
    #[error(
        "the API server does not serve {REPORT_PLURAL}.{REPORT_GROUP}/{REPORT_VERSION}: install the openreports.io Report CRD first"
    )]
    NotInstalled(#[source] kube::Error),
    /// The stored reports could not be listed.
    #[error("cannot list the stored {REPORT_PLURAL}.{REPORT_GROUP}")]
    List(#[source] kube::Error),
}

/// What one [`ReportWriter::publish`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Reports applied (created or changed).
    pub applied: usize,
    /// Reports that already said the same.
    pub unchanged: usize,
    /// Reports of namespaces without Savepoints, deleted.
    pub deleted: usize,
    /// Writes or deletes the API server refused or did not answer.
    pub failed: usize,
}

/// Writes the Reports of the findings of one pass.
#[derive(Clone)]
pub struct ReportWriter {
    client: Client,
    limits: Limits,
    metrics: Option<ReportMetrics>,
}

enum Write {
    Applied,
    Unchanged,
    Deleted,
    Failed,
}

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(REPORT_GROUP, REPORT_VERSION, REPORT_KIND),
        REPORT_PLURAL,
    )
}

impl ReportWriter {
    /// A writer through `client`, reports bounded by `limits`.
    pub fn new(client: Client, limits: Limits) -> Self {
        Self {
            client,
            limits,
            metrics: None,
        }
    }

    /// Counts every write in `metrics`.
    pub fn with_metrics(mut self, metrics: ReportMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn api(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource()),
            None => Api::all_with(self.client.clone(), &resource()),
        }
    }

    /// Makes the stored reports say what `findings` about `savepoints` say: of every
    /// namespace, or with `only`, of that namespace alone.
    pub async fn publish(
        &self,
        savepoints: &[SavepointRecord],
        findings: &[Finding],
        only: Option<&str>,
    ) -> Result<Published, PublishError> {
        let params = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={SOURCE}"));
        let stored: Vec<serde_json::Value> = match self.api(only).list(&params).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|r| r.metadata.name.as_deref() == Some(REPORT_NAME))
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(PublishError::NotInstalled(kube::Error::Api(status)));
            }
            Err(err) => return Err(PublishError::List(err)),
        };
        let desired = report::build(
            savepoints,
            findings,
            &FirstSeen::from_stored(&stored),
            Timestamp::now(),
            self.limits,
        );
        let namespace_of = |value: &serde_json::Value| {
            value["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let stale = report::stale(
            stored
                .iter()
                .map(|v| v["metadata"]["namespace"].as_str().unwrap_or_default()),
            &desired,
            only,
        );
        let mut writes: Vec<BoxFuture<'_, Write>> = Vec::new();
        for wanted in desired {
            let unchanged = stored
                .iter()
                .find(|v| namespace_of(v) == wanted.metadata.namespace)
                .is_some_and(|before| wanted.matches(before));
            writes.push(if unchanged {
                futures::future::ready(Write::Unchanged).boxed()
            } else {
                async move { self.apply(&wanted).await }.boxed()
            });
        }
        for namespace in stale {
            writes.push(async move { self.delete(&namespace).await }.boxed());
        }
        let writes: Vec<Write> = futures::stream::iter(writes)
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let mut out = Published::default();
        for write in writes {
            match write {
                Write::Applied => out.applied += 1,
                Write::Unchanged => out.unchanged += 1,
                Write::Deleted => out.deleted += 1,
                Write::Failed => out.failed += 1,
            }
        }
        Ok(out)
    }

    async fn apply(&self, wanted: &report::Report) -> Write {
        let namespace = &wanted.metadata.namespace;
        let result = match serde_json::to_value(wanted) {
            Ok(body) => self
                .api(Some(namespace))
                .patch(
                    REPORT_NAME,
                    &PatchParams::apply(SOURCE).force(),
                    &Patch::Apply(body),
                )
                .await
                .map(drop),
            Err(err) => Err(kube::Error::SerdeError(err)),
        };
        self.count("apply", result.is_ok());
        match result {
            Ok(()) => {
                tracing::info!(namespace = %namespace, fail = wanted.summary.fail, warn = wanted.summary.warn, pass = wanted.summary.pass, "report written");
                Write::Applied
            }
            Err(err) => {
                tracing::warn!(namespace = %namespace, error = %err, "cannot write the report");
                Write::Failed
            }
        }
    }

    async fn delete(&self, namespace: &str) -> Write {
        let result = self
            .api(Some(namespace))
            .delete(REPORT_NAME, &DeleteParams::default())
            .await;
        let ok = match &result {
            Ok(_) => true,
            Err(kube::Error::Api(status)) => status.code == 404,
            Err(_) => false,
        };
        self.count("delete", ok);
        if ok {
            tracing::info!(namespace = %namespace, "report deleted: no Savepoints left");
            Write::Deleted
        } else {
            tracing::warn!(namespace = %namespace, error = ?result.err(), "cannot delete the report");
            Write::Failed
        }
    }

    fn count(&self, operation: &'static str, ok: bool) {
        if let Some(metrics) = &self.metrics {
            metrics
                .writes
                .get_or_create(&ReportWriteLabels {
                    operation,
                    result: if ok { "ok" } else { "failed" },
                })
                .inc();
        }
    }
}
