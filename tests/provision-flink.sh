#!/usr/bin/env bash
# Provision the location-verification tests (tests/verify.rs):
#   * Java 17 (Debian's openjdk-17-jre-headless when no java >= 11 is on PATH),
#   * a Python venv with PyPI `apache-flink` (a local MiniCluster writes real savepoints
#     and checkpoints) and `moto[server]` (an S3 API on loopback), under
#     ${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook/flink-venv.
#
# Usage:
#   tests/provision-flink.sh               provision; progress goes to stderr
#   tests/provision-flink.sh --print-env   provision, then print `export ...` lines:
#                                            eval "$(tests/provision-flink.sh --print-env)"
#
# Safe to run repeatedly: a second run checks a stamp and the interpreter and returns in
# well under a second.
set -euo pipefail

FLINK_VERSION=2.2.1
MOTO_VERSION=5.2.5
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook"
VENV="$CACHE_ROOT/flink-venv"
STAMP="$VENV/.provisioned"
WANT="apache-flink==$FLINK_VERSION moto[server]==$MOTO_VERSION"

print_env=0
case "${1:-}" in
  "") ;;
  --print-env) print_env=1 ;;
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "provision-flink: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

log() { echo "provision-flink: $*" >&2; }

java_major() {
  command -v java >/dev/null || { echo 0; return; }
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1
}

if [[ $(java_major) -lt 11 ]]; then
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "no java >= 11 and no sudo to install it"; exit 1; }
    SUDO=(sudo)
  fi
  log "installing openjdk-17-jre-headless"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q update >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q install openjdk-17-jre-headless >&2
fi

PYTHON="$VENV/bin/python"
if [[ -f $STAMP && $(cat "$STAMP") == "$WANT" && -x $PYTHON ]] &&
   "$PYTHON" -c 'import sys' 2>/dev/null; then
  log "apache-flink $FLINK_VERSION and moto already in $VENV"
else
  command -v python3 >/dev/null || { log "python3 is needed (3.9 to 3.12)"; exit 1; }
  if [[ ! -x $PYTHON ]]; then
    log "creating venv $VENV"
    mkdir -p "$CACHE_ROOT"
    python3 -m venv "$VENV" >&2
  fi
  log "pip install $WANT (a few minutes on first run)"
  # shellcheck disable=SC2086
  "$PYTHON" -m pip install -q --disable-pip-version-check $WANT >&2
  "$PYTHON" -c 'import pyflink, moto' >&2
  echo "$WANT" >"$STAMP"
  log "installed into $VENV"
fi

if [[ $print_env -eq 1 ]]; then
  echo "export SAVEPOINT_WEBHOOK_FLINK_PYTHON='$PYTHON'"
  echo "export SAVEPOINT_WEBHOOK_MOTO_SERVER='$VENV/bin/moto_server'"
fi
