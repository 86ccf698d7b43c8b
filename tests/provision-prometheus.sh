#!/usr/bin/env bash
# Provision the metrics tests (tests/metrics.rs): `promtool`, from Debian's `prometheus`
# package when no promtool is on PATH.
#
# Usage:
#   tests/provision-prometheus.sh               provision; progress goes to stderr
#   tests/provision-prometheus.sh --print-env   provision, then print `export ...` lines:
#                                                 eval "$(tests/provision-prometheus.sh --print-env)"
#
# Safe to run repeatedly: an installed promtool is reused.
set -euo pipefail

print_env=0
case "${1:-}" in
  "") ;;
  --print-env) print_env=1 ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "provision-prometheus: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

log() { echo "provision-prometheus: $*" >&2; }

if ! command -v promtool >/dev/null; then
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "no promtool and no sudo to install it"; exit 1; }
    SUDO=(sudo)
  fi
  apt_get() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@"; }
  log "installing Debian's prometheus package (it ships promtool)"
  apt_get update >&2
  apt_get install --no-install-recommends prometheus >&2
fi

PROMTOOL=$(command -v promtool) || { log "promtool still not on PATH"; exit 1; }
log "using $PROMTOOL ($("$PROMTOOL" --version 2>&1 | head -n1))"

if [[ $print_env -eq 1 ]]; then
  echo "export SAVEPOINT_WEBHOOK_PROMTOOL='$PROMTOOL'"
fi
