//! [`Gate`]: the two admissions over the shared [`Store`], the only path every caller takes.
//!
//! `/mutate` decides under the index's read lock and takes the hold ledger's short lock
//! once, to read the location's other holders and hold it tentatively in one step; so two
//! concurrent creates of one location cannot both miss each other. `/validate` decides
//! under the read lock and confirms the hold of an admitted CREATE, the last step before
//! the object is stored (for a `generateName` create, one tentative hold of its prefix
//! becomes the hold of the generated name). Dry runs change no state.

use std::sync::Arc;
use std::time::Instant;

use super::decode::Request;
use super::fields::spec_str;
use super::{Decision, Reason, generated_prefix, holder_key, mutate, request_name, validate};
use crate::domain::{NormalizedLocation, Operation, Policy};
use crate::index::{HoldKind, Index, ObjectKey, Store};

/// The admissions of one webhook: its store and its policy.
#[derive(Clone, Debug)]
pub struct Gate {
    store: Arc<Store>,
    policy: Arc<Policy>,
}

impl Gate {
    /// A gate deciding under `policy` on what `store` holds.
    pub fn new(store: Arc<Store>, policy: Arc<Policy>) -> Self {
        Self { store, policy }
    }

    /// The store decisions read.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The policy decisions are taken under.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// `/mutate` at `now`: the decision, and unless it is a dry run the tentative hold of
    /// the Savepoint's location.
    pub fn admit_mutate(&self, request: &Request, now: Instant) -> Decision {
        let index = self.store.read();
        let pending = match mutate::prepare(request, &*index, &self.policy) {
            Ok(pending) => pending,
            Err(decision) => return decision,
        };
        let kind = (!pending.is_dry_run()).then_some(HoldKind::Tentative);
        let others = self.store.claim(
            &index,
            &pending.location,
            &pending.holder,
            self.policy.scope,
            kind,
            now,
        );
        pending.decide(&others, &self.policy)
    }

    /// `/validate` at `now`: the decision, and for an admitted CREATE that is not a dry
    /// run the confirmed hold of its location.
    pub fn admit_validate(&self, request: &Request, now: Instant) -> Decision {
        let index = self.store.read();
        let others = self.others_holding_stored(request, &index, now);
        let decision = validate::validate(request, &*index, &self.policy, &others);
        if let Some(location) = self.location_to_confirm(request, &decision) {
            let holder = holder_key(request);
            match generated_prefix(request).filter(|_| !request_name(request).is_empty()) {
                Some(prefix) => self
                    .store
                    .confirm_generated(&index, &location, &holder, prefix, now),
                None => self
                    .store
                    .hold(&index, &location, &holder, HoldKind::Confirmed, now),
            }
        }
        decision
    }

    /// Ends the hold `/validate` took for `request` when a later check (location
    /// verification, authorization) refused the create after the gate admitted it.
    pub fn withdraw(&self, request: &Request) {
        let admitted = Decision::allow(Reason::Allowed);
        if let Some(location) = self.location_to_confirm(request, &admitted) {
            self.store.release(&location, &holder_key(request));
        }
    }

    /// For an UPDATE or DELETE, the other Savepoints (within the policy's scope) holding
    /// the stored object's location.
    fn others_holding_stored(
        &self,
        request: &Request,
        index: &Index,
        now: Instant,
    ) -> Vec<ObjectKey> {
        if !matches!(
            request.operation,
            Some(Operation::Update | Operation::Delete)
        ) {
            return Vec::new();
        }
        let Some(location) = request
            .old_object
            .as_ref()
            .and_then(|old| spec_str(old, "savepointLocation"))
            .and_then(|raw| NormalizedLocation::parse(raw, &self.policy.locations).ok())
        else {
            return Vec::new();
        };
        let holder = holder_key(request);
        self.store
            .claim(index, &location, &holder, self.policy.scope, None, now)
    }

    fn location_to_confirm(
        &self,
        request: &Request,
        decision: &Decision,
    ) -> Option<NormalizedLocation> {
        let admitted_create = decision.allowed
            && decision.reason == Reason::Allowed
            && request.operation == Some(Operation::Create)
            && !request.is_dry_run();
        if !admitted_create {
            return None;
        }
        let raw = spec_str(request.object.as_ref()?, "savepointLocation")?;
        NormalizedLocation::parse(raw, &self.policy.locations).ok()
    }
}
