//! The index and its hold ledger as one state machine, through [`Store`]: apply, delete,
//! reset, provisional holds.

use std::time::{Duration, Instant};

use super::*;

const TTL: Duration = Duration::from_secs(30);

/// A store under test, with the index's vocabulary over `&str` locations.
struct Under(Store);

impl Under {
    fn location(raw: &str) -> NormalizedLocation {
        NormalizedLocation::parse(raw, &LocationRules::default()).unwrap()
    }
    fn apply_savepoint(&self, facts: &SavepointFacts) {
        self.0.apply_savepoint(facts);
    }
    fn delete_savepoint(&self, namespace: &str, name: &str) {
        self.0.delete_savepoint(namespace, name);
    }
    fn reset_savepoints(&self, all: &[SavepointFacts]) {
        self.0.reset_savepoints(all);
    }
    fn apply_deployment(&self, facts: DeploymentFacts) {
        self.0.apply_deployment(facts);
    }
    fn delete_deployment(&self, namespace: &str, name: &str) {
        self.0.delete_deployment(namespace, name);
    }
    fn reset_deployments(&self, all: impl IntoIterator<Item = DeploymentFacts>) {
        self.0.reset_deployments(all);
    }
    fn deployment_by_uid(&self, uid: &str) -> Option<DeploymentFacts> {
        self.0.read().deployment_by_uid(uid).map(|d| (**d).clone())
    }
    fn deployment_by_name(&self, namespace: &str, name: &str) -> Option<DeploymentFacts> {
        self.0
            .read()
            .deployment_by_name(namespace, name)
            .map(|d| (**d).clone())
    }
    fn hold(&self, location: &str, namespace: &str, name: &str, tentative: bool, now: Instant) {
        let kind = if tentative {
            HoldKind::Tentative
        } else {
            HoldKind::Confirmed
        };
        let index = self.0.read();
        self.0.hold(
            &index,
            &Self::location(location),
            &ObjectKey::new(namespace, name),
            kind,
            now,
        );
    }
    fn holders(&self, location: &str, now: Instant) -> Vec<ObjectKey> {
        self.0.holders(&Self::location(location), now)
    }
    fn expire(&self, now: Instant) {
        self.0.expire(now);
    }
    fn sizes(&self) -> IndexSizes {
        self.0.sizes()
    }
    fn pending_expiries(&self) -> usize {
        self.0.pending_expiries()
    }
}

fn mk_index() -> Under {
    mk_index_with(TTL)
}

fn mk_index_with(ttl: Duration) -> Under {
    Under(Store::new(Index::new(LocationRules::default()), ttl))
}

fn mk_savepoint(namespace: &str, name: &str, location: &str) -> SavepointFacts {
    SavepointFacts {
        namespace: namespace.into(),
        name: name.into(),
        location: location.into(),
    }
}

fn mk_deployment(name: &str, uid: &str) -> DeploymentFacts {
    DeploymentFacts {
        namespace: "default".into(),
        name: name.into(),
        uid: uid.into(),
        spec_version: Some("1".into()),
        has_savepoints_dir: true,
        restore_kind: None,
        ..DeploymentFacts::default()
    }
}

