#!/usr/bin/env bash
# Provision the location-verification tests (tests/verify.rs):
#   * Java 17 (Debian's openjdk-17-jre-headless when no java >= 11 is on PATH),
#   * a Python venv with PyPI `apache-flink` 2.2 (a local MiniCluster writes real
#     savepoints and checkpoints) and `moto[server]` (an S3 API on loopback), under
#     ${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook/flink-venv,
#   * a second venv with `apache-flink` 1.20, the last 1.x release line, beside it in
#     flink-venv-1.20: the same job writes the older release's snapshots.
#
# Usage:
#   tests/provision-flink.sh               provision; progress goes to stderr
#   tests/provision-flink.sh --print-env   provision, then print `export ...` lines:
#                                            eval "$(tests/provision-flink.sh --print-env)"
#
# Safe to run repeatedly: a second run checks each venv's stamp and interpreter and
# returns in well under a second.
set -euo pipefail

FLINK_VERSION=2.2.1
FLINK1_VERSION=1.20.5
MOTO_VERSION=5.2.5
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook"
VENV="$CACHE_ROOT/flink-venv"
VENV1="$CACHE_ROOT/flink-venv-1.20"

print_env=0
case "${1:-}" in
  "") ;;
  --print-env) print_env=1 ;;
  -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# provision_venv VENV IMPORTS PACKAGE...: one `pip install` of PACKAGEs into VENV unless
# its stamp already names exactly them; IMPORTS are the modules that must then import.
provision_venv() {
  local venv=$1 imports=$2
  shift 2
  local want="$*" python="$venv/bin/python" stamp="$venv/.provisioned"
  if [[ -f $stamp && $(cat "$stamp") == "$want" && -x $python ]] &&
     "$python" -c 'import sys' 2>/dev/null; then
    log "$want already in $venv"
    return 0
  fi
  command -v python3 >/dev/null || { log "python3 is needed (3.9 to 3.11)"; exit 1; }
  if [[ ! -x $python ]]; then
    log "creating venv $venv"
    mkdir -p "$CACHE_ROOT"
    python3 -m venv "$venv" >&2
  fi
  log "pip install $want into $venv (a few minutes on first run)"
  "$python" -m pip install -q --disable-pip-version-check "$@" >&2
  "$python" -c "import $imports" >&2
  echo "$want" >"$stamp"
  log "installed into $venv"
}

provision_venv "$VENV" pyflink,moto "apache-flink==$FLINK_VERSION" "moto[server]==$MOTO_VERSION"
provision_venv "$VENV1" pyflink "apache-flink==$FLINK1_VERSION"

if [[ $print_env -eq 1 ]]; then
  echo "export SAVEPOINT_WEBHOOK_FLINK_PYTHON='$VENV/bin/python'"
  echo "export SAVEPOINT_WEBHOOK_MOTO_SERVER='$VENV/bin/moto_server'"
  echo "export SAVEPOINT_WEBHOOK_FLINK1_PYTHON='$VENV1/bin/python'"
fi
