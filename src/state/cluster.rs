//! The cluster state source: watches of Savepoints and Deployments feeding the index:
//! [`run`]. The initial state comes from a streaming list where the API server serves one
//! (`sendInitialEvents`, 1.32 and later unless its WatchList gate is off) and from
//! paginated lists elsewhere, as a 1.20 API server supports: [`InitialList`].

use std::sync::Arc;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::index::records::{self, RecordMap};
use crate::index::{DeploymentFacts, RecordStore, SavepointRecord, Store};
use crate::readiness::Readiness;
use crate::resources::{Deployment, Savepoint};

/// Objects per page of the initial list, so memory stays bounded while syncing.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// Where watched objects go: the admission index, and the reconciler's records.
#[derive(Clone)]
pub struct Sinks {
    /// The admission index.
    pub store: Arc<Store>,
    /// Stored Savepoints for the reconciler and the audit gauge.
    pub records: RecordStore,
    /// Marked synced after each kind's first full list.
    pub readiness: Arc<Readiness>,
}

/// How one kind feeds the sinks.
trait Feed {
    /// What is kept of one object.
    type Facts;
    /// What a full list accumulates, page by page, before it replaces the sinks' content.
    type Listing: Default;
    const KIND: &'static str;
    fn resource() -> ApiResource;
    fn extract(object: &DynamicObject) -> Option<Self::Facts>;
    fn list(listing: &mut Self::Listing, facts: Self::Facts);
    fn apply(sinks: &Sinks, facts: Self::Facts);
    fn delete(sinks: &Sinks, namespace: &str, name: &str);
    fn reset(sinks: &Sinks, listing: Self::Listing);
    fn synced(readiness: &Readiness);
}

fn namespace_and_name(object: &DynamicObject) -> Option<(&str, &str)> {
    Some((
        object.metadata.namespace.as_deref()?,
        object.metadata.name.as_deref()?,
    ))
}

struct Savepoints;

/// Savepoints keep one record each while listing, from which the index is built at the
/// end: a list holds no second copy of what the index keeps.
impl Feed for Savepoints {
    type Facts = SavepointRecord;
    type Listing = RecordMap;
    const KIND: &'static str = "Savepoint";
    fn resource() -> ApiResource {
        ApiResource::erase::<Savepoint>(&())
    }
    fn extract(object: &DynamicObject) -> Option<SavepointRecord> {
        namespace_and_name(object)?;
        SavepointRecord::from_parts(&object.metadata, &object.data)
    }
    fn list(listing: &mut RecordMap, record: SavepointRecord) {
        records::insert(listing, record);
    }
    fn apply(sinks: &Sinks, record: SavepointRecord) {
        match record.facts() {
            Some(facts) => sinks.store.apply_savepoint(&facts),
            None => sinks
                .store
                .delete_savepoint(&record.namespace, &record.name),
        }
        sinks.records.apply(record);
    }
    fn delete(sinks: &Sinks, namespace: &str, name: &str) {
        sinks.store.delete_savepoint(namespace, name);
        sinks.records.delete(namespace, name);
    }
    fn reset(sinks: &Sinks, listing: RecordMap) {
        sinks
            .store
            .reset_savepoints(listing.values().filter_map(SavepointRecord::facts));
        sinks.records.replace(listing);
    }
    fn synced(readiness: &Readiness) {
        readiness.savepoints_synced();
    }
}

struct Deployments;

impl Feed for Deployments {
    type Facts = DeploymentFacts;
    type Listing = Vec<DeploymentFacts>;
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
    fn list(listing: &mut Vec<DeploymentFacts>, facts: DeploymentFacts) {
        listing.push(facts);
    }
    fn apply(sinks: &Sinks, facts: DeploymentFacts) {
        sinks.store.apply_deployment(facts);
    }
    fn delete(sinks: &Sinks, namespace: &str, name: &str) {
        sinks.store.delete_deployment(namespace, name);
    }
    fn reset(sinks: &Sinks, listing: Vec<DeploymentFacts>) {
        sinks.store.reset_deployments(listing);
    }
    fn synced(readiness: &Readiness) {
        readiness.deployments_synced();
    }
}

/// How a watch reads the state it starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialList {
    /// The initial events of the watch itself (`sendInitialEvents=true`).
    Streaming,
    /// Paginated lists of this many objects, then a watch.
    Paged(u32),
}

