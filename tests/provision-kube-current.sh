#!/usr/bin/env bash
# Provision a *current* Kubernetes control plane for the end-to-end tests:
#   * kube-apiserver and kubectl 1.37.2, built with the machine's Go from the
#     k8s.io/kubernetes module (Go module proxy), cached under
#     ${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook/kube-1.37.2/,
#   * etcd 3.6.16, built from the go.etcd.io/etcd/server/v3 module into the
#     same directory (Debian's etcd 3.4 lacks what 1.37 needs; see build_etcd).
# The 1.20.2 control plane of tests/provision.sh is left alone; the two use
# separate Go toolchains (this script never uses Debian's /usr/lib/go).
# kube-apiserver 1.37 takes the 1.20 flags of tests/common/control_plane.rs
# except --insecure-port (removed in 1.24; 1.37 fails on "unknown flag").
#
# Usage:
#   tests/provision-kube-current.sh               provision; progress on stderr
#   tests/provision-kube-current.sh --print-env   provision, then print `export ...`
#                                                 lines on stdout, e.g.:
#                          eval "$(tests/provision-kube-current.sh --print-env)"
#
# Safe to run repeatedly: cached binaries are reused (a warm run takes well
# under a second). Needs Go >= the `go` line of kubernetes' go.mod (1.26.0)
# and the Go module proxy. Run it under `nice -n 10` on a shared machine.
set -euo pipefail

KUBE_VERSION=1.37.2
KUBE_MINOR=${KUBE_VERSION#*.}; KUBE_MINOR=${KUBE_MINOR%%.*}   # 37
STAGING_VERSION=v0.${KUBE_VERSION#*.}                           # v0.37.2
ETCD_VERSION=3.6.16
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook"
CACHE_DIR="$CACHE_ROOT/kube-$KUBE_VERSION"
APISERVER_BIN="$CACHE_DIR/kube-apiserver"
KUBECTL_BIN="$CACHE_DIR/kubectl"
ETCD_BIN="$CACHE_DIR/etcd"
BUILD_DIR="$CACHE_ROOT/build-kube-$KUBE_VERSION"
ETCD_BUILD_DIR="$CACHE_ROOT/build-etcd-$ETCD_VERSION"
# Used when the machine's Go is older than a module's `go` line.
FALLBACK_TOOLCHAIN=go1.27.3

print_env=0
case "${1:-}" in
  "") ;;
  --print-env) print_env=1 ;;
  -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "provision-kube-current: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

log() { echo "provision-kube-current: $*" >&2; }

# --- Go toolchain (only when something has to be built) ---------------------
go_ready=0
setup_go() {
  [[ $go_ready -eq 0 ]] || return 0
  local go_bin go_root
  # Resolve the machine's Go before touching PATH, and put its directory first.
  go_bin=$(command -v go) || { log "no 'go' on PATH; install Go >= 1.26"; exit 1; }
  go_bin=$(readlink -f "$go_bin")
  case "$go_bin" in
    /usr/lib/go/*|/usr/lib/go-*/*)
      log "'go' on PATH is Debian's ($go_bin), which is for tests/provision.sh only;"
      log "put a Go >= 1.26 first on PATH (e.g. /usr/local/go/bin)"; exit 1 ;;
  esac
  export PATH="$(dirname "$go_bin"):$PATH"
  unset GOROOT            # never inherit another toolchain's GOROOT
  go_root=$(go env GOROOT)
  export CGO_ENABLED=0
  log "go: $go_bin ($(go env GOVERSION), GOROOT=$go_root, GOMODCACHE=$(go env GOMODCACHE))"
  go_ready=1
}

# Make GOTOOLCHAIN pick a newer Go when the local one is older than $1 (e.g. 1.26.0).
need_go() {
  local want=$1 have
  have=$(go env GOVERSION); have=${have#go}
  if [[ $(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1) != "$want" ]]; then
    log "local Go $have is older than the required $want; using GOTOOLCHAIN=$FALLBACK_TOOLCHAIN"
    export GOTOOLCHAIN=$FALLBACK_TOOLCHAIN
  fi
}

# go.mod directive value ($2 = go|toolchain|godebug) of the go.mod file $1.
gomod_line() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }

