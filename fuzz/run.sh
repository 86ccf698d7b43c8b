#!/usr/bin/env bash
# Bounded fuzzing of the decision path (fuzz_targets/decide.rs) on stable Rust.
#
#   fuzz/run.sh [SECONDS]     default 60; exit code non-zero when a crash was found
#
# Installs a pinned cargo-fuzz into the tools cache (tests/cache-env.sh). cargo-fuzz drives libFuzzer through
# rustc's SanitizerCoverage flags, which stable rustc accepts; `-s none` skips the
# address sanitizer (a nightly-only -Z flag) and RUSTC_BOOTSTRAP=1 lets the remaining
# unstable flags of cargo-fuzz through. Rust code is memory safe here, so the sanitizer
# would mainly check the C++ of libFuzzer itself; panics and failed assertions are the
# crashes looked for.
#
# The corpus is built at run time in fuzz/corpus/decide from tests/fixtures/*.json (never
# committed); crashes land in fuzz/artifacts/decide/ and are printed with the command
# that reproduces them.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")"
# shellcheck source=tests/cache-env.sh
source ../tests/cache-env.sh
ensure_cargo_tool cargo-fuzz cargo-fuzz 0.13.2
# The fuzz build (instrumented, its own workspace) keeps its own cached target dir.
fuzz_target_dir="$SAVEPOINT_WEBHOOK_CACHE/fuzz-target"
# Resolve the fuzzed crate's dependencies to the versions the main build uses.
[[ -f Cargo.lock ]] || cp ../Cargo.lock Cargo.lock

corpus=corpus/decide
mkdir -p "$corpus" artifacts/decide
cp ../tests/fixtures/*.json "$corpus"/

export RUSTC_BOOTSTRAP=1
echo "fuzz: building the decide target" >&2
if ! nice -n 10 cargo fuzz build --sanitizer none --target-dir "$fuzz_target_dir" decide; then
  echo "fuzz: the fuzz target does not build" >&2
  exit 2
fi
echo "fuzz: decide for ${seconds}s (corpus $corpus)" >&2
status=0
nice -n 10 cargo fuzz run --sanitizer none --target-dir "$fuzz_target_dir" decide "$corpus" -- \
  -max_total_time="$seconds" -dict=decide.dict -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 > fuzz.log 2>&1 || status=$?
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' fuzz.log >&2 || true
if [[ $status -ne 0 ]] || grep -q 'Test unit written to' fuzz.log; then
  grep -B2 -A12 -E 'panicked at|ERROR: libFuzzer' fuzz.log | head -60 >&2 || tail -40 fuzz.log >&2
  echo "fuzz: CRASH (full log fuzz/fuzz.log); reproduce with:" >&2
  for crash in artifacts/decide/*; do
    [[ -e $crash ]] && echo "  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none decide $crash)" >&2
  done
  exit 1
fi
echo "fuzz: no crash in ${seconds}s" >&2
