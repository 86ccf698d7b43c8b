#!/usr/bin/env bash
# The project's one test command (.ci/run execs it on a clean checkout):
#   1. tests/provision.sh: Debian packages, and kube-apiserver 1.20.2 (the oldest
#      supported) built once with Debian's Go and cached; tests/provision-kube-current.sh:
#      kube-apiserver, kubectl 1.37.2 and etcd 3.6.16 built once with the machine's Go
#      from the module proxy and cached (cold builds take minutes; later runs well under
#      a second); tests/provision-flink.sh: Flink and moto for location verification;
#      tests/provision-prometheus.sh: promtool, which tests/metrics.rs runs on scrapes;
#      tests/provision-helm.sh: helm v3, built once from its Go module for tests/helm.rs;
#   2. cargo fmt --check and cargo clippy (all targets, feature e2e, warnings denied);
#   3. cargo test --all-targets --features e2e: unit, HTTPS, CLI and end-to-end tests,
#      the end-to-end ones against 1.20.2;
#   4. the end-to-end suites again against 1.37.2;
#   5. the performance smoke and the reliability checks.
# Stops at the first failing step and names it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/cache-env.sh
source tests/cache-env.sh

started=$SECONDS
current=""
step() {
  current=$1
  printf '\n==> run-all: %s\n' "$1" >&2
}
echo "run-all: cargo target dir $CARGO_TARGET_DIR (shared by every clone)" >&2
trap 'status=$?; if [[ $status -ne 0 ]]; then printf "\n==> run-all: FAILED at: %s (exit %s)\n" "$current" "$status" >&2; fi' EXIT

step "provision the test control plane (tests/provision.sh)"
if ! env_lines=$(tests/provision.sh --print-env); then
  echo "run-all: tests/provision.sh failed; see its output above" >&2
  exit 1
fi
eval "$env_lines"
echo "run-all: SAVEPOINT_WEBHOOK_KUBE_APISERVER=$SAVEPOINT_WEBHOOK_KUBE_APISERVER" >&2
echo "run-all: SAVEPOINT_WEBHOOK_ETCD=$SAVEPOINT_WEBHOOK_ETCD" >&2

step "provision the current control plane (tests/provision-kube-current.sh)"
if ! current_env=$(tests/provision-kube-current.sh --print-env); then
  echo "run-all: tests/provision-kube-current.sh failed; see its output above" >&2
  exit 1
fi
eval "$current_env"
echo "run-all: SAVEPOINT_WEBHOOK_KUBE_APISERVER_CURRENT=$SAVEPOINT_WEBHOOK_KUBE_APISERVER_CURRENT" >&2

step "provision Flink and moto for location verification (tests/provision-flink.sh)"
if ! flink_env=$(tests/provision-flink.sh --print-env); then
  echo "run-all: tests/provision-flink.sh failed; see its output above" >&2
  exit 1
fi
eval "$flink_env"

step "provision promtool for the metrics tests (tests/provision-prometheus.sh)"
if ! prometheus_env=$(tests/provision-prometheus.sh --print-env); then
  echo "run-all: tests/provision-prometheus.sh failed; see its output above" >&2
  exit 1
fi
eval "$prometheus_env"
echo "run-all: SAVEPOINT_WEBHOOK_PROMTOOL=$SAVEPOINT_WEBHOOK_PROMTOOL" >&2

step "provision helm for the chart tests (tests/provision-helm.sh)"
if ! helm_env=$(tests/provision-helm.sh --print-env); then
  echo "run-all: tests/provision-helm.sh failed; see its output above" >&2
  exit 1
fi
eval "$helm_env"
echo "run-all: SAVEPOINT_WEBHOOK_HELM=$SAVEPOINT_WEBHOOK_HELM" >&2

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets --features e2e -- -D warnings"
cargo clippy --all-targets --features e2e -- -D warnings

floor_version=$("$SAVEPOINT_WEBHOOK_KUBE_APISERVER" --version | awk '{print $2}')
current_version=$("$SAVEPOINT_WEBHOOK_KUBE_APISERVER_CURRENT" --version | awk '{print $2}')

step "cargo test --all-targets --features e2e --no-fail-fast (end-to-end on Kubernetes $floor_version)"
cargo test --all-targets --features e2e --no-fail-fast

# Every test file that runs against the control plane.
e2e_tests=(e2e reconcile_e2e deploy faults fail_open cel_parity soak cold_start verify tenants rollout renewal helm reports dashboard)
step "end-to-end suites on Kubernetes $current_version: ${e2e_tests[*]}"
SAVEPOINT_WEBHOOK_KUBE_APISERVER="$SAVEPOINT_WEBHOOK_KUBE_APISERVER_CURRENT" \
SAVEPOINT_WEBHOOK_ETCD="$SAVEPOINT_WEBHOOK_ETCD_CURRENT" \
SAVEPOINT_WEBHOOK_KUBECTL="$SAVEPOINT_WEBHOOK_KUBECTL_CURRENT" \
  cargo test --features e2e --no-fail-fast "${e2e_tests[@]/#/--test=}"

step "performance smoke: load harness quick mode and benchmarks once (tests/perf-smoke.sh)"
tests/perf-smoke.sh

step "reliability: 60 s fuzz run and cargo deny (tests/reliability.sh)"
tests/reliability.sh 60

current=""
printf '\n==> run-all: all steps passed in %d s\n' "$((SECONDS - started))" >&2
