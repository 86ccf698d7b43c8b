//! Gauge families read at scrape time: [`encode_gauges`], shared by the collectors of the
//! index and of the reconciler.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// Encodes one gauge family with a single label, read at scrape time.
pub fn encode_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'static str, usize)>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for (value, count) in values {
        let labels = [(label, value)];
        ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
            .encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
