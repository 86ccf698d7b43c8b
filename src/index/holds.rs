//! The provisional-hold ledger: [`HoldLedger`]. A Savepoint admitted moments ago must count
//! as holding its location before the watch shows it (two back-to-back creates of one
//! location: the second is COPIED). A hold is [`HoldKind::Tentative`] from `/mutate`, when
//! the API server may still refuse the create, and [`HoldKind::Confirmed`] from
//! `/validate`, the last step before storage; it ends when the watch shows the Savepoint
//! or when it expires. Pure state: the caller passes the time and owns the lock.
//!
//! The ledger is bounded by [`HoldLimits`]: past either bound the oldest tentative hold is
//! shed first, then the oldest confirmed one. A shed hold only means that a create of
//! that location in the next seconds may miss COPIED, which the reconciler then repairs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
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

/// Bounds of the ledger: no flood of creates can make it grow past them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldLimits {
    /// Most holds kept.
    pub max_holds: usize,
    /// Most bytes the holds account for (see [`HOLD_OVERHEAD_BYTES`]).
    pub max_bytes: usize,
}

impl Default for HoldLimits {
    fn default() -> Self {
        Self {
            max_holds: 20_000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What one hold costs besides its location, namespace and name: its entries in the
/// ledger's maps, the expiry schedule and the shedding order.
pub const HOLD_OVERHEAD_BYTES: usize = 192;

#[derive(Clone, Debug)]
struct Hold {
    holder: ObjectKey,
    expires: Instant,
    kind: HoldKind,
    /// Place in the shedding order of its kind: lower is older.
    seq: u64,
}

impl Hold {
    fn bytes(&self, location: &str) -> usize {
        HOLD_OVERHEAD_BYTES + location.len() + self.holder.namespace.len() + self.holder.name.len()
    }
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
    limits: HoldLimits,
    by_location: HashMap<Arc<str>, Holds>,
    /// Tentative and confirmed holds, oldest first: the order they are shed in.
    tentative_order: BTreeMap<u64, (Arc<str>, ObjectKey)>,
    confirmed_order: BTreeMap<u64, (Arc<str>, ObjectKey)>,
    next_seq: u64,
    bytes: usize,
    shed: u64,
    /// When each location with holds is next due for a look, earliest first:
    /// [`HoldLedger::expire`] looks only at the locations that are due. At most one entry
    /// per location is pending besides stale ones, which are skipped when they come due.
    expiries: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    len: usize,
}

impl HoldLedger {
    /// An empty ledger whose confirmed holds live `ttl`, bounded by the default limits.
    pub fn new(ttl: Duration) -> Self {
        Self::with_limits(ttl, HoldLimits::default())
    }

    /// An empty ledger whose confirmed holds live `ttl`, bounded by `limits`.
    pub fn with_limits(ttl: Duration, limits: HoldLimits) -> Self {
        Self {
            ttl,
            limits,
            by_location: HashMap::new(),
            tentative_order: BTreeMap::new(),
            confirmed_order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            shed: 0,
            expiries: BinaryHeap::new(),
            len: 0,
        }
    }

    fn order(&mut self, kind: HoldKind) -> &mut BTreeMap<u64, (Arc<str>, ObjectKey)> {
        match kind {
            HoldKind::Tentative => &mut self.tentative_order,
            HoldKind::Confirmed => &mut self.confirmed_order,
        }
    }

    /// Removes the holds of `location` that `drop` selects, and the location once it has
    /// none.
    fn remove_where(&mut self, location: &str, mut drop: impl FnMut(&Hold) -> bool) {
        let Some(holds) = self.by_location.get_mut(location) else {
            return;
        };
        let mut gone = Vec::new();
        holds.list.retain(|hold| {
            let remove = drop(hold);
            if remove {
                gone.push((hold.kind, hold.seq, hold.bytes(location)));
            }
            !remove
        });
        if holds.list.is_empty() {
            self.by_location.remove(location);
        }
        for (kind, seq, bytes) in gone {
            self.len -= 1;
            self.bytes -= bytes;
            self.order(kind).remove(&seq);
        }
    }

    /// Rebuilds the expiry schedule from the locations' due times once stale entries
    /// (of locations released or shed) outnumber live ones, so that neither it nor the
    /// locations its entries share can grow with the rate of creates.
    fn compact_expiries(&mut self) {
        if self.expiries.len() <= 2 * self.by_location.len() + 1024 {
            return;
        }
        self.expiries = self
            .by_location
            .iter()
            .filter_map(|(location, holds)| Some(Reverse((holds.due?, location.clone()))))
            .collect();
    }

    /// Sheds the oldest holds, tentative ones first, until the ledger is within its limits.
    fn shed_to_limits(&mut self) {
        while self.len > self.limits.max_holds || self.bytes > self.limits.max_bytes {
            let oldest = self
                .tentative_order
                .first_key_value()
                .or_else(|| self.confirmed_order.first_key_value())
                .map(|(seq, (location, _))| (*seq, location.clone()));
            let Some((seq, location)) = oldest else {
                break;
            };
            self.remove_where(&location, |hold| hold.seq == seq);
            self.shed += 1;
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
        let seq = self.next_seq;
        self.next_seq += 1;
        let holds = self.by_location.entry(location.clone()).or_default();
        let mut moved = None;
        match holds.list.iter_mut().find(|hold| hold.holder == holder) {
            Some(hold) => {
                hold.expires = hold.expires.max(expires);
                if hold.kind == HoldKind::Tentative && kind == HoldKind::Confirmed {
                    moved = Some(hold.seq);
                    hold.kind = HoldKind::Confirmed;
                    hold.seq = seq;
                }
            }
            None => {
                let hold = Hold {
                    holder: holder.clone(),
                    expires,
                    kind,
                    seq,
                };
                self.bytes += hold.bytes(&location);
                holds.list.push(hold);
                self.len += 1;
                self.order(kind).insert(seq, (location.clone(), holder));
            }
        }
        let holds = self.by_location.entry(location.clone()).or_default();
        if holds.due.is_none_or(|due| expires < due) {
            holds.due = Some(expires);
            self.expiries.push(Reverse((expires, location.clone())));
        }
        if let Some(old_seq) = moved
            && let Some(entry) = self.tentative_order.remove(&old_seq)
        {
            self.confirmed_order.insert(seq, entry);
        }
        self.shed_to_limits();
        self.compact_expiries();
    }

    /// Replaces one tentative hold of a `generateName` create with prefix `prefix` in
    /// `namespace` (see [`ObjectKey::generated`]) by the confirmed hold of the name the
    /// API server generated, `holder`.
    pub fn confirm_generated(
        &mut self,
        location: &NormalizedLocation,
        holder: ObjectKey,
        prefix: &str,
        now: Instant,
    ) {
        let mut found = false;
        self.remove_where(location.as_str(), |hold| {
            let take = !found
                && hold.kind == HoldKind::Tentative
                && hold.holder.namespace == holder.namespace
                && hold.holder.generated_prefix() == Some(prefix);
            found |= take;
            take
        });
        self.hold(location, holder, HoldKind::Confirmed, now);
    }

    /// Ends the hold of `holder` on `location`: the watch now shows it there.
    pub fn release(&mut self, location: &NormalizedLocation, holder: &ObjectKey) {
        self.remove_where(location.as_str(), |hold| hold.holder == *holder);
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
            self.remove_where(&location, |hold| hold.expires <= now);
            let Some(holds) = self.by_location.get_mut(&location) else {
                continue;
            };
            let next = holds.list.iter().map(|hold| hold.expires).min();
            // The pending look is this one or a stale one: schedule the next.
            if let Some(next) = next
                && holds.due.is_none_or(|due| due <= now)
            {
                holds.due = Some(next);
                self.expiries.push(Reverse((next, location)));
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

    /// Bytes the holds account for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds shed so far to stay within the limits.
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// Pending entries of the expiry schedule (bounded by one per location plus stale ones).
    pub fn pending_expiries(&self) -> usize {
        self.expiries.len()
    }
}
