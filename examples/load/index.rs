//! The load harness: building the index, counted and timed.

use super::*;

/// What building one index cost.
pub(crate) struct Built {
    pub(crate) index: Index,
    pub(crate) savepoints: usize,
    pub(crate) deployment_bytes: i64,
    pub(crate) savepoint_bytes: i64,
    pub(crate) location_bytes: usize,
    pub(crate) build_time: Duration,
    pub(crate) rss_growth: i64,
}

pub(crate) fn rss_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Builds the index the way the watch does after its first lists: every Deployment, then
/// every Savepoint, applied one by one. Only the applies are timed and counted; the facts
/// are generated in chunks outside.
pub(crate) fn build_index(
    policy: &Policy,
    deployments: &[DeploymentFacts],
    size: usize,
    referenced: &[SavepointFacts],
) -> Built {
    let rss_before = rss_bytes();
    let mut index = Index::new(policy.locations.clone());
    let started = Instant::now();
    let (deployment_bytes, ()) = counting(|| {
        for d in deployments {
            index.apply_deployment(d.clone());
        }
    });
    let mut build_time = started.elapsed();
    let mut savepoint_bytes = 0;
    let mut location_bytes = 0;
    const CHUNK: usize = 16_384;
    let mut next = 0;
    while next < size {
        let chunk: Vec<SavepointFacts> = (next..size.min(next + CHUNK))
            .map(|i| bulk_savepoint(i, deployments))
            .collect();
        next += chunk.len();
        location_bytes += chunk.iter().map(|s| s.location.len()).sum::<usize>();
        let started = Instant::now();
        let (bytes, ()) = counting(|| {
            for s in &chunk {
                index.apply_savepoint(s);
            }
        });
        build_time += started.elapsed();
        savepoint_bytes += bytes;
    }
    let started = Instant::now();
    let (bytes, ()) = counting(|| {
        for s in referenced {
            index.apply_savepoint(s);
        }
    });
    build_time += started.elapsed();
    savepoint_bytes += bytes;
    // Referenced locations are written raw; the index keeps them normalized (same length
    // here: no trailing slash, scheme already s3).
    location_bytes += referenced.iter().map(|s| s.location.len()).sum::<usize>();
    Built {
        savepoints: index.sizes().savepoints,
        index,
        deployment_bytes,
        savepoint_bytes,
        location_bytes,
        build_time,
        rss_growth: rss_bytes() - rss_before,
    }
}
