//! The load harness: the report and its checks against the targets.

use super::*;

pub(crate) fn micros(ns: u64) -> String {
    let us = ns as f64 / 1000.0;
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// A figure and its ratio to the baseline's, when there is one to compare with.
pub(crate) fn cell(text: String, value: f64, baseline: Option<f64>) -> String {
    match baseline {
        Some(baseline) if baseline > 0.0 => format!("{text} ({:.2})", value / baseline),
        _ => text,
    }
}

/// Results of one protocol at one index size.
pub(crate) struct ProtoResults {
    pub(crate) proto: Proto,
    pub(crate) saturation: Vec<(Route, Phase)>,
    pub(crate) rate: f64,
    pub(crate) fixed: Vec<(Route, Phase)>,
}

pub(crate) fn table(results: &ProtoResults, plan: &Plan) -> String {
    let concurrency = match results.proto {
        Proto::Http1 => format!("{} connections", plan.h1_connections),
        Proto::Http2 => format!(
            "{} connections x {} streams",
            plan.h2_connections, plan.h2_streams
        ),
    };
    let mut out = String::new();
    let row = |out: &mut String, cells: [&str; 9]| {
        let _ = writeln!(
            out,
            "{:<10} {:>15} {:>13} {:>13} {:>14} {:>13} {:>6} {:>13} {:>11}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8]
        );
    };
    let blocks = [
        (
            format!(
                "{} over {concurrency}, saturation (closed loop)",
                results.proto.name()
            ),
            &results.saturation,
        ),
        (
            format!(
                "{} over {concurrency}, fixed rate {} req/s (open loop)",
                results.proto.name(),
                grouped(results.rate as u64)
            ),
            &results.fixed,
        ),
    ];
    for (title, phases) in blocks {
        let _ = writeln!(out, "{title}; (ratio to baseline)");
        row(
            &mut out,
            [
                "route",
                "req/s",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "p99 rnd µs",
                "late%",
                "server µs/req",
                "all µs/req",
            ],
        );
        let base = phases
            .iter()
            .find(|(route, _)| *route == Route::Baseline)
            .map(|(_, phase)| phase);
        for (route, phase) in phases.iter() {
            // Ratios to the baseline, on every row but its own.
            let base = base.filter(|_| *route != Route::Baseline);
            let lat = |q: f64| {
                let v = phase.percentile_ns(q);
                cell(micros(v), v as f64, base.map(|b| b.percentile_ns(q) as f64))
            };
            let (server, all) = phase.cpu_per_request_ns();
            row(
                &mut out,
                [
                    route.name(),
                    &cell(
                        grouped(phase.rate() as u64),
                        phase.rate(),
                        base.map(Phase::rate),
                    ),
                    &lat(0.50),
                    &lat(0.99),
                    &lat(0.999),
                    &{
                        let v = phase.median_round_p99_ns();
                        cell(
                            micros(v),
                            v as f64,
                            base.map(|b| b.median_round_p99_ns() as f64),
                        )
                    },
                    &match phase.load {
                        Load::Saturation => "-".to_string(),
                        Load::Rate(_) => format!(
                            "{:.1}",
                            phase.late as f64 * 100.0 / phase.requests.max(1) as f64
                        ),
                    },
                    &cell(
                        micros(server),
                        server as f64,
                        base.map(|b| b.cpu_per_request_ns().0 as f64),
                    ),
                    &cell(
                        micros(all),
                        all as f64,
                        base.map(|b| b.cpu_per_request_ns().1 as f64),
                    ),
                ],
            );
        }
    }
    out
}

/// Everything measured at one index size.
pub(crate) struct SizeResults {
    pub(crate) built: BuiltSummary,
    pub(crate) protos: Vec<ProtoResults>,
}

/// What one index cost to build.
pub(crate) struct BuiltSummary {
    pub(crate) savepoints: usize,
    pub(crate) bytes_per_savepoint: f64,
    pub(crate) bytes_per_deployment: f64,
    pub(crate) build_time: Duration,
    pub(crate) rss_growth: i64,
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), Linux {}, load average {}",
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}
