//! Index sizes and the hold ledger's bounds, read at scrape time: [`IndexCollector`].

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use super::Store;
use crate::gauges::{encode_gauge, encode_gauges, saturating_i64};

/// Reads index sizes at scrape time.
#[derive(Debug)]
pub struct IndexCollector(pub Arc<Store>);

impl Collector for IndexCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sizes = self.0.sizes();
        encode_gauges(
            &mut encoder,
            "savepoint_webhook_index_entries",
            "Entries in the in-memory indexes by kind",
            "kind",
            [
                ("deployments", sizes.deployments),
                ("savepoints", sizes.savepoints),
                ("locations", sizes.locations),
                ("unindexed_savepoints", sizes.unindexed_savepoints),
                ("provisional", sizes.provisional),
            ],
        )?;
        encode_gauge(
            &mut encoder,
            "savepoint_webhook_provisional_hold_bytes",
            "Bytes the provisional holds account for, bounded by --max-hold-bytes",
            saturating_i64(sizes.provisional_bytes),
        )?;
        let shed = ConstCounter::new(sizes.provisional_shed);
        shed.encode(encoder.encode_descriptor(
            "savepoint_webhook_provisional_holds_shed",
            "Provisional holds dropped before expiry to stay within --max-holds and --max-hold-bytes",
            None,
            shed.metric_type(),
        )?)
    }
}
