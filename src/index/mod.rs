//! In-memory indexes the decisions read: [`Index`]. A state machine fed events
//! (`apply_*`, `delete_*`, `reset`) by a kube watch or a directory of manifests; it keeps
//! only what decisions need, never whole objects.

mod facts;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use facts::{DeploymentFacts, SavepointFacts};

use crate::admission::location::{Location, LocationRules};

/// Longest life of a hold `/validate` has not confirmed: the longest admission webhook
/// timeout the API server allows, so a create refused after `/mutate` stops counting soon.
pub const TENTATIVE_TTL: Duration = Duration::from_secs(30);

/// Namespace and name of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace (interned).
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A location held by a Savepoint admitted moments ago that the watch has not yet shown.
#[derive(Clone, Debug)]
struct Provisional {
    holder: ObjectKey,
    expires: Instant,
}

/// Deployments by name and uid; Savepoints by normalized location.
#[derive(Debug)]
pub struct Index {
    rules: LocationRules,
    provisional_ttl: Duration,
    namespaces: HashSet<Arc<str>>,
    deployments: HashMap<ObjectKey, Arc<DeploymentFacts>>,
    deployment_uids: HashMap<Arc<str>, ObjectKey>,
    locations: HashMap<Arc<str>, Vec<ObjectKey>>,
    savepoint_locations: HashMap<ObjectKey, Arc<str>>,
    unindexed_savepoints: HashSet<ObjectKey>,
    provisional: HashMap<Arc<str>, Vec<Provisional>>,
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
    /// Provisional holds not yet confirmed by the watch.
    pub provisional: usize,
}

impl Index {
    /// An empty index that parses locations with `rules` and keeps provisional holds for
    /// `provisional_ttl`.
    pub fn new(rules: LocationRules, provisional_ttl: Duration) -> Self {
        Self {
            rules,
            provisional_ttl,
            namespaces: HashSet::new(),
            deployments: HashMap::new(),
            deployment_uids: HashMap::new(),
            locations: HashMap::new(),
            savepoint_locations: HashMap::new(),
            unindexed_savepoints: HashSet::new(),
            provisional: HashMap::new(),
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

    /// Adds or replaces a Savepoint, confirming any provisional hold of it.
    pub fn apply_savepoint(&mut self, facts: &SavepointFacts) {
        let key = self.key(&facts.namespace, &facts.name);
        let location = Location::parse(&facts.location, &self.rules)
            .ok()
            .map(|l| l.to_string());
        if let Some(old) = self.savepoint_locations.get(&key)
            && Some(old.as_ref()) == location.as_deref()
        {
            return;
        }
        self.remove_savepoint(&key);
        let Some(location) = location else {
            self.unindexed_savepoints.insert(key);
            return;
        };
        let location: Arc<str> = match self.locations.get_key_value(location.as_str()) {
            Some((shared, _)) => shared.clone(),
            None => location.into(),
        };
        if let Some(holds) = self.provisional.get_mut(&location) {
            holds.retain(|hold| hold.holder != key);
            if holds.is_empty() {
                self.provisional.remove(&location);
            }
        }
        self.locations
            .entry(location.clone())
            .or_default()
            .push(key.clone());
        self.savepoint_locations.insert(key, location);
    }

    /// Removes a Savepoint.
    pub fn delete_savepoint(&mut self, namespace: &str, name: &str) {
        let key = self.key(namespace, name);
        self.remove_savepoint(&key);
    }

    fn remove_savepoint(&mut self, key: &ObjectKey) {
        self.unindexed_savepoints.remove(key);
        let Some(location) = self.savepoint_locations.remove(key) else {
            return;
        };
        if let Some(holders) = self.locations.get_mut(&location) {
            holders.retain(|holder| holder != key);
            if holders.is_empty() {
                self.locations.remove(&location);
            }
        }
    }

    /// Replaces all Deployments (after a full list).
    pub fn reset_deployments(&mut self, all: impl IntoIterator<Item = DeploymentFacts>) {
        self.deployments.clear();
        self.deployment_uids.clear();
        all.into_iter().for_each(|d| self.apply_deployment(d));
    }

    /// Replaces all Savepoints (after a full list). Provisional holds are kept: they
    /// stand for creates the list may not include yet.
    pub fn reset_savepoints<'a>(&mut self, all: impl IntoIterator<Item = &'a SavepointFacts>) {
        self.locations.clear();
        self.savepoint_locations.clear();
        self.unindexed_savepoints.clear();
        all.into_iter().for_each(|s| self.apply_savepoint(s));
    }

    /// The Deployment `namespace/name`.
    pub fn deployment_by_name(&self, namespace: &str, name: &str) -> Option<&Arc<DeploymentFacts>> {
        let key = ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.deployments.get(&key)
    }

    /// The Deployment whose `metadata.uid` is `uid`.
    pub fn deployment_by_uid(&self, uid: &str) -> Option<&Arc<DeploymentFacts>> {
        self.deployments.get(self.deployment_uids.get(uid)?)
    }

    /// Every Savepoint holding the normalized `location` at `now`, confirmed or provisional.
    /// A provisional hold is ignored once the watch shows its holder at another location
    /// (the create it stood for was refused, e.g. because the name was taken).
    pub fn holders(&self, location: &str, now: Instant) -> Vec<&ObjectKey> {
        let mut out: Vec<&ObjectKey> = self.locations.get(location).into_iter().flatten().collect();
        for hold in self.provisional.get(location).into_iter().flatten() {
            let stored_elsewhere = self
                .savepoint_locations
                .get(&hold.holder)
                .is_some_and(|stored| stored.as_ref() != location);
            if hold.expires > now && !stored_elsewhere && !out.contains(&&hold.holder) {
                out.push(&hold.holder);
            }
        }
        out
    }

    /// Records that `namespace/name` was just admitted holding the normalized `location`,
    /// so it counts as referenced until the watch shows it or the hold expires. A
    /// `tentative` hold (from `/mutate`, before the API server has checked the name and
    /// schema) lives at most [`TENTATIVE_TTL`]; a confirmed one (from `/validate`, the
    /// last step before storage) lives the full provisional TTL.
    pub fn hold(
        &mut self,
        location: &str,
        namespace: &str,
        name: &str,
        tentative: bool,
        now: Instant,
    ) {
        let holder = self.key(namespace, name);
        if self.savepoint_locations.get(&holder).map(|l| l.as_ref()) == Some(location) {
            return;
        }
        self.expire(now);
        let ttl = if tentative {
            self.provisional_ttl.min(TENTATIVE_TTL)
        } else {
            self.provisional_ttl
        };
        let expires = now + ttl;
        let holds = self.provisional.entry(location.into()).or_default();
        match holds.iter_mut().find(|hold| hold.holder == holder) {
            Some(hold) => hold.expires = hold.expires.max(expires),
            None => holds.push(Provisional { holder, expires }),
        }
    }

    /// Drops provisional holds that expired by `now`.
    pub fn expire(&mut self, now: Instant) {
        self.provisional.retain(|_, holds| {
            holds.retain(|hold| hold.expires > now);
            !holds.is_empty()
        });
    }

    /// Current sizes.
    pub fn sizes(&self) -> IndexSizes {
        IndexSizes {
            deployments: self.deployments.len(),
            savepoints: self.savepoint_locations.len(),
            locations: self.locations.len(),
            unindexed_savepoints: self.unindexed_savepoints.len(),
            provisional: self.provisional.values().map(Vec::len).sum(),
        }
    }
}

#[cfg(test)]
mod tests;
