//! In-memory indexes the decisions read: [`Index`], a state machine fed events
//! (`apply_*`, `delete_*`, `reset`) by a kube watch or a directory of manifests; it keeps
//! only what decisions need, never whole objects. Savepoints are kept compactly (see
//! [`savepoints`]): the index must hold a million of them in little memory. The
//! provisional holds of Savepoints admitted moments ago are a ledger of their own
//! ([`holds`]); [`Store`] owns both, each behind its own lock.

mod facts;
pub mod holds;
pub mod metrics;
pub mod records;
mod savepoints;
mod store;

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub use facts::SavepointFacts;
pub use holds::{HoldKind, HoldLedger, HoldLimits, TENTATIVE_TTL};
pub use records::{RecordStore, SavepointRecord};
use savepoints::Savepoints;
pub use store::Store;

pub use crate::domain::DeploymentFacts;
use crate::domain::{DeploymentLookup, LocationRules, NormalizedLocation};

/// Namespace and name of an object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace (interned).
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

/// Namespace and name, borrowed: maps keyed by [`ObjectKey`] are looked up with a pair of
/// `&str` without allocating a key.
trait KeyRef {
    fn parts(&self) -> (&str, &str);
}

impl KeyRef for ObjectKey {
    fn parts(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

impl KeyRef for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'a> Borrow<dyn KeyRef + 'a> for ObjectKey {
    fn borrow(&self) -> &(dyn KeyRef + 'a) {
        self
    }
}

impl Hash for dyn KeyRef + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn KeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyRef + '_ {}

impl Hash for ObjectKey {
    /// Hashes as its borrowed form, so lookups by `(&str, &str)` find it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn KeyRef).hash(state);
    }
}

impl ObjectKey {
    /// A key of `namespace/name` (not interned).
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a `generateName` create whose name the API server has not chosen yet:
    /// `prefix*ticket`, where `ticket` (the review's uid) keeps two concurrent creates of
    /// one prefix apart. `*` is in no valid name, so it never equals a stored key.
    pub fn generated(namespace: &str, prefix: &str, ticket: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: format!("{prefix}{GENERATED_MARK}{ticket}").into(),
        }
    }

    /// The prefix of a key made by [`ObjectKey::generated`].
    pub fn generated_prefix(&self) -> Option<&str> {
        self.name
            .split_once(GENERATED_MARK)
            .map(|(prefix, _)| prefix)
    }

    /// Whether this is the key of `namespace/name`.
    pub fn is(&self, namespace: &str, name: &str) -> bool {
        &*self.namespace == namespace && &*self.name == name
    }
}

/// Separates the prefix from the ticket in [`ObjectKey::generated`].
const GENERATED_MARK: char = '*';

impl std::fmt::Display for ObjectKey {
    /// `namespace/name`; `namespace/prefix*` for a name not generated yet.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.generated_prefix() {
            Some(prefix) => write!(f, "{}/{prefix}{GENERATED_MARK}", self.namespace),
            None => write!(f, "{}/{}", self.namespace, self.name),
        }
    }
}

/// Deployments by name and uid; Savepoints by normalized location.
#[derive(Clone, Debug)]
pub struct Index {
    rules: LocationRules,
    namespaces: HashSet<Arc<str>>,
    deployments: HashMap<ObjectKey, Arc<DeploymentFacts>>,
    deployment_uids: HashMap<Arc<str>, ObjectKey>,
    savepoints: Savepoints,
    unindexed_savepoints: HashSet<ObjectKey>,
}

/// Sizes of the indexes, read at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexSizes {
    /// Deployments indexed.
    pub deployments: usize,
    /// Savepoints indexed by location.
    pub savepoints: usize,
    /// Distinct normalized locations.
    pub locations: usize,
    /// Savepoints whose location could not be parsed.
    pub unindexed_savepoints: usize,
    /// Provisional holds not yet confirmed by the watch (filled in by [`Store::sizes`]).
    pub provisional: usize,
    /// Bytes the provisional holds account for (filled in by [`Store::sizes`]).
    pub provisional_bytes: usize,
    /// Provisional holds shed to stay within [`HoldLimits`] (filled in by [`Store::sizes`]).
    pub provisional_shed: u64,
}

impl Index {
    /// An empty index that parses locations with `rules`.
    pub fn new(rules: LocationRules) -> Self {
        Self {
            rules,
            namespaces: HashSet::new(),
            deployments: HashMap::new(),
            deployment_uids: HashMap::new(),
            savepoints: Savepoints::new(),
            unindexed_savepoints: HashSet::new(),
        }
    }

    /// The location rules this index normalizes with.
    pub fn rules(&self) -> &LocationRules {
        &self.rules
    }

