//! [`Savepoints`]: every indexed Savepoint in one dense table of slots, reachable by key
//! and by normalized location through two hash tables that map a 32-bit hash to the first
//! slot of a chain (slots whose key, or location, hash alike, linked through the slots).
//!
//! Two maps keyed by strings (key → location, location → holders) cost about 330 bytes
//! per Savepoint beyond its location; this layout costs one 56-byte slot, the name, the
//! location's shared allocation header and two 8-byte table entries: about 160 bytes with
//! a 36-byte name (measured by `examples/load/`). Chains are walked with exact string
//! comparisons, so hash collisions cost time, never correctness, and the hashes are keyed
//! (SipHash with a random key), so names and locations cannot be chosen to collide.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use super::ObjectKey;

/// The end of a chain: no slot.
const END: u32 = u32::MAX;

/// One indexed Savepoint.
#[derive(Clone)]
struct Slot {
    key: ObjectKey,
    /// Normalized location, shared by every slot holding the same one.
    location: Arc<str>,
    /// The next slot whose key hashes alike, or [`END`].
    next_same_key: u32,
    /// The next slot whose location hashes alike, or [`END`], in insertion order.
    next_same_location: u32,
}

/// Hashes a `u32` that already is a keyed hash: spreads it over 64 bits, which the table
/// uses for both the bucket and the tag.
#[derive(Default)]
struct Spread(u64);

impl Hasher for Spread {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Hash → first slot of the chain of that hash.
type Heads = HashMap<u32, u32, BuildHasherDefault<Spread>>;

#[derive(Clone, Copy)]
enum Chain {
    Key,
    Location,
}

impl Chain {
    fn next(self, slot: &Slot) -> u32 {
        match self {
            Chain::Key => slot.next_same_key,
            Chain::Location => slot.next_same_location,
        }
    }

    fn next_mut(self, slot: &mut Slot) -> &mut u32 {
        match self {
            Chain::Key => &mut slot.next_same_key,
            Chain::Location => &mut slot.next_same_location,
        }
    }
}

/// Savepoints by key and by normalized location.
#[derive(Clone)]
pub(super) struct Savepoints {
    slots: Vec<Slot>,
    by_key: Heads,
    by_location: Heads,
    hasher: RandomState,
    /// Bits of the hashes kept: all but in tests, which force collisions.
    hash_mask: u32,
    /// Distinct locations.
    locations: usize,
}

impl fmt::Debug for Savepoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Savepoints")
            .field("savepoints", &self.slots.len())
            .field("locations", &self.locations)
            .finish_non_exhaustive()
    }
}

impl Savepoints {
    pub(super) fn new() -> Self {
        Self {
            slots: Vec::new(),
            by_key: Heads::default(),
            by_location: Heads::default(),
            hasher: RandomState::new(),
            hash_mask: u32::MAX,
            locations: 0,
        }
    }

    /// Savepoints held.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Distinct locations held.
    pub(super) fn locations(&self) -> usize {
        self.locations
    }

