#!/usr/bin/env bash
# Provision the end-to-end test prerequisites on Debian bookworm:
#   * system packages (etcd, openssl, curl, kubectl, Go toolchain, ...),
#   * a kube-apiserver 1.20.2 built from Debian's `kubernetes` source package,
#     cached under ${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook/.
#
# Usage:
#   tests/provision.sh               provision; progress goes to stderr
#   tests/provision.sh --print-env   provision, then print `export ...` lines
#                                    on stdout, e.g.:
#                                      eval "$(tests/provision.sh --print-env)"
#
# Safe to run repeatedly: installed packages and a cached binary are reused.
set -euo pipefail

KUBE_VERSION=1.20.2
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook"
CACHE_DIR="$CACHE_ROOT/kube-apiserver-$KUBE_VERSION"
APISERVER_BIN="$CACHE_DIR/kube-apiserver"
BUILD_DIR="$CACHE_ROOT/build-kubernetes-$KUBE_VERSION"
ETCD_BIN=/usr/bin/etcd
SRC_LIST=/etc/apt/sources.list.d/savepoint-webhook-src.sources

print_env=0
case "${1:-}" in
  "") ;;
  --print-env) print_env=1 ;;
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "provision: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

log() { echo "provision: $*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "not root and no sudo; cannot install packages"; exit 1; }
  SUDO=(sudo)
fi
apt_get() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@"; }

apt_updated=0
apt_update() {
  if [[ $apt_updated -eq 0 ]]; then
    log "apt-get update"
    apt_get update >&2
    apt_updated=1
  fi
}

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

# Install the given packages, skipping those already installed.
ensure_packages() {
  local missing=() p
  for p in "$@"; do is_installed "$p" || missing+=("$p"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    apt_update
    log "installing: ${missing[*]}"
    apt_get install --no-install-recommends "${missing[@]}" >&2
  fi
}

# --- runtime packages (needed by the tests themselves) ----------------------
runtime_pkgs=(etcd-server openssl curl ca-certificates)
# Any kubectl will do for the tests; Debian's kubernetes-client (1.20) would
# clash over /usr/bin/kubectl with an already installed one (e.g. Google's).
if ! command -v kubectl >/dev/null; then runtime_pkgs+=(kubernetes-client); fi
ensure_packages "${runtime_pkgs[@]}"

# --- kube-apiserver ----------------------------------------------------------
if [[ -x "$APISERVER_BIN" ]]; then
  log "using cached kube-apiserver $KUBE_VERSION: $APISERVER_BIN"
else
  log "no cached kube-apiserver at $APISERVER_BIN; building it from Debian's 'kubernetes' source package"
  log "WARNING: a cold build takes ~3-8 minutes on 2 cores"

  ensure_packages golang-go rsync jq make dpkg-dev golang-github-modern-go-reflect2-dev

  if [[ ! -f "$SRC_LIST" ]]; then
    log "adding deb-src entry $SRC_LIST"
    "${SUDO[@]}" tee "$SRC_LIST" >/dev/null <<'EOF'
# Added by savepoint-webhook tests/provision.sh (needed for `apt-get source kubernetes`).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_updated=0
  fi
  if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes$'; then
    apt_updated=0
    apt_update
  fi

  log "fetching source into $BUILD_DIR"
  rm -rf "$BUILD_DIR"
  mkdir -p "$BUILD_DIR"
  (cd "$BUILD_DIR" && apt-get source -q kubernetes >&2)
  src=$(find "$BUILD_DIR" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
  [[ -n "$src" && -f "$src/Makefile" ]] || { log "unpacked source not found in $BUILD_DIR"; exit 1; }
  case "$src" in
    *"$KUBE_VERSION"*) ;;
    *) log "unexpected source version ($src), expected $KUBE_VERSION"; exit 1 ;;
  esac

  # The vendored reflect2 v1.0.1 crashes under Go >= 1.18 (fatal error: fault
  # in mapiterinit); swap in Debian's 1.0.2 source tree.
  reflect2_src=$(dpkg -L golang-github-modern-go-reflect2-dev \
    | grep -E '/gocode/src/github\.com/modern-go/reflect2$' | head -n1)
  [[ -n "$reflect2_src" && -d "$reflect2_src" ]] || { log "reflect2 source not found"; exit 1; }
  log "replacing vendor/github.com/modern-go/reflect2 with $reflect2_src"
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -rL "$reflect2_src" "$src/vendor/github.com/modern-go/reflect2"
  rm -f "$src/vendor/github.com/modern-go/reflect2/go.mod" "$src/vendor/github.com/modern-go/reflect2/go.sum"

  log "building kube-apiserver (CGO_ENABLED=0 make WHAT=cmd/kube-apiserver)"
  start=$(date +%s)
  (
    cd "$src"
    # Debian's Go 1.19 first on PATH; version stamp since there is no git tree.
    export PATH="/usr/lib/go/bin:$PATH"
    export CGO_ENABLED=0 KUBE_GIT_VERSION="v$KUBE_VERSION" KUBE_GIT_TREE_STATE=clean
    make WHAT=cmd/kube-apiserver >&2
  )
  log "build took $(( $(date +%s) - start )) s"

  built="$src/_output/bin/kube-apiserver"
  [[ -x "$built" ]] || { log "build produced no $built"; exit 1; }
  mkdir -p "$CACHE_DIR"
  cp "$built" "$APISERVER_BIN.tmp.$$"
  mv -f "$APISERVER_BIN.tmp.$$" "$APISERVER_BIN"
  log "cached $APISERVER_BIN"
  if [[ "${SAVEPOINT_WEBHOOK_KEEP_BUILD:-0}" != 1 ]]; then
    log "removing build dir $BUILD_DIR (set SAVEPOINT_WEBHOOK_KEEP_BUILD=1 to keep it)"
    rm -rf "$BUILD_DIR"
  fi
fi

log "kube-apiserver: $("$APISERVER_BIN" --version 2>&1 || true)"
log "etcd: $("$ETCD_BIN" --version 2>&1 | head -n1 || true)"
log "kubectl: $(command -v kubectl)"
log "done"

if [[ $print_env -eq 1 ]]; then
  printf 'export SAVEPOINT_WEBHOOK_KUBE_APISERVER=%q\n' "$APISERVER_BIN"
  printf 'export SAVEPOINT_WEBHOOK_ETCD=%q\n' "$ETCD_BIN"
fi
