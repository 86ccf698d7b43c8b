#!/usr/bin/env bash
# Reliability and supply-chain checks that are not `cargo test`:
#   * a bounded fuzz run of the decision path (fuzz/run.sh, 60 s by default);
#   * `cargo deny check bans licenses sources` against deny.toml.
# Installs pinned cargo-fuzz and cargo-deny into the tools cache (tests/cache-env.sh).
#
#   tests/reliability.sh [FUZZ_SECONDS]
#
# Advisories are not checked here (the RustSec database is fetched from GitHub); see
# SECURITY.md for that command.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/cache-env.sh
source tests/cache-env.sh
seconds="${1:-60}"

echo "reliability: fuzz ${seconds}s" >&2
fuzz/run.sh "$seconds"

ensure_cargo_tool cargo-deny cargo-deny 0.20.2
echo "reliability: cargo deny check bans licenses sources" >&2
cargo deny check bans licenses sources
echo "reliability: ok" >&2
