#!/usr/bin/env bash
# Bounded fuzzing on stable Rust of the decision path (fuzz_targets/decide.rs) and of the
# `_metadata` reader (fuzz_targets/metadata.rs, for a third of the time).
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
# Corpora are built at run time in fuzz/corpus/TARGET from tests/fixtures/*.json and
# tests/fixtures/metadata/ (never committed); crashes land in fuzz/artifacts/TARGET/ and
# are printed with the command that reproduces them.
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

export RUSTC_BOOTSTRAP=1

# fuzz TARGET SECONDS SEED... : builds and runs one target, its corpus seeded from SEED
# files; exits on a crash.
fuzz() {
  local target=$1 secs=$2
  shift 2
  local corpus=corpus/$target
  mkdir -p "$corpus" "artifacts/$target"
  cp "$@" "$corpus"/
  echo "fuzz: building the $target target" >&2
  if ! nice -n 10 cargo fuzz build --sanitizer none --target-dir "$fuzz_target_dir" "$target"; then
    echo "fuzz: the $target target does not build" >&2
    exit 2
  fi
  echo "fuzz: $target for ${secs}s (corpus $corpus)" >&2
  local status=0 dict=()
  [[ -f $target.dict ]] && dict=(-dict="$target.dict")
  nice -n 10 cargo fuzz run --sanitizer none --target-dir "$fuzz_target_dir" "$target" "$corpus" -- \
    -max_total_time="$secs" "${dict[@]}" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 > "fuzz-$target.log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "fuzz-$target.log" >&2 || true
  if [[ $status -ne 0 ]] || grep -q 'Test unit written to' "fuzz-$target.log"; then
    grep -B2 -A12 -E 'panicked at|ERROR: libFuzzer' "fuzz-$target.log" | head -60 >&2 || tail -40 "fuzz-$target.log" >&2
    echo "fuzz: CRASH in $target (full log fuzz/fuzz-$target.log); reproduce with:" >&2
    for crash in "artifacts/$target"/*; do
      [[ -e $crash ]] && echo "  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $target $crash)" >&2
    done
    exit 1
  fi
}

fuzz decide "$seconds" ../tests/fixtures/*.json
# The metadata reader is small; a third of the time finds what it can.
fuzz metadata "$(( (seconds + 2) / 3 ))" ../tests/fixtures/metadata/flink-*
echo "fuzz: no crash in ${seconds}s" >&2
