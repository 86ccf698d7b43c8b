#!/usr/bin/env bash
# Provision Helm for the chart tests (tests/helm.rs): helm v3.22.0, the newest v3 the Go
# module proxy serves (`go list -m -versions helm.sh/helm/v3`), built with the machine's
# Go from the helm.sh/helm/v3/cmd/helm module and cached under
# ${SAVEPOINT_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook}/helm-3.22.0/.
#
# Usage:
#   tests/provision-helm.sh               provision; progress on stderr
#   tests/provision-helm.sh --print-env   provision, then print an `export ...` line:
#                                           eval "$(tests/provision-helm.sh --print-env)"
#
# Safe to run repeatedly: a cached helm is reused. Needs Go >= the `go` line of helm's
# go.mod (1.26.0; an older Go fetches a newer toolchain through the proxy) and the Go
# module proxy. Run it under `nice -n 10` on a shared machine.
set -euo pipefail

HELM_VERSION=3.22.0
HELM_MODULE=helm.sh/helm/v3
CACHE_ROOT="${SAVEPOINT_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook}"
CACHE_DIR="$CACHE_ROOT/helm-$HELM_VERSION"
HELM_BIN="$CACHE_DIR/helm"
BUILD_DIR="$CACHE_ROOT/build-helm-$HELM_VERSION"
# Used when the machine's Go is older than helm's `go` line.
FALLBACK_TOOLCHAIN=go1.27.3

print_env=0
case "${1:-}" in
  "") ;;
  --print-env) print_env=1 ;;
  -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "provision-helm: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

log() { echo "provision-helm: $*" >&2; }

# The machine's Go first on PATH, as tests/provision-kube-current.sh does (never Debian's
# Go, which is for tests/provision.sh only).
setup_go() {
  local go_bin
  go_bin=$(command -v go) || { log "no 'go' on PATH; install Go >= 1.26"; exit 1; }
  go_bin=$(readlink -f "$go_bin")
  case "$go_bin" in
    /usr/lib/go/*|/usr/lib/go-*/*)
      log "'go' on PATH is Debian's ($go_bin), which is for tests/provision.sh only;"
      log "put a Go >= 1.26 first on PATH (e.g. /usr/local/go/bin)"; exit 1 ;;
  esac
  export PATH="$(dirname "$go_bin"):$PATH"
  unset GOROOT
  export CGO_ENABLED=0
  log "go: $go_bin ($(go env GOVERSION), GOMODCACHE=$(go env GOMODCACHE))"
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

gomod_line() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }

build_helm() {
  setup_go
  local t0 mod goline client_go minor ldflags
  t0=$(date +%s)
  log "building helm $HELM_VERSION in $BUILD_DIR"
  mod=$(go mod download -json "$HELM_MODULE@v$HELM_VERSION" | awk -F'"' '$2 == "GoMod" { print $4 }')
  [[ -f "$mod" ]] || { log "could not download $HELM_MODULE@v$HELM_VERSION"; exit 1; }
  goline=$(gomod_line "$mod" go)
  need_go "$goline"

  rm -rf "$BUILD_DIR"
  mkdir -p "$BUILD_DIR"
  printf 'module savepoint-webhook.invalid/helm-build\n\ngo %s\n\nrequire %s v%s\n' \
    "$goline" "$HELM_MODULE" "$HELM_VERSION" >"$BUILD_DIR/go.mod"
  log "resolving and downloading modules (go get $HELM_MODULE/cmd/helm@v$HELM_VERSION)"
  (cd "$BUILD_DIR" && go get "$HELM_MODULE/cmd/helm@v$HELM_VERSION" >&2)
  log "module resolution + download took $(( $(date +%s) - t0 )) s"

  # The same stamps as helm's Makefile: its version, and the Kubernetes version that
  # `helm template` and `helm lint` assume, from the client-go it is built with
  # (client-go v0.37.x -> 1.37).
  client_go=$(cd "$BUILD_DIR" && go list -m -f '{{.Version}}' k8s.io/client-go)
  minor=${client_go#v0.}; minor=${minor%%.*}
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  local start
  start=$(date +%s)
  log "building helm (go build -trimpath $HELM_MODULE/cmd/helm, client-go $client_go)"
  (cd "$BUILD_DIR" && go build -trimpath -ldflags="$ldflags" -o "$BUILD_DIR/helm" \
     "$HELM_MODULE/cmd/helm" >&2)
  log "helm build took $(( $(date +%s) - start )) s ($(( $(date +%s) - t0 )) s in all)"

  mkdir -p "$CACHE_DIR"
  cp "$BUILD_DIR/helm" "$HELM_BIN.tmp.$$"
  chmod 755 "$HELM_BIN.tmp.$$"
  mv -f "$HELM_BIN.tmp.$$" "$HELM_BIN"
  log "cached $HELM_BIN"
  if [[ "${SAVEPOINT_WEBHOOK_KEEP_BUILD:-0}" != 1 ]]; then
    rm -rf "$BUILD_DIR"
  fi
}

if [[ -x "$HELM_BIN" ]]; then
  log "using cached helm $HELM_VERSION: $HELM_BIN"
else
  build_helm
fi
log "helm: $("$HELM_BIN" version --short 2>&1 || true)"

if [[ $print_env -eq 1 ]]; then
  printf 'export SAVEPOINT_WEBHOOK_HELM=%q\n' "$HELM_BIN"
fi
