//! [`Readiness`]: ready once every state source has synced, and not ready again once
//! shutdown has begun.

use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness of the process.
#[derive(Debug, Default)]
pub struct Readiness {
    deployments_synced: AtomicBool,
    savepoints_synced: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    /// Marks Deployments as synced.
    pub fn deployments_synced(&self) {
        self.deployments_synced.store(true, Ordering::Release);
    }

    /// Marks Savepoints as synced.
    pub fn savepoints_synced(&self) {
        self.savepoints_synced.store(true, Ordering::Release);
    }

    /// Whether both indexes have synced at least once, so decisions can be made.
    pub fn synced(&self) -> bool {
        self.deployments_synced.load(Ordering::Acquire)
            && self.savepoints_synced.load(Ordering::Acquire)
    }

    /// Marks the start of shutdown.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Synced and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.synced() && !self.shutting_down.load(Ordering::Acquire)
    }
}