fn holder_names(index: &Under, location: &str, now: Instant) -> Vec<String> {
    let mut names: Vec<String> = index
        .holders(location, now)
        .iter()
        .map(|k| k.to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn savepoints_are_found_by_normalized_location() {
    let index = mk_index();
    let now = Instant::now();
    index.apply_savepoint(&mk_savepoint("a", "one", "s3a://b/p/chk-1/_metadata"));
    index.apply_savepoint(&mk_savepoint("b", "two", "s3://b/p/chk-1/"));
    assert_eq!(
        holder_names(&index, "s3://b/p/chk-1", now),
        ["a/one", "b/two"]
    );
    assert_eq!(index.sizes().locations, 1);
    index.delete_savepoint("a", "one");
    assert_eq!(holder_names(&index, "s3://b/p/chk-1", now), ["b/two"]);
    index.delete_savepoint("b", "two");
    assert_eq!(index.sizes(), IndexSizes::default());
}

#[test]
fn a_changed_location_moves_the_entry() {
    let index = mk_index();
    let now = Instant::now();
    index.apply_savepoint(&mk_savepoint("a", "one", "s3://b/old"));
    index.apply_savepoint(&mk_savepoint("a", "one", "s3://b/new"));
    assert!(index.holders("s3://b/old", now).is_empty());
    assert_eq!(holder_names(&index, "s3://b/new", now), ["a/one"]);
    assert_eq!(index.sizes().savepoints, 1);
}

#[test]
fn unparseable_locations_are_counted_not_indexed() {
    let index = mk_index();
    index.apply_savepoint(&mk_savepoint("a", "bad", "ftp://x/y"));
    assert_eq!(index.sizes().unindexed_savepoints, 1);
    assert_eq!(index.sizes().locations, 0);
    index.delete_savepoint("a", "bad");
    assert_eq!(index.sizes().unindexed_savepoints, 0);
}

#[test]
fn reset_drops_entries_the_new_list_lacks() {
    let index = mk_index();
    let now = Instant::now();
    index.apply_savepoint(&mk_savepoint("a", "gone", "s3://b/gone"));
    index.reset_savepoints(&[mk_savepoint("a", "kept", "s3://b/kept")]);
    assert!(index.holders("s3://b/gone", now).is_empty());
    assert_eq!(holder_names(&index, "s3://b/kept", now), ["a/kept"]);
    index.apply_deployment(mk_deployment("old", "u-old"));
    index.reset_deployments([mk_deployment("new", "u-new")]);
    assert!(index.deployment_by_uid("u-old").is_none());
    assert!(index.deployment_by_name("default", "old").is_none());
    assert_eq!(index.deployment_by_uid("u-new").unwrap().name, "new");
}

#[test]
fn deployments_by_name_and_uid_follow_updates() {
    let index = mk_index();
    index.apply_deployment(mk_deployment("app", "u-1"));
    index.apply_deployment(mk_deployment("app", "u-2"));
    assert!(
        index.deployment_by_uid("u-1").is_none(),
        "a recreated Deployment drops its old uid"
    );
    assert_eq!(index.deployment_by_uid("u-2").unwrap().name, "app");
    index.delete_deployment("default", "app");
    assert!(index.deployment_by_name("default", "app").is_none());
    assert!(index.deployment_by_uid("u-2").is_none());
}

#[test]
fn provisional_holds_count_until_confirmed_or_expired() {
    let index = mk_index();
    let now = Instant::now();
    index.hold("s3://b/p", "a", "fresh", false, now);
    assert_eq!(holder_names(&index, "s3://b/p", now), ["a/fresh"]);
    assert_eq!(index.sizes().provisional, 1);
    index.apply_savepoint(&mk_savepoint("a", "fresh", "s3://b/p"));
    assert_eq!(index.sizes().provisional, 0, "the watch confirmed the hold");
    assert_eq!(holder_names(&index, "s3://b/p", now), ["a/fresh"]);

    index.hold("s3://b/q", "a", "refused-later", false, now);
    assert_eq!(
        holder_names(&index, "s3://b/q", now + TTL / 2),
        ["a/refused-later"]
    );
    assert!(
        index.holders("s3://b/q", now + TTL).is_empty(),
        "expired holds do not count"
    );
    index.expire(now + TTL);
    assert_eq!(index.sizes().provisional, 0);
}

#[test]
fn reset_keeps_provisional_holds() {
    let index = mk_index();
    let now = Instant::now();
    index.hold("s3://b/p", "a", "fresh", false, now);
    index.reset_savepoints(&[]);
    assert_eq!(holder_names(&index, "s3://b/p", now), ["a/fresh"]);
}

#[test]
fn tentative_holds_are_short_and_confirmation_extends_them() {
    let index = mk_index_with(Duration::from_secs(120));
    let now = Instant::now();
    index.hold("s3://b/p", "a", "maybe", true, now);
    assert!(
        index.holders("s3://b/p", now + TENTATIVE_TTL).is_empty(),
        "unconfirmed holds end soon"
    );
    index.hold("s3://b/p", "a", "maybe", false, now);
    assert_eq!(
        holder_names(&index, "s3://b/p", now + Duration::from_secs(119)),
        ["a/maybe"]
    );
    index.hold("s3://b/p", "a", "maybe", true, now);
    assert_eq!(
        holder_names(&index, "s3://b/p", now + Duration::from_secs(119)),
        ["a/maybe"],
        "a later tentative hold never shortens a confirmed one"
    );
}

#[test]
fn a_hold_for_a_name_stored_elsewhere_does_not_count() {
    let index = mk_index();
    let now = Instant::now();
    index.apply_savepoint(&mk_savepoint("a", "taken", "s3://b/first"));
    index.hold("s3://b/second", "a", "taken", false, now);
    assert!(
        index.holders("s3://b/second", now).is_empty(),
        "the create of an existing name was refused; its hold must not count"
    );
}

#[test]
fn an_extended_hold_is_looked_at_again_when_first_due() {
    let index = mk_index();
    let now = Instant::now();
    index.hold("s3://b/p", "a", "busy", false, now);
    index.hold(
        "s3://b/p",
        "a",
        "busy",
        false,
        now + Duration::from_secs(10),
    );
    index.expire(now + TTL + Duration::from_secs(5));
    assert_eq!(
        holder_names(&index, "s3://b/p", now + TTL + Duration::from_secs(5)),
        ["a/busy"],
        "the extension outlives the first expiry"
    );
    index.expire(now + TTL + Duration::from_secs(10));
    assert_eq!(index.sizes().provisional, 0);
    assert!(index.pending_expiries() == 0);
}

#[test]
fn repeated_holds_keep_one_pending_expiry_per_location() {
    let index = mk_index();
    let now = Instant::now();
    for ms in 0..1000 {
        index.hold(
            "s3://b/p",
            "a",
            "busy",
            ms % 2 == 0,
            now + Duration::from_millis(ms),
        );
    }
    assert_eq!(index.pending_expiries(), 1);
    assert_eq!(holder_names(&index, "s3://b/p", now + TTL), ["a/busy"]);
    index.expire(now + TTL + Duration::from_secs(1));
    assert_eq!(index.sizes().provisional, 0);
    assert!(index.pending_expiries() == 0);
}

#[test]
fn the_ledger_sheds_the_oldest_tentative_holds_first() {
    use crate::index::{HoldKind, HoldLedger, HoldLimits};
    let mut ledger = HoldLedger::with_limits(
        Duration::from_secs(60),
        HoldLimits {
            max_holds: 3,
            max_bytes: usize::MAX,
        },
    );
    let now = Instant::now();
    let key = |name: &str| ObjectKey::new("default", name);
    ledger.hold(
        &Under::location("s3://b/confirmed"),
        key("c"),
        HoldKind::Confirmed,
        now,
    );
    ledger.hold(
        &Under::location("s3://b/t1"),
        key("t1"),
        HoldKind::Tentative,
        now,
    );
    ledger.hold(
        &Under::location("s3://b/t2"),
        key("t2"),
        HoldKind::Tentative,
        now,
    );
    ledger.hold(
        &Under::location("s3://b/t3"),
        key("t3"),
        HoldKind::Tentative,
        now,
    );
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger.shed(), 1);
    assert_eq!(
        ledger.holders(&Under::location("s3://b/t1"), now).count(),
        0,
        "oldest tentative shed"
    );
    assert_eq!(
        ledger
            .holders(&Under::location("s3://b/confirmed"), now)
            .count(),
        1
    );

    let mut by_bytes = HoldLedger::with_limits(
        Duration::from_secs(60),
        HoldLimits {
            max_holds: usize::MAX,
            max_bytes: 64 * 1024,
        },
    );
    for i in 0..10_000 {
        let raw = format!("s3://b/{}/{i}", "p".repeat(900));
        by_bytes.hold(
            &Under::location(&raw),
            key(&format!("n{i}")),
            HoldKind::Tentative,
            now,
        );
        assert!(by_bytes.bytes() <= 64 * 1024);
    }
    assert!(by_bytes.len() < 100, "{} holds", by_bytes.len());
    assert!(
        by_bytes.pending_expiries() <= 2 * by_bytes.len() + 1024,
        "the expiry schedule does not keep shed locations: {}",
        by_bytes.pending_expiries()
    );
}
