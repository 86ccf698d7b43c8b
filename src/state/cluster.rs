//! The cluster state source: list-then-watch of Savepoints and Deployments (paginated
//! lists, as a 1.20 API server supports) feeding the index: [`run`].

use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::index::{DeploymentFacts, Index, SavepointFacts};
use crate::readiness::Readiness;
use crate::resources::{Deployment, Savepoint};

/// Objects per page of the initial list, so memory stays bounded while syncing.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// How one kind feeds the index.
trait Feed {
    type Facts;
    const KIND: &'static str;
    fn resource() -> ApiResource;
    fn extract(object: &DynamicObject) -> Option<Self::Facts>;
    fn apply(index: &mut Index, facts: Self::Facts);
    fn delete(index: &mut Index, namespace: &str, name: &str);
    fn reset(index: &mut Index, all: Vec<Self::Facts>);
    fn synced(readiness: &Readiness);
}

fn namespace_and_name(object: &DynamicObject) -> Option<(&str, &str)> {
    Some((
        object.metadata.namespace.as_deref()?,
        object.metadata.name.as_deref()?,
    ))
}

struct Savepoints;

impl Feed for Savepoints {
    type Facts = SavepointFacts;
    const KIND: &'static str = "Savepoint";
    fn resource() -> ApiResource {
        ApiResource::erase::<Savepoint>(&())
    }
    fn extract(object: &DynamicObject) -> Option<SavepointFacts> {
        let (namespace, name) = namespace_and_name(object)?;
        SavepointFacts::from_parts(namespace, name, object.data.get("spec"))
    }
    fn apply(index: &mut Index, facts: SavepointFacts) {
        index.apply_savepoint(&facts);
    }
    fn delete(index: &mut Index, namespace: &str, name: &str) {
        index.delete_savepoint(namespace, name);
    }
    fn reset(index: &mut Index, all: Vec<SavepointFacts>) {
        index.reset_savepoints(&all);
    }
    fn synced(readiness: &Readiness) {
        readiness.savepoints_synced();
    }
}

struct Deployments;

impl Feed for Deployments {
    type Facts = DeploymentFacts;
    const KIND: &'static str = "Deployment";
    fn resource() -> ApiResource {
        ApiResource::erase::<Deployment>(&())
    }
    fn extract(object: &DynamicObject) -> Option<DeploymentFacts> {
        let (namespace, name) = namespace_and_name(object)?;
        Some(DeploymentFacts::from_parts(
            namespace,
            name,
            object.metadata.uid.as_deref()?,
            object.metadata.annotations.as_ref(),
            object.data.get("spec"),
        ))
    }
    fn apply(index: &mut Index, facts: DeploymentFacts) {
        index.apply_deployment(facts);
    }
    fn delete(index: &mut Index, namespace: &str, name: &str) {
        index.delete_deployment(namespace, name);
    }
    fn reset(index: &mut Index, all: Vec<DeploymentFacts>) {
        index.reset_deployments(all);
    }
    fn synced(readiness: &Readiness) {
        readiness.deployments_synced();
    }
}

/// Watches Savepoints and Deployments in all namespaces until the process stops,
/// re-listing (and resetting the index) whenever the watch cannot resume.
pub async fn run(
    client: Client,
    index: Arc<RwLock<Index>>,
    readiness: Arc<Readiness>,
    page_size: u32,
) {
    tokio::join!(
        watch::<Savepoints>(client.clone(), index.clone(), readiness.clone(), page_size),
        watch::<Deployments>(client, index, readiness, page_size),
    );
}

async fn watch<F: Feed>(
    client: Client,
    index: Arc<RwLock<Index>>,
    readiness: Arc<Readiness>,
    page_size: u32,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &F::resource());
    let config = watcher::Config::default().page_size(page_size);
    let events = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(events);
    let mut listing: Vec<F::Facts> = Vec::new();
    let write = || index.write().unwrap_or_else(|p| p.into_inner());
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(object)) => listing.extend(F::extract(&object)),
            Ok(Event::InitDone) => {
                let count = listing.len();
                F::reset(&mut write(), std::mem::take(&mut listing));
                F::synced(&readiness);
                tracing::info!(kind = F::KIND, count, "synced");
            }
            Ok(Event::Apply(object)) => {
                if let Some(facts) = F::extract(&object) {
                    F::apply(&mut write(), facts);
                }
            }
            Ok(Event::Delete(object)) => {
                if let Some((namespace, name)) = namespace_and_name(&object) {
                    F::delete(&mut write(), namespace, name);
                }
            }
            Err(err) => {
                tracing::warn!(kind = F::KIND, error = %err, "watch failed; retrying with backoff")
            }
        }
    }
}
