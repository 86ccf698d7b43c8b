//! Metrics of the HTTP server and of admission decisions ([`Metrics`]), of the serving
//! certificate ([`CertificateCollector`]), of the build and of the process, and the two
//! exposition formats `/metrics` answers in ([`Format`], [`encode`]).
//!
//! Every label value is a `&'static str` or a status code the server chose: nothing a
//! client sends becomes a label value, so no request can add a series.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::tls::ReloadingCert;
use crate::gauges::{encode_gauge, saturating_i64};

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route, e.g. `/mutate`.
    pub route: &'static str,
    /// HTTP status code.
    pub code: u16,
}

/// Labels of a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route, e.g. `/mutate`.
    pub route: &'static str,
}

/// Labels of an admission decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `mutate` or `validate`.
    pub endpoint: &'static str,
    /// `true` or `false`.
    pub allowed: &'static str,
    /// Why (see `admission::Reason`).
    pub reason: &'static str,
}

/// Upper bounds of the request latency buckets, in seconds: from 100 µs to past the
/// default request timeout (10 s) up to the longest an HTTP/2 stream lives by default
/// (request timeout plus send timeout, 20 s) and the API server's longest webhook
/// timeout (30 s).
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The metric families the server updates.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Requests by route and status code.
    pub requests: Family<RequestLabels, Counter>,
    /// Requests being handled, by route.
    pub in_flight: Family<RouteLabels, Gauge>,
    /// Request latency by route.
    pub latency: Family<RouteLabels, Histogram>,
    /// Admission decisions by endpoint, outcome and reason.
    pub decisions: Family<DecisionLabels, Counter>,
}

impl Metrics {
    /// Creates the families and registers them, with the build information and the
    /// process collector, in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            in_flight: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            decisions: Family::default(),
        };
        registry.register(
            "savepoint_webhook_http_requests",
            "HTTP requests by route and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "savepoint_webhook_http_requests_in_flight",
            "HTTP requests being handled, by route",
            metrics.in_flight.clone(),
        );
        registry.register(
            "savepoint_webhook_http_request_duration_seconds",
            "HTTP request latency by route",
            metrics.latency.clone(),
        );
        registry.register(
            "savepoint_webhook_admission_decisions",
            "Admission decisions by endpoint, outcome and reason",
            metrics.decisions.clone(),
        );
        registry.register_collector(Box::new(BuildInfo));
        registry.register_collector(Box::new(ProcessCollector));
        metrics
    }
}

/// The validity period of the serving certificate, read at scrape time from the
/// [`ReloadingCert`]: it follows every reload, and a reload that fails leaves it at the
/// certificate still served.
#[derive(Debug)]
pub struct CertificateCollector(Arc<ReloadingCert>);

impl CertificateCollector {
    /// Registers the certificate gauges of `cert` in `registry`.
    pub fn register(registry: &mut Registry, cert: Arc<ReloadingCert>) {
        registry.register_collector(Box::new(Self(cert)));
    }
}

impl Collector for CertificateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(validity) = self.0.validity() else {
            return Ok(());
        };
        encode_gauge(
            &mut encoder,
            "savepoint_webhook_certificate_expiry_timestamp_seconds",
            "End of the serving certificate's validity (notAfter), seconds since the Unix epoch",
            validity.not_after,
        )?;
        encode_gauge(
            &mut encoder,
            "savepoint_webhook_certificate_not_before_timestamp_seconds",
            "Start of the serving certificate's validity (notBefore), seconds since the Unix epoch",
            validity.not_before,
        )
    }
}

/// `savepoint_webhook_build_info{version, object_stores} 1`.
#[derive(Debug)]
struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let one = ConstGauge::new(1i64);
        let mut family = encoder.encode_descriptor(
            "savepoint_webhook_build_info",
            "Always 1; the labels name the version and whether S3, GCS and Azure locations are read",
            None,
            one.metric_type(),
        )?;
        let labels = [
            ("version", env!("CARGO_PKG_VERSION")),
            (
                "object_stores",
                if cfg!(feature = "object-stores") {
                    "true"
                } else {
                    "false"
                },
            ),
        ];
        one.encode(family.encode_family(&labels)?)
    }
}

/// The process's CPU time, memory, file descriptors and start time, read from `/proc/self`
/// at scrape time under the names Prometheus client libraries share (`process_*`). A
/// value that cannot be read (no `/proc`, e.g. off Linux) is left out.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| ProcStat::parse(&text));
        if let Some(stat) = &stat {
            let cpu = ConstCounter::new(stat.cpu_seconds());
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                cpu.metric_type(),
            )?)?;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kib) = status_kib(&status, "VmRSS:") {
            encode_gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                kib.saturating_mul(1024),
            )?;
        }
        if let Some(kib) = status_kib(&status, "VmSize:") {
            encode_gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                kib.saturating_mul(1024),
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            encode_gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                saturating_i64(fds.count()),
            )?;
        }
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        if let Some(max) = max_open_files(&limits) {
            encode_gauge(
                &mut encoder,
                "process_max_fds",
                "Most file descriptors the process may open (soft limit)",
                max,
            )?;
        }
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time(&text));
        if let (Some(stat), Some(boot)) = (&stat, boot) {
            encode_gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                stat.start_time_seconds(boot),
            )?;
        }
        Ok(())
    }
}

/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`): 100 on every architecture
/// Linux runs this on (reading `sysconf(_SC_CLK_TCK)` would need `unsafe`).
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/self/stat` the process collector reads, in clock ticks.
#[derive(Debug, PartialEq)]
struct ProcStat {
    utime: u64,
    stime: u64,
    starttime: u64,
}