# Atomically install a freshly built $1 as $2.
install_bin() {
  mkdir -p "$(dirname "$2")"
  cp "$1" "$2.tmp.$$"
  chmod 755 "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
  log "cached $2"
}

# --- kube-apiserver + kubectl ------------------------------------------------
build_kube() {
  setup_go
  log "building kube-apiserver/kubectl $KUBE_VERSION in $BUILD_DIR"
  log "WARNING: a cold build takes a long while on 2 cores (see the logged times)"

  local t0 kube_mod goline godebug m mods
  t0=$(date +%s)
  kube_mod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" \
    | awk -F'"' '$2 == "GoMod" { print $4 }')
  [[ -f "$kube_mod" ]] || { log "could not download k8s.io/kubernetes@v$KUBE_VERSION"; exit 1; }
  goline=$(gomod_line "$kube_mod" go)
  godebug=$(gomod_line "$kube_mod" godebug)
  need_go "$goline"

  # kubernetes requires its staging modules at v0.0.0 and replaces them with
  # ./staging, which does not apply to a dependent module: replace each with
  # its published v0.<minor>.<patch>.
  mods=$(awk '
    /^require[ \t]*\(/ { r = 1; next }
    r && /^\)/ { r = 0; next }
    r && $1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }
    /^require[ \t]+k8s\.io\// && $3 == "v0.0.0" { print $2 }
  ' "$kube_mod")
  [[ -n "$mods" ]] || { log "no k8s.io/* v0.0.0 requirements found in $kube_mod"; exit 1; }

  rm -rf "$BUILD_DIR"
  mkdir -p "$BUILD_DIR"
  {
    echo "module savepoint-webhook.invalid/kube-build"
    echo
    echo "go $goline"
    [[ -z "$godebug" ]] || { echo; echo "godebug $godebug"; }
    echo
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    echo
    echo "replace ("
    for m in $mods; do echo "	$m => $m $STAGING_VERSION"; done
    echo ")"
  } >"$BUILD_DIR/go.mod"
  log "go.mod: k8s.io/kubernetes v$KUBE_VERSION, $(wc -w <<<"$mods") staging modules => $STAGING_VERSION"

  local pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
  log "resolving and downloading modules (go get ${pkgs[*]})"
  (cd "$BUILD_DIR" && go get "${pkgs[@]/%/@v$KUBE_VERSION}" >&2)
  log "module resolution + download took $(( $(date +%s) - t0 )) s"

  # Same version stamp, tags and flags as kubernetes' hack/lib/golang.sh.
  local ldflags=(-s -w) k v
  for k in gitVersion=v$KUBE_VERSION gitMajor=1 gitMinor=$KUBE_MINOR gitTreeState=clean \
           "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
    for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=("-X" "$v.$k")
    done
  done
  local pkg name start
  for pkg in "${pkgs[@]}"; do
    name=${pkg##*/}
    if [[ -x "$CACHE_DIR/$name" ]]; then log "$name already cached"; continue; fi
    log "building $name (go build -trimpath -tags=selinux,notest,grpcnotrace $pkg)"
    start=$(date +%s)
    (cd "$BUILD_DIR" && go build -trimpath -tags=selinux,notest,grpcnotrace \
       -ldflags="${ldflags[*]}" -o "$BUILD_DIR/$name" "$pkg" >&2)
    log "$name build took $(( $(date +%s) - start )) s"
    install_bin "$BUILD_DIR/$name" "$CACHE_DIR/$name"
  done
  if [[ "${SAVEPOINT_WEBHOOK_KEEP_BUILD:-0}" != 1 ]]; then
    log "removing build dir $BUILD_DIR (set SAVEPOINT_WEBHOOK_KEEP_BUILD=1 to keep it)"
    rm -rf "$BUILD_DIR"
  fi
}

# --- etcd ---------------------------------------------------------------------
# Debian's etcd 3.4.23 (/usr/bin/etcd) serves kube-apiserver 1.37 for plain
# CRUD/list/watch, but lacks RequestWatchProgress, so 1.37 logs "RequestWatchProgress
# feature is not supported" and rejects streaming lists (watch with
# sendInitialEvents=true) with HTTP 500. Build etcd 3.6 from its Go module instead.
build_etcd() {
  setup_go
  log "building etcd $ETCD_VERSION in $ETCD_BUILD_DIR"
  local t0 mod start pkg=go.etcd.io/etcd/server/v3   # its root package is the etcd main
  t0=$(date +%s)
  mod=$(go mod download -json "$pkg@v$ETCD_VERSION" | awk -F'"' '$2 == "GoMod" { print $4 }')
  [[ -f "$mod" ]] || { log "could not download $pkg@v$ETCD_VERSION"; exit 1; }
  need_go "$(gomod_line "$mod" go)"
  # Its go.mod's replace directives (../api, ...) do not apply to a dependent
  # module; its requirements name the published v$ETCD_VERSION siblings.
  rm -rf "$ETCD_BUILD_DIR"
  mkdir -p "$ETCD_BUILD_DIR"
  printf 'module savepoint-webhook.invalid/etcd-build\n\ngo %s\n\nrequire %s v%s\n' \
    "$(gomod_line "$mod" go)" "$pkg" "$ETCD_VERSION" >"$ETCD_BUILD_DIR/go.mod"
  log "resolving and downloading modules (go get $pkg@v$ETCD_VERSION)"
  (cd "$ETCD_BUILD_DIR" && go get "$pkg@v$ETCD_VERSION" >&2)
  log "etcd module resolution + download took $(( $(date +%s) - t0 )) s"
  log "building etcd (go build -trimpath $pkg)"
  start=$(date +%s)
  (cd "$ETCD_BUILD_DIR" && go build -trimpath -ldflags="-s -w" -o "$ETCD_BUILD_DIR/etcd" "$pkg" >&2)
  log "etcd build took $(( $(date +%s) - start )) s"
  install_bin "$ETCD_BUILD_DIR/etcd" "$ETCD_BIN"
  if [[ "${SAVEPOINT_WEBHOOK_KEEP_BUILD:-0}" != 1 ]]; then
    log "removing build dir $ETCD_BUILD_DIR"
    rm -rf "$ETCD_BUILD_DIR"
  fi
}

if [[ -x "$APISERVER_BIN" && -x "$KUBECTL_BIN" ]]; then
  log "using cached kube-apiserver and kubectl $KUBE_VERSION in $CACHE_DIR"
else
  build_kube
fi
if [[ -x "$ETCD_BIN" ]]; then
  log "using cached etcd $ETCD_VERSION: $ETCD_BIN"
else
  build_etcd
fi

log "kube-apiserver: $("$APISERVER_BIN" --version 2>&1 || true)"
log "kubectl: $("$KUBECTL_BIN" version --client 2>&1 | head -n1 || true)"
log "etcd: $("$ETCD_BIN" --version 2>&1 | head -n1 || true)"
for tool in openssl curl; do
  command -v "$tool" >/dev/null || log "WARNING: '$tool' (needed by the tests) is missing; run tests/provision.sh"
done
log "done"

if [[ $print_env -eq 1 ]]; then
  printf 'export SAVEPOINT_WEBHOOK_KUBE_APISERVER_CURRENT=%q\n' "$APISERVER_BIN"
  printf 'export SAVEPOINT_WEBHOOK_KUBECTL_CURRENT=%q\n' "$KUBECTL_BIN"
  printf 'export SAVEPOINT_WEBHOOK_ETCD_CURRENT=%q\n' "$ETCD_BIN"
fi
