//! Gauge families read at scrape time: [`encode_gauges`] and [`encode_gauge`], shared by
//! the collectors of the index, of the reconciler and of the process.

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
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
        ConstGauge::new(saturating_i64(count)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes one gauge family without labels, read at scrape time.
pub fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// `value` as an `i64`, `i64::MAX` when it does not fit.
pub fn saturating_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
