//! Index sizes as a gauge family read at scrape time: [`IndexCollector`].

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::Store;
use crate::gauges::encode_gauges;

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
        )
    }
}
