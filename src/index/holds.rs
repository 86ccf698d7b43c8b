//! The provisional-hold ledger: [`HoldLedger`]. A Savepoint admitted moments ago must count
//! as holding its location before the watch shows it (two back-to-back creates of one
//! location: the second is COPIED). A hold is [`HoldKind::Tentative`] from `/mutate`, when
//! the API server may still refuse the create, and [`HoldKind::Confirmed`] from
//! `/validate`, the last step before storage; it ends when the watch shows the Savepoint
//! or when it expires. Pure state: the caller passes the time and owns the lock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ObjectKey;
use crate::domain::NormalizedLocation;

/// Longest life of a hold `/validate` has not confirmed: the longest admission webhook
/// timeout the API server allows, so a create refused after `/mutate` stops counting soon.
pub const TENTATIVE_TTL: Duration = Duration::from_secs(30);

/// Which admission step took a hold, and so how long it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldKind {
    /// Taken by `/mutate`: lives at most [`TENTATIVE_TTL`].
    Tentative,
    /// Taken by `/validate`: lives the full provisional TTL.
    Confirmed,
}

#[derive(Clone, Debug)]
struct Hold {
    holder: ObjectKey,
    expires: Instant,
}

/// The holds of one location.
#[derive(Debug, Default)]
struct Holds {
    list: Vec<Hold>,
    /// When [`HoldLedger::expiries`] next looks at this location: never after the
    /// earliest expiry in `list`.
    due: Option<Instant>,
}

/// Provisional holds by normalized location, with their expiry schedule.
#[derive(Debug)]
pub struct HoldLedger {
    ttl: Duration,
    by_location: HashMap<Arc<str>, Holds>,
    /// When each location with holds is next due for a look, earliest first:
    /// [`HoldLedger::expire`] looks only at the locations that are due. At most one entry
    /// per location is pending besides stale ones, which are skipped when they come due.
    expiries: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    len: usize,
}

impl HoldLedger {
    /// An empty ledger whose confirmed holds live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_location: HashMap::new(),
            expiries: BinaryHeap::new(),
            len: 0,
        }
    }

    /// Records that `holder` holds `location` from `now`, for as long as `kind` allows; a
    /// second hold of the same holder extends the first, never shortens it.
    pub fn hold(
        &mut self,
        location: &NormalizedLocation,
        holder: ObjectKey,
        kind: HoldKind,
        now: Instant,
    ) {
        self.expire(now);
        let ttl = match kind {
            HoldKind::Tentative => self.ttl.min(TENTATIVE_TTL),
            HoldKind::Confirmed => self.ttl,
        };
        let expires = now + ttl;
        let location = match self.by_location.get_key_value(location.as_str()) {
            Some((shared, _)) => shared.clone(),
            None => location.shared().clone(),
        };
        let holds = self.by_location.entry(location.clone()).or_default();
        match holds.list.iter_mut().find(|hold| hold.holder == holder) {
            Some(hold) => hold.expires = hold.expires.max(expires),
            None => {
                holds.list.push(Hold { holder, expires });
                self.len += 1;
            }
        }
        if holds.due.is_none_or(|due| expires < due) {
            holds.due = Some(expires);
            self.expiries.push(Reverse((expires, location)));
        }
    }

    /// Ends the hold of `holder` on `location`: the watch now shows it there.
    pub fn release(&mut self, location: &NormalizedLocation, holder: &ObjectKey) {
        let Some(holds) = self.by_location.get_mut(location.as_str()) else {
            return;
        };
        let before = holds.list.len();
        holds.list.retain(|hold| hold.holder != *holder);
        self.len -= before - holds.list.len();
        if holds.list.is_empty() {
            self.by_location.remove(location.as_str());
        }
    }

    /// The holders of `location` whose holds have not expired at `now`.
    pub fn holders(
        &self,
        location: &NormalizedLocation,
        now: Instant,
    ) -> impl Iterator<Item = &ObjectKey> {
        self.by_location
            .get(location.as_str())
            .into_iter()
            .flat_map(|holds| &holds.list)
            .filter(move |hold| hold.expires > now)
            .map(|hold| &hold.holder)
    }

    /// Drops holds that expired by `now`. Looks only at the locations that are due, so a
    /// busy webhook can call it on every admission.
    pub fn expire(&mut self, now: Instant) {
        while let Some(Reverse((due, _))) = self.expiries.peek()
            && *due <= now
        {
            let Some(Reverse((_, location))) = self.expiries.pop() else {
                break;
            };
            let Some(holds) = self.by_location.get_mut(&location) else {
                continue;
            };
            let before = holds.list.len();
            holds.list.retain(|hold| hold.expires > now);
            self.len -= before - holds.list.len();
            let next = holds.list.iter().map(|hold| hold.expires).min();
            match next {
                None => {
                    self.by_location.remove(&location);
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

    /// Holds kept, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no hold is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pending entries of the expiry schedule (bounded by one per location plus stale ones).
    pub fn pending_expiries(&self) -> usize {
        self.expiries.len()
    }
}
