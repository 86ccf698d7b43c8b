//! In-memory indexes the decisions read: [`Index`]. A state machine fed events
//! (`apply_*`, `delete_*`, `reset`) by a kube watch or a directory of manifests; it keeps
//! only what decisions need, never whole objects. Savepoints are kept compactly (see
//! [`savepoints`]): the index must hold a million of them in little memory.

mod facts;
mod savepoints;

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use facts::{DeploymentFacts, SavepointFacts};
use savepoints::Savepoints;

use crate::admission::location::{Location, LocationRules};

/// Longest life of a hold `/validate` has not confirmed: the longest admission webhook
/// timeout the API server allows, so a create refused after `/mutate` stops counting soon.
pub const TENTATIVE_TTL: Duration = Duration::from_secs(30);

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
    savepoints: Savepoints,
    unindexed_savepoints: HashSet<ObjectKey>,
    provisional: HashMap<Arc<str>, Holds>,
    /// When each location with holds is next due for a look, earliest first:
    /// [`Index::expire`] looks only at the locations that are due. At most one entry per
    /// location is pending besides stale ones, which are skipped when they come due.
    expiries: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
}

/// The provisional holds of one location.
#[derive(Debug, Default)]
struct Holds {
    list: Vec<Provisional>,
    /// When [`Index::expiries`] next looks at this location: never after the earliest
    /// expiry in `list`.
    due: Option<Instant>,
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
            savepoints: Savepoints::new(),
            unindexed_savepoints: HashSet::new(),
            provisional: HashMap::new(),
            expiries: BinaryHeap::new(),
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
        let (namespace, name) = (facts.namespace.as_str(), facts.name.as_str());
        let location = Location::parse(&facts.location, &self.rules)
            .ok()
            .map(|l| l.to_string());
        if location.is_some() && self.savepoints.location_of(namespace, name) == location.as_deref()
        {
            return;
        }
        self.remove_savepoint(namespace, name);
        let key = self.key(namespace, name);
        let Some(location) = location else {
            self.unindexed_savepoints.insert(key);
            return;
        };
        if let Some(holds) = self.provisional.get_mut(location.as_str()) {
            holds.list.retain(|hold| hold.holder != key);
            if holds.list.is_empty() {
                self.provisional.remove(location.as_str());
            }
        }
        if !self.savepoints.insert(key.clone(), &location) {
            self.unindexed_savepoints.insert(key);
        }
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

    /// Replaces all Savepoints (after a full list). Provisional holds are kept: they
    /// stand for creates the list may not include yet.
    pub fn reset_savepoints<F: Borrow<SavepointFacts>>(
        &mut self,
        all: impl IntoIterator<Item = F>,
    ) {
        self.savepoints.clear();
        self.unindexed_savepoints.clear();
        all.into_iter()
            .for_each(|s| self.apply_savepoint(s.borrow()));
    }

    /// The Deployment `namespace/name`.
    pub fn deployment_by_name(&self, namespace: &str, name: &str) -> Option<&Arc<DeploymentFacts>> {
        self.deployments.get(&(namespace, name) as &dyn KeyRef)
    }

    /// The Deployment whose `metadata.uid` is `uid`.
    pub fn deployment_by_uid(&self, uid: &str) -> Option<&Arc<DeploymentFacts>> {
        self.deployments.get(self.deployment_uids.get(uid)?)
    }

    /// Every Savepoint holding the normalized `location` at `now`, confirmed or provisional.
    /// A provisional hold is ignored once the watch shows its holder at another location
    /// (the create it stood for was refused, e.g. because the name was taken).
    pub fn holders(&self, location: &str, now: Instant) -> Vec<&ObjectKey> {
        let mut out: Vec<&ObjectKey> = self.savepoints.holders(location).collect();
        for hold in self
            .provisional
            .get(location)
            .into_iter()
            .flat_map(|holds| &holds.list)
        {
            let stored_elsewhere = self
                .savepoints
                .location_of(&hold.holder.namespace, &hold.holder.name)
                .is_some_and(|stored| stored != location);
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
        if self.savepoints.location_of(namespace, name) == Some(location) {
            return;
        }
        let holder = self.key(namespace, name);
        self.expire(now);
        let ttl = if tentative {
            self.provisional_ttl.min(TENTATIVE_TTL)
        } else {
            self.provisional_ttl
        };
        let expires = now + ttl;
        let location = match self.provisional.get_key_value(location) {
            Some((shared, _)) => shared.clone(),
            None => Arc::from(location),
        };
        let holds = self.provisional.entry(location.clone()).or_default();
        match holds.list.iter_mut().find(|hold| hold.holder == holder) {
            Some(hold) => hold.expires = hold.expires.max(expires),
            None => holds.list.push(Provisional { holder, expires }),
        }
        if holds.due.is_none_or(|due| expires < due) {
            holds.due = Some(expires);
            self.expiries.push(Reverse((expires, location)));
        }
    }

    /// Drops provisional holds that expired by `now`. Looks only at the holds that are
    /// due, so a busy webhook can call it on every admission.
    pub fn expire(&mut self, now: Instant) {
        while let Some(Reverse((due, _))) = self.expiries.peek()
            && *due <= now
        {
            let Some(Reverse((_, location))) = self.expiries.pop() else {
                break;
            };
            let Some(holds) = self.provisional.get_mut(&location) else {
                continue;
            };
            holds.list.retain(|hold| hold.expires > now);
            let next = holds.list.iter().map(|hold| hold.expires).min();
            match next {
                None => {
                    self.provisional.remove(&location);
                }
                // The pending look is this one or a stale one: schedule the next.
                Some(next) if holds.due.is_none_or(|due| due <= now) => {
                    holds.due = Some(next);
                    self.expiries.push(Reverse((next, location)));
                }
                Some(_) => {}
            }
        }
    }

    /// Current sizes.
    pub fn sizes(&self) -> IndexSizes {
        IndexSizes {
            deployments: self.deployments.len(),
            savepoints: self.savepoints.len(),
            locations: self.savepoints.locations(),
            unindexed_savepoints: self.unindexed_savepoints.len(),
            provisional: self
                .provisional
                .values()
                .map(|holds| holds.list.len())
                .sum(),
        }
    }
}

#[cfg(test)]
mod tests;
