#!/usr/bin/env bash
# The project's one test command: style checks, unit, HTTPS, CLI and end-to-end tests.
# Provisions the test control plane (etcd and kube-apiserver) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "run-all: cargo fmt --check" >&2
cargo fmt --all -- --check
echo "run-all: cargo clippy" >&2
cargo clippy --all-targets --features e2e -- -D warnings
echo "run-all: cargo test" >&2
cargo test --all-targets
