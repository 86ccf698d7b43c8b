//! Leader election on a `coordination.k8s.io/v1` Lease: [`LeaderElector::run`] keeps
//! [`LeaderElector::is_leader`] true on exactly one replica at a time. A holder that stops
//! renewing loses the Lease once `duration` has passed since its last renewal; one that
//! shuts down gives it up at once ([`LeaderElector::release`]), so another replica takes
//! over at its next attempt instead of after the lease duration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// Where the Lease lives and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a holder keeps the Lease without renewing.
    pub duration: Duration,
    /// How often the holder renews (and others try to acquire).
    pub renew_every: Duration,
}

/// Holds or waits for the Lease. Clones share the flag and the lock, so one clone can
/// run while another releases.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    leader: Arc<AtomicBool>,
    /// Held across every write of the Lease; `true` once released, after which this
    /// replica never writes it again.
    released: Arc<tokio::sync::Mutex<bool>>,
}

impl LeaderElector {
    /// An elector for `config`; not leader until it has acquired the Lease.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            leader: Arc::new(AtomicBool::new(false)),
            released: Arc::new(tokio::sync::Mutex::new(false)),
        }
    }

    /// A flag that is true while this replica holds the Lease.
    pub fn is_leader(&self) -> Arc<AtomicBool> {
        self.leader.clone()
    }

    /// Acquires and renews the Lease until the process stops. Leadership is dropped as soon
    /// as a renewal fails past the lease duration, so two replicas never act at once for
    /// longer than clock skew allows.
    pub async fn run(self) {
        let mut last_renewed: Option<Instant> = None;
        loop {
            let released = self.released.lock().await;
            if *released {
                drop(released);
                // Given up at shutdown: stay parked until the process ends.
                return std::future::pending().await;
            }
            let attempt = self.try_acquire_or_renew().await;
            drop(released);
            match attempt {
                Ok(true) => {
                    if !self.leader.swap(true, Ordering::AcqRel) {
                        tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became leader");
                    }
                    last_renewed = Some(Instant::now());
                }
                Ok(false) => {
                    if self.leader.swap(false, Ordering::AcqRel) {
                        tracing::warn!(identity = %self.config.identity, "lost the lease");
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot renew or acquire the lease");
                    let stale = last_renewed.is_none_or(|t| t.elapsed() >= self.config.duration);
                    if stale && self.leader.swap(false, Ordering::AcqRel) {
                        tracing::warn!(identity = %self.config.identity, "leadership dropped: lease not renewed in time");
                    }
                }
            }
            tokio::time::sleep(self.config.renew_every).await;
        }
    }

    /// Gives up the Lease if this replica holds it (holder cleared, duration one second),
    /// and never acquires or renews it again. Errors are logged: the Lease then expires
    /// after its duration, as if this replica had died.
    pub async fn release(&self) {
        let mut released = self.released.lock().await;
        *released = true;
        if !self.leader.swap(false, Ordering::AcqRel) {
            return;
        }
        match self.vacate().await {
            Ok(true) => {
                tracing::info!(identity = %self.config.identity, lease = %self.config.name, "gave up the lease")
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot give up the lease; it expires after its duration")
            }
        }
    }

    async fn vacate(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        Ok(true)
    }

    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let me = &self.config.identity;
        let seconds = i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(err) => Err(err),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder != *me {
            let duration = SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(seconds),
            ));
            let expired = spec
                .renew_time
                .as_ref()
                .is_none_or(|t| t.0 + duration <= now);
            if !holder.is_empty() && !expired {
                return Ok(false);
            }
            spec.holder_identity = Some(me.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }
}
