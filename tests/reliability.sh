#!/usr/bin/env bash
# Reliability and supply-chain checks that are not `cargo test`:
#   * a bounded fuzz run of the decision path (fuzz/run.sh, 60 s by default);
#   * `cargo deny check bans licenses sources` against deny.toml.
# Installs cargo-fuzz and cargo-deny from crates.io when missing.
#
#   tests/reliability.sh [FUZZ_SECONDS]
#
# Advisories are not checked here (the RustSec database is fetched from GitHub); see
# SECURITY.md for that command.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

echo "reliability: fuzz ${seconds}s" >&2
fuzz/run.sh "$seconds"

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "reliability: installing cargo-deny from crates.io" >&2
  cargo install cargo-deny --locked
fi
echo "reliability: cargo deny check bans licenses sources" >&2
cargo deny check bans licenses sources
echo "reliability: ok" >&2