    /// Forgets every Savepoint, keeping the allocated capacity.
    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.by_key.clear();
        self.by_location.clear();
        self.locations = 0;
    }

    fn hash32(&self, value: impl Hash) -> u32 {
        let hash = self.hasher.hash_one(value);
        (hash ^ (hash >> 32)) as u32 & self.hash_mask
    }

    fn key_hash(&self, namespace: &str, name: &str) -> u32 {
        self.hash32((namespace, name))
    }

    fn location_hash(&self, location: &str) -> u32 {
        self.hash32(location)
    }

    /// The slots of the chain starting at `head`.
    fn walk(&self, chain: Chain, head: Option<&u32>) -> impl Iterator<Item = (u32, &Slot)> {
        let mut at = head.copied().unwrap_or(END);
        std::iter::from_fn(move || {
            let slot = self.slots.get(at as usize)?;
            let this = at;
            at = chain.next(slot);
            Some((this, slot))
        })
    }

    fn find(&self, namespace: &str, name: &str) -> Option<u32> {
        let head = self.by_key.get(&self.key_hash(namespace, name));
        self.walk(Chain::Key, head)
            .find(|(_, slot)| &*slot.key.namespace == namespace && &*slot.key.name == name)
            .map(|(at, _)| at)
    }

    /// The location `namespace/name` holds.
    pub(super) fn location_of(&self, namespace: &str, name: &str) -> Option<&str> {
        let at = self.find(namespace, name)?;
        self.slots.get(at as usize).map(|slot| &*slot.location)
    }

    /// Every Savepoint holding `location`, in the order they were added.
    pub(super) fn holders<'s>(&'s self, location: &str) -> impl Iterator<Item = &'s ObjectKey> {
        let head = self.by_location.get(&self.location_hash(location));
        self.walk(Chain::Location, head)
            .filter(move |(_, slot)| &*slot.location == location)
            .map(|(_, slot)| &slot.key)
    }

    /// Adds `key` holding `location`; the caller has removed any earlier entry of `key`.
    /// Returns `false`, adding nothing, when the table is full (2³² − 1 Savepoints, far
    /// beyond any memory).
    pub(super) fn insert(&mut self, key: ObjectKey, location: &str) -> bool {
        let Ok(at) = u32::try_from(self.slots.len()) else {
            return false;
        };
        if at == END {
            return false;
        }
        let location_hash = self.location_hash(location);
        let mut shared = None;
        let mut tail = None;
        for (i, slot) in self.walk(Chain::Location, self.by_location.get(&location_hash)) {
            if shared.is_none() && &*slot.location == location {
                shared = Some(slot.location.clone());
            }
            tail = Some(i);
        }
        let location = shared.unwrap_or_else(|| {
            self.locations += 1;
            location.into()
        });
        let key_hash = self.key_hash(&key.namespace, &key.name);
        let next_same_key = self.by_key.insert(key_hash, at).unwrap_or(END);
        self.slots.push(Slot {
            key,
            location,
            next_same_key,
            next_same_location: END,
        });
        match tail.and_then(|t| self.slots.get_mut(t as usize)) {
            Some(tail) => tail.next_same_location = at,
            None => {
                self.by_location.insert(location_hash, at);
            }
        }
        true
    }

    /// Makes whatever points at slot `target` in `chain` (the head of `hash`, or the
    /// slot before it) point at `to` instead; `to == END` ends the chain there.
    fn repoint(&mut self, chain: Chain, hash: u32, target: u32, to: u32) {
        let heads = match chain {
            Chain::Key => &mut self.by_key,
            Chain::Location => &mut self.by_location,
        };
        let Some(&head) = heads.get(&hash) else {
            return;
        };
        if head == target {
            if to == END {
                heads.remove(&hash);
            } else {
                heads.insert(hash, to);
            }
            return;
        }
        let before = self
            .walk(chain, Some(&head))
            .find(|(_, slot)| chain.next(slot) == target)
            .map(|(at, _)| at);
        if let Some(slot) = before.and_then(|at| self.slots.get_mut(at as usize)) {
            *chain.next_mut(slot) = to;
        }
    }

    /// Removes `namespace/name`; whether it was held.
    pub(super) fn remove(&mut self, namespace: &str, name: &str) -> bool {
        let Some(at) = self.find(namespace, name) else {
            return false;
        };
        let Some(slot) = self.slots.get(at as usize) else {
            return false;
        };
        let (key_hash, location_hash) = (
            self.key_hash(namespace, name),
            self.location_hash(&slot.location),
        );
        let (next_same_key, next_same_location) = (slot.next_same_key, slot.next_same_location);
        self.repoint(Chain::Key, key_hash, at, next_same_key);
        self.repoint(Chain::Location, location_hash, at, next_same_location);
        // The last slot moves into the hole: repoint whatever pointed at it.
        let last = (self.slots.len() - 1) as u32;
        if at != last
            && let Some(moved) = self.slots.get(last as usize)
        {
            let hashes = (
                self.key_hash(&moved.key.namespace, &moved.key.name),
                self.location_hash(&moved.location),
            );
            self.repoint(Chain::Key, hashes.0, last, at);
            self.repoint(Chain::Location, hashes.1, last, at);
        }
        let removed = self.slots.swap_remove(at as usize);
        // Only slots share a location's allocation: the last one out takes it along.
        if Arc::strong_count(&removed.location) == 1 {
            self.locations -= 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn key(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Random inserts, moves and removals, with hashes cut to 3 bits so that every chain
    /// is long and shared by many keys and locations, checked against a plain map.
    #[test]
    fn chains_survive_collisions_and_removals() {
        let mut table = Savepoints::new();
        table.hash_mask = 0b111;
        let mut model: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut state = 7u64;
        let mut next = |bound: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % bound
        };
        for _ in 0..4000 {
            let (namespace, name) = (format!("ns{}", next(3)), format!("sp{}", next(40)));
            let location = format!("s3://b/{}", next(25));
            let id = (namespace.clone(), name.clone());
            if next(3) == 0 {
                assert_eq!(table.remove(&namespace, &name), model.remove(&id).is_some());
            } else {
                table.remove(&namespace, &name);
                assert!(table.insert(key(&namespace, &name), &location));
                model.insert(id, location);
            }
            assert_eq!(table.len(), model.len());
            let mut locations: Vec<&String> = model.values().collect();
            locations.sort();
            locations.dedup();
            assert_eq!(table.locations(), locations.len());
        }
        for ((namespace, name), location) in &model {
            assert_eq!(table.location_of(namespace, name), Some(location.as_str()));
            let holders: Vec<String> = table.holders(location).map(|k| k.to_string()).collect();
            let mut expected: Vec<String> = model
                .iter()
                .filter(|(_, l)| *l == location)
                .map(|((ns, n), _)| format!("{ns}/{n}"))
                .collect();
            let mut sorted = holders.clone();
            sorted.sort();
            expected.sort();
            assert_eq!(sorted, expected);
        }
        let ids: Vec<(String, String)> = model.keys().cloned().collect();
        for (namespace, name) in ids {
            assert!(table.remove(&namespace, &name));
        }
        assert_eq!((table.len(), table.locations()), (0, 0));
        assert!(table.by_key.is_empty() && table.by_location.is_empty());
    }

    #[test]
    fn holders_come_in_the_order_they_were_added() {
        let mut table = Savepoints::new();
        for name in ["c", "a", "b"] {
            table.insert(key("ns", name), "s3://b/p");
        }
        let names: Vec<&str> = table.holders("s3://b/p").map(|k| &*k.name).collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert_eq!(table.locations(), 1);
    }
}