    /// Builds a key, interning the namespace.
    pub fn key(&mut self, namespace: &str, name: &str) -> ObjectKey {
        let namespace = match self.namespaces.get(namespace) {
            Some(interned) => interned.clone(),
            None => {
                let interned: Arc<str> = namespace.into();
                self.namespaces.insert(interned.clone());
                interned
            }
        };
        ObjectKey {
            namespace,
            name: name.into(),
        }
    }

    /// Adds or replaces a Deployment.
    pub fn apply_deployment(&mut self, facts: DeploymentFacts) {
        let key = self.key(&facts.namespace, &facts.name);
        if let Some(old) = self.deployments.get(&key)
            && old.uid != facts.uid
        {
            self.deployment_uids.remove(old.uid.as_str());
        }
        self.deployment_uids
            .insert(facts.uid.as_str().into(), key.clone());
        self.deployments.insert(key, Arc::new(facts));
    }

    /// Removes a Deployment.
    pub fn delete_deployment(&mut self, namespace: &str, name: &str) {
        let key = self.key(namespace, name);
        if let Some(old) = self.deployments.remove(&key) {
            self.deployment_uids.remove(old.uid.as_str());
        }
    }

    /// Adds or replaces a Savepoint; returns the key and normalized location it is
    /// indexed under (`None` when its location cannot be parsed).
    pub fn apply_savepoint(
        &mut self,
        facts: &SavepointFacts,
    ) -> Option<(ObjectKey, NormalizedLocation)> {
        let (namespace, name) = (facts.namespace.as_str(), facts.name.as_str());
        let location = NormalizedLocation::parse(&facts.location, &self.rules).ok();
        if let Some(location) = &location
            && self.savepoints.location_of(namespace, name) == Some(location.as_str())
        {
            return None;
        }
        self.remove_savepoint(namespace, name);
        let key = self.key(namespace, name);
        let Some(location) = location else {
            self.unindexed_savepoints.insert(key);
            return None;
        };
        if !self.savepoints.insert(key.clone(), location.as_str()) {
            self.unindexed_savepoints.insert(key);
            return None;
        }
        Some((key, location))
    }

    /// Removes a Savepoint.
    pub fn delete_savepoint(&mut self, namespace: &str, name: &str) {
        self.remove_savepoint(namespace, name);
    }

    fn remove_savepoint(&mut self, namespace: &str, name: &str) {
        self.unindexed_savepoints
            .remove(&(namespace, name) as &dyn KeyRef);
        self.savepoints.remove(namespace, name);
    }

    /// Replaces all Deployments (after a full list).
    pub fn reset_deployments(&mut self, all: impl IntoIterator<Item = DeploymentFacts>) {
        self.deployments.clear();
        self.deployment_uids.clear();
        all.into_iter().for_each(|d| self.apply_deployment(d));
    }

    /// Replaces all Savepoints (after a full list).
    pub fn reset_savepoints<F: Borrow<SavepointFacts>>(
        &mut self,
        all: impl IntoIterator<Item = F>,
    ) {
        self.savepoints.clear();
        self.unindexed_savepoints.clear();
        for facts in all {
            self.apply_savepoint(facts.borrow());
        }
    }

    /// The Deployment `namespace/name`.
    pub fn deployment_by_name(&self, namespace: &str, name: &str) -> Option<&Arc<DeploymentFacts>> {
        self.deployments.get(&(namespace, name) as &dyn KeyRef)
    }

    /// The Deployment whose `metadata.uid` is `uid`.
    pub fn deployment_by_uid(&self, uid: &str) -> Option<&Arc<DeploymentFacts>> {
        self.deployments.get(self.deployment_uids.get(uid)?)
    }

    /// Every stored Savepoint holding the normalized `location`.
    pub fn holders(&self, location: &NormalizedLocation) -> impl Iterator<Item = &ObjectKey> {
        self.savepoints.holders(location.as_str())
    }

    /// The normalized location stored for `namespace/name`, if any.
    pub fn location_of(&self, namespace: &str, name: &str) -> Option<&str> {
        self.savepoints.location_of(namespace, name)
    }

    /// Current sizes.
    pub fn sizes(&self) -> IndexSizes {
        IndexSizes {
            deployments: self.deployments.len(),
            savepoints: self.savepoints.len(),
            locations: self.savepoints.locations(),
            unindexed_savepoints: self.unindexed_savepoints.len(),
            ..IndexSizes::default()
        }
    }
}

impl DeploymentLookup for Index {
    fn by_name(&self, namespace: &str, name: &str) -> Option<&DeploymentFacts> {
        self.deployment_by_name(namespace, name).map(Arc::as_ref)
    }

    fn by_uid(&self, uid: &str) -> Option<&DeploymentFacts> {
        self.deployment_by_uid(uid).map(Arc::as_ref)
    }
}

#[cfg(test)]
mod tests;
