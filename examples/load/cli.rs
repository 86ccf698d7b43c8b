//! The load harness: its flags.

use super::*;

/// Measures the webhook's routes against a constant-answer baseline, at several index
/// sizes, over HTTP/1.1 and HTTP/2.
#[derive(Parser, Debug)]
pub(crate) struct Args {
    /// How long each measurement phase lasts.
    #[arg(long, default_value = "5s", value_parser = savepoint_webhook::duration::parse_duration)]
    pub(crate) duration: Duration,
    /// Warm-up before each round (connections are open by then; not measured).
    #[arg(long, default_value = "1s", value_parser = savepoint_webhook::duration::parse_duration)]
    pub(crate) warmup: Duration,
    /// Rounds each phase is split into, interleaved across routes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) rounds: u32,
    /// Offered rate of the open loop, requests per second [default: half the lowest
    /// saturation rate of the first index size].
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Index sizes to measure, in Savepoints, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "0,100000,1000000")]
    pub(crate) sizes: Vec<usize>,
    /// Deployments in the index.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) deployments: usize,
    /// HTTP/1.1 connections (one request in flight on each).
    #[arg(long, default_value_t = 64)]
    pub(crate) h1_connections: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    pub(crate) h2_connections: usize,
    /// Concurrent streams on each HTTP/2 connection.
    #[arg(long, default_value_t = 16)]
    pub(crate) h2_streams: usize,
    /// Protocols to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "http1,http2")]
    pub(crate) protocols: Vec<Proto>,
    /// Routes to measure, comma separated; ratios need the baseline among them.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,mutate,validate"
    )]
    pub(crate) routes: Vec<Route>,
    /// Worker threads of the server runtime [default: the number of cores].
    #[arg(long)]
    pub(crate) server_threads: Option<usize>,
    /// Worker threads of the client runtime [default: the number of cores].
    #[arg(long)]
    pub(crate) client_threads: Option<usize>,
    /// Short phases and small indexes (about 20 s): checks the harness works, measures
    /// little. Overrides --duration, --warmup, --sizes and --deployments.
    #[arg(long)]
    pub(crate) quick: bool,
}
