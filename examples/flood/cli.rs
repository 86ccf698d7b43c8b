//! The flood harness: its flags.

use super::*;

/// Floods a `savepoint-webhook` binary with one kind of hostile traffic at a time and
/// reports the peak memory of each.
#[derive(Parser, Debug)]
pub(crate) struct Args {
    /// The `savepoint-webhook` binary to measure.
    #[arg(long)]
    pub(crate) binary: PathBuf,
    /// Floods to run, comma separated, each against a fresh server.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub(crate) kind: Vec<Which>,
    /// How long each flood lasts, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) seconds: u64,
    /// HTTP/2 connections of the request floods.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) connections: u64,
    /// Requests in flight on each of those connections.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) streams: u64,
    /// A flood stops early once the server's RSS passes this many MiB (the machine may be
    /// shared).
    #[arg(long, default_value_t = 4096)]
    pub(crate) rss_limit_mib: u64,
    /// Worker threads of the client runtime [default: the number of cores].
    #[arg(long)]
    pub(crate) client_threads: Option<usize>,
}

/// One kind of flood, or all of them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum Which {
    All,
    GenerateName,
    UniqueLocations,
    CopiedWarning,
    H2Unread,
    IdleSlots,
    ErrorEcho,
}

impl Which {
    pub(crate) const KINDS: [Which; 6] = [
        Which::GenerateName,
        Which::UniqueLocations,
        Which::CopiedWarning,
        Which::H2Unread,
        Which::IdleSlots,
        Which::ErrorEcho,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Which::All => "all",
            Which::GenerateName => "generate-name",
            Which::UniqueLocations => "unique-locations",
            Which::CopiedWarning => "copied-warning",
            Which::H2Unread => "h2-unread",
            Which::IdleSlots => "idle-slots",
            Which::ErrorEcho => "error-echo",
        }
    }
}

/// The floods `kinds` names, in the order of [`Which::KINDS`], each once.
pub(crate) fn selected(kinds: &[Which]) -> Vec<Which> {
    Which::KINDS
        .into_iter()
        .filter(|k| kinds.contains(k) || kinds.contains(&Which::All))
        .collect()
}
