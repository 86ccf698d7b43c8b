#!/usr/bin/env bash
# Keeps the performance tooling from rotting (about 30 s once built):
#   1. the load harness in quick mode: the real server over TLS, HTTP/1.1 and HTTP/2,
#      /mutate, /validate and the baseline at two small index sizes. It fails when a
#      request fails or an answer is wrong (every answer must be allowed, and exactly the
#      requests naming an already referenced location must be set to COPIED);
#   2. every criterion benchmark of benches/decision.rs and benches/metadata.rs run once
#      (criterion's test mode).
# Figures are printed, never asserted: shared CI machines are too noisy for that. For
# real measurements see README.md, "Performance".
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> perf-smoke: load harness, quick mode" >&2
cargo run --release --example load -- --quick

echo "==> perf-smoke: benchmarks, test mode" >&2
cargo bench --bench decision --bench metadata -- --test

echo "==> perf-smoke: passed" >&2