impl ProcStat {
    /// Parses `/proc/self/stat` (see proc(5)); the command name, in parentheses, may
    /// contain spaces and parentheses, so fields are counted after the last `)`.
    fn parse(text: &str) -> Option<Self> {
        let (_, rest) = text.rsplit_once(')')?;
        // Fields from the third (state) on: utime is the 14th, stime the 15th and
        // starttime the 22nd.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
        })
    }

    fn cpu_seconds(&self) -> f64 {
        self.utime.saturating_add(self.stime) as f64 / TICKS_PER_SECOND
    }

    fn start_time_seconds(&self, boot_time: u64) -> f64 {
        boot_time as f64 + self.starttime as f64 / TICKS_PER_SECOND
    }
}

/// A `kB` value of `/proc/self/status`, e.g. `VmRSS:    1234 kB`.
fn status_kib(status: &str, key: &str) -> Option<i64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft limit of `Max open files` in `/proc/self/limits` (`None` when unlimited).
fn max_open_files(limits: &str) -> Option<i64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Boot time, in seconds since the Unix epoch, from `btime` of `/proc/stat`.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// An exposition format of `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0, as prometheus-client encodes it.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it lists
    /// `application/openmetrics-text` (no version or 1.0.0) with a quality above zero and
    /// at least that of the text format (`text/plain`, `text/*` or `*/*`); the text format
    /// otherwise, and when there is no header.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let (mut quality, mut version) = (1.0f32, None);
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => quality = value.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(value.trim().trim_matches('"').to_owned()),
                    _ => {}
                }
            }
            match (media.as_str(), version.as_deref()) {
                ("application/openmetrics-text", None | Some("1.0.0")) => {
                    openmetrics = openmetrics.max(quality);
                }
                ("text/plain", None | Some("0.0.4")) | ("text/*" | "*/*", _) => {
                    text = text.max(quality);
                }
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Encodes `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut openmetrics = String::new();
    prometheus_client::encoding::text::encode(&mut openmetrics, registry)?;
    match format {
        Format::OpenMetrics => Ok(openmetrics),
        Format::Text => to_text(&openmetrics),
    }
}

/// Rewrites prometheus-client's OpenMetrics encoding as the Prometheus text format 0.0.4:
/// a counter family is named after its `_total` sample (OpenMetrics names it without the
/// suffix), `info` becomes a gauge named after its `_info` sample, `unknown` becomes
/// `untyped`; `# UNIT`, `# EOF`, `_created` samples and exemplars are dropped.
fn to_text(openmetrics: &str) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(openmetrics.len());
    // prometheus-client writes `# HELP` before `# TYPE`: the help waits for the type.
    let mut help: Option<&str> = None;
    // The OpenMetrics name of the family being read.
    let mut family = "";
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').map_or("", |(_, help)| help));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            family = name;
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), kind),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                _ => (name.to_owned(), kind),
            };
            if let Some(help) = help.take() {
                // The text format escapes only backslashes and newlines in help text.
                writeln!(out, "# HELP {name} {}", help.replace("\\\"", "\""))?;
            }
            writeln!(out, "# TYPE {name} {kind}")?;
        } else if line.starts_with('#') {
            // `# UNIT`, `# EOF`: not part of the text format.
        } else if !line.is_empty() {
            let sample = line.split_once(" # ").map_or(line, |(sample, _)| sample);
            let metric = sample
                .split_once(['{', ' '])
                .map_or(sample, |(metric, _)| metric);
            if metric.strip_suffix("_created") != Some(family) {
                writeln!(out, "{sample}")?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for() {
        let cases = [
            (None, Format::Text),
            (Some(""), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain;version=0.0.4"), Format::Text),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Format::OpenMetrics,
            ),
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0.5, text/plain"),
                Format::Text,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Text),
            (
                Some("application/openmetrics-text;version=0.0.1"),
                Format::Text,
            ),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn text_format_names_counters_after_their_samples() {
        let openmetrics = "# HELP requests Requests.\n# TYPE requests counter\n\
            requests_total{code=\"200\"} 3\nrequests_created{code=\"200\"} 1.5\n\
            # HELP up_seconds Up \\\"time\\\".\n# TYPE up_seconds gauge\n# UNIT up_seconds seconds\n\
            up_seconds 2 # {trace=\"a\"} 1.0\n\
            # HELP build Build.\n# TYPE build info\nbuild_info{version=\"1\"} 1\n# EOF\n";
        assert_eq!(
            to_text(openmetrics).unwrap(),
            "# HELP requests_total Requests.\n# TYPE requests_total counter\n\
             requests_total{code=\"200\"} 3\n\
             # HELP up_seconds Up \"time\".\n# TYPE up_seconds gauge\nup_seconds 2\n\
             # HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n"
        );
    }

    #[test]
    fn proc_stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 \
                    123456 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let parsed = ProcStat::parse(stat).unwrap();
        assert_eq!(
            parsed,
            ProcStat {
                utime: 250,
                stime: 75,
                starttime: 123456
            }
        );
        assert_eq!(parsed.cpu_seconds(), 3.25);
        assert!((parsed.start_time_seconds(1_700_000_000) - 1_700_001_234.56).abs() < 1e-3);
    }

    #[test]
    fn limits_and_status_values_are_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files("Max open files  unlimited unlimited files\n"),
            None
        );
        assert_eq!(
            status_kib("Name:\tx\nVmRSS:\t  5120 kB\n", "VmRSS:"),
            Some(5120)
        );
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }
}
