//! [`Store`]: the watch-fed [`Index`] and the [`HoldLedger`], each behind its own lock. The
//! watch writes the index; admissions read it in parallel and take the ledger's short lock
//! only to read a location's provisional holders and add their own in one step.

use std::borrow::Borrow;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::holds::{HoldKind, HoldLedger, HoldLimits};
use super::{DeploymentFacts, Index, IndexSizes, ObjectKey, SavepointFacts};
use crate::domain::{NormalizedLocation, ReferenceScope};

/// The index and the provisional-hold ledger. Locks are always taken index first, ledger
/// second.
#[derive(Debug)]
pub struct Store {
    index: RwLock<Index>,
    holds: Mutex<HoldLedger>,
}

impl Store {
    /// A store of `index`, whose confirmed holds live `provisional_ttl`, within the
    /// default [`HoldLimits`].
    pub fn new(index: Index, provisional_ttl: Duration) -> Self {
        Self::with_limits(index, provisional_ttl, HoldLimits::default())
    }

    /// A store of `index`, whose confirmed holds live `provisional_ttl`, within `limits`.
    pub fn with_limits(index: Index, provisional_ttl: Duration, limits: HoldLimits) -> Self {
        Self {
            index: RwLock::new(index),
            holds: Mutex::new(HoldLedger::with_limits(provisional_ttl, limits)),
        }
    }

    /// The index, for reading; many readers at once.
    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    fn ledger(&self) -> MutexGuard<'_, HoldLedger> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces a Savepoint; a provisional hold of it at its location ends.
    pub fn apply_savepoint(&self, facts: &SavepointFacts) {
        let mut index = self.write();
        if let Some((key, location)) = index.apply_savepoint(facts) {
            self.ledger().release(&location, &key);
        }
    }

    /// Removes a Savepoint.
    pub fn delete_savepoint(&self, namespace: &str, name: &str) {
        self.write().delete_savepoint(namespace, name);
    }

    /// Replaces all Savepoints (after a full list). Provisional holds are kept: they stand
    /// for creates the list may not include yet.
    pub fn reset_savepoints<F: Borrow<SavepointFacts>>(&self, all: impl IntoIterator<Item = F>) {
        self.write().reset_savepoints(all);
    }

    /// Adds or replaces a Deployment.
    pub fn apply_deployment(&self, facts: DeploymentFacts) {
        self.write().apply_deployment(facts);
    }

    /// Removes a Deployment.
    pub fn delete_deployment(&self, namespace: &str, name: &str) {
        self.write().delete_deployment(namespace, name);
    }

    /// Replaces all Deployments (after a full list).
    pub fn reset_deployments(&self, all: impl IntoIterator<Item = DeploymentFacts>) {
        self.write().reset_deployments(all);
    }

    /// The Savepoints other than `holder` that hold `location` at `now`, stored or
    /// provisional, within `scope`; then, when `kind` is given, `holder`'s own hold of
    /// it. Reading and holding are one step under the ledger's lock, so of two concurrent
    /// creates of one location the second always sees the first. `index` is the caller's
    /// read guard of [`Store::read`], held across its whole decision.
    pub fn claim(
        &self,
        index: &Index,
        location: &NormalizedLocation,
        holder: &ObjectKey,
        scope: ReferenceScope,
        kind: Option<HoldKind>,
        now: Instant,
    ) -> Vec<ObjectKey> {
        let mut ledger = self.ledger();
        let others = holders(index, &ledger, location, now)
            .into_iter()
            .filter(|other| *other != holder)
            .filter(|other| scope.covers(&holder.namespace, &other.namespace))
            .cloned()
            .collect();
        if let Some(kind) = kind {
            hold(index, &mut ledger, location, holder, kind, now);
        }
        others
    }

    /// Records `holder`'s hold of `location` (see [`HoldLedger::hold`]), unless the index
    /// already stores it there.
    pub fn hold(
        &self,
        index: &Index,
        location: &NormalizedLocation,
        holder: &ObjectKey,
        kind: HoldKind,
        now: Instant,
    ) {
        hold(index, &mut self.ledger(), location, holder, kind, now);
    }

    /// Confirms the hold of a `generateName` create now that its name is known: one
    /// tentative hold of `prefix` in `holder`'s namespace (see [`ObjectKey::generated`])
    /// becomes `holder`'s confirmed hold.
    pub fn confirm_generated(
        &self,
        index: &Index,
        location: &NormalizedLocation,
        holder: &ObjectKey,
        prefix: &str,
        now: Instant,
    ) {
        if index.location_of(&holder.namespace, &holder.name) != Some(location.as_str()) {
            self.ledger()
                .confirm_generated(location, holder.clone(), prefix, now);
        }
    }

    /// Ends `holder`'s provisional hold of `location`.
    pub fn release(&self, location: &NormalizedLocation, holder: &ObjectKey) {
        self.ledger().release(location, holder);
    }

    /// Every Savepoint holding `location` at `now`, stored or provisional.
    pub fn holders(&self, location: &NormalizedLocation, now: Instant) -> Vec<ObjectKey> {
        let index = self.read();
        let ledger = self.ledger();
        holders(&index, &ledger, location, now)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Drops provisional holds that expired by `now`.
    pub fn expire(&self, now: Instant) {
        self.ledger().expire(now);
    }

    /// Pending entries of the ledger's expiry schedule.
    pub fn pending_expiries(&self) -> usize {
        self.ledger().pending_expiries()
    }

    /// Current sizes, provisional holds included.
    pub fn sizes(&self) -> IndexSizes {
        let mut sizes = self.read().sizes();
        let ledger = self.ledger();
        sizes.provisional = ledger.len();
        sizes.provisional_bytes = ledger.bytes();
        sizes.provisional_shed = ledger.shed();
        sizes
    }
}

fn hold(
    index: &Index,
    ledger: &mut HoldLedger,
    location: &NormalizedLocation,
    holder: &ObjectKey,
    kind: HoldKind,
    now: Instant,
) {
    if index.location_of(&holder.namespace, &holder.name) != Some(location.as_str()) {
        ledger.hold(location, holder.clone(), kind, now);
    }
}

/// Stored holders of `location`, then provisional ones not expired at `now`. A provisional
/// hold is ignored once the index stores its holder at another location (the create it
/// stood for was refused, e.g. because the name was taken).
fn holders<'a>(
    index: &'a Index,
    ledger: &'a HoldLedger,
    location: &NormalizedLocation,
    now: Instant,
) -> Vec<&'a ObjectKey> {
    let mut out: Vec<&ObjectKey> = index.holders(location).collect();
    for holder in ledger.holders(location, now) {
        let stored_elsewhere = index
            .location_of(&holder.namespace, &holder.name)
            .is_some_and(|stored| stored != location.as_str());
        if !stored_elsewhere && !out.contains(&holder) {
            out.push(holder);
        }
    }
    out
}