/// First minor version whose API server serves streaming lists by default (WatchList
/// beta); 1.33 turned the gate off again, which the fallback of [`run`] covers.
const STREAMING_SINCE_MINOR: u32 = 32;

impl InitialList {
    /// Streaming lists on servers that serve them by default, paged lists elsewhere or
    /// when the version cannot be read.
    pub async fn for_server(client: &Client, page_size: u32) -> Self {
        match client.apiserver_version().await {
            Ok(info) => {
                let minor: u32 = info
                    .minor
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap_or(0);
                let mode = if info.major == "1" && minor >= STREAMING_SINCE_MINOR {
                    InitialList::Streaming
                } else {
                    InitialList::Paged(page_size)
                };
                tracing::info!(version = %info.git_version, initial_list = ?mode, "API server version read");
                mode
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the API server's version; initial state from paged lists");
                InitialList::Paged(page_size)
            }
        }
    }

    fn config(self) -> watcher::Config {
        match self {
            InitialList::Streaming => watcher::Config::default().streaming_lists(),
            InitialList::Paged(page_size) => watcher::Config::default().page_size(page_size),
        }
    }
}

/// Whether the API server refused a streaming list as a request it does not serve (its
/// WatchList gate is off: 400 or 422), rather than failing for a passing reason.
fn refuses_streaming(err: &watcher::Error) -> bool {
    let code = match err {
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code,
        watcher::Error::WatchError(status) => status.code,
        _ => return false,
    };
    matches!(code, 400 | 422)
}

/// Watches Savepoints and Deployments in all namespaces until the process stops,
/// re-reading the state (and resetting the sinks) whenever the watch cannot resume.
pub async fn run(client: Client, sinks: Sinks, page_size: u32) {
    let initial = InitialList::for_server(&client, page_size).await;
    tokio::join!(
        watch::<Savepoints>(client.clone(), sinks.clone(), initial, page_size),
        watch::<Deployments>(client, sinks, initial, page_size),
    );
}

/// One kind's watch; a streaming list the server refuses falls back to paged lists.
async fn watch<F: Feed>(client: Client, sinks: Sinks, initial: InitialList, page_size: u32) {
    let api: Api<DynamicObject> = Api::all_with(client, &F::resource());
    let mut initial = initial;
    loop {
        match watch_with::<F>(&api, &sinks, initial).await {
            Fallback::ToPaged => {
                tracing::warn!(
                    kind = F::KIND,
                    "the API server refuses streaming lists; reading the state from paged lists"
                );
                initial = InitialList::Paged(page_size);
            }
            Fallback::Ended => return,
        }
    }
}

/// Why [`watch_with`] returned.
enum Fallback {
    /// The streaming list was refused before the first sync.
    ToPaged,
    /// The event stream ended.
    Ended,
}

async fn watch_with<F: Feed>(
    api: &Api<DynamicObject>,
    sinks: &Sinks,
    initial: InitialList,
) -> Fallback {
    let events = watcher::watcher(api.clone(), initial.config()).default_backoff();
    futures::pin_mut!(events);
    let mut listing = F::Listing::default();
    let mut count = 0;
    let mut synced = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => (listing, count) = (F::Listing::default(), 0),
            Ok(Event::InitApply(object)) => {
                if let Some(facts) = F::extract(&object) {
                    F::list(&mut listing, facts);
                    count += 1;
                }
            }
            Ok(Event::InitDone) => {
                F::reset(sinks, std::mem::take(&mut listing));
                F::synced(&sinks.readiness);
                synced = true;
                tracing::info!(kind = F::KIND, count, initial_list = ?initial, "synced");
            }
            Ok(Event::Apply(object)) => {
                if let Some(facts) = F::extract(&object) {
                    F::apply(sinks, facts);
                }
            }
            Ok(Event::Delete(object)) => {
                if let Some((namespace, name)) = namespace_and_name(&object) {
                    F::delete(sinks, namespace, name);
                }
            }
            Err(err) if !synced && initial == InitialList::Streaming && refuses_streaming(&err) => {
                tracing::warn!(kind = F::KIND, error = %err, "streaming list refused");
                return Fallback::ToPaged;
            }
            Err(err) => {
                tracing::warn!(kind = F::KIND, error = %err, "watch failed; retrying with backoff")
            }
        }
    }
    Fallback::Ended
}
