#!/bin/sh
# The artifacts of a release, for the version in Cargo.toml:
#
#   deploy/release.sh manifest [OUT]  render deploy/release/install.yaml (or OUT):
#                                     deploy/overlays/cert-manager, as one file
#   deploy/release.sh binary          build the release binary (cargo build --release
#                                     --locked) and check that it is the one to ship:
#                                     its --version, no symbol table, no debug sections
#   deploy/release.sh                 both
#
# KUBECTL names the kubectl that renders (default: kubectl; its kustomize must be v4.1
# or later, as for the overlays). tests/release.rs checks that the committed
# install.yaml equals a fresh render, and that every place naming the version agrees.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
kubectl=${KUBECTL:-kubectl}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || { echo "release.sh: no version in Cargo.toml" >&2; exit 1; }

manifest() {
  out=${1:-$root/deploy/release/install.yaml}
  rendered=$("$kubectl" kustomize "$root/deploy/overlays/cert-manager")
  if ! printf '%s\n' "$rendered" | grep -q "image: savepoint-webhook:$version\$"; then
    echo "release.sh: the rendered Deployment does not run savepoint-webhook:$version" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$out")"
  {
    echo "# savepoint-webhook $version: deploy/overlays/cert-manager rendered by deploy/release.sh;"
    echo "# regenerate it rather than editing it. Needs cert-manager v1.0+. Holds no CRD:"
    echo "# install the CRDs first (README.md, \"Install\"), then"
    echo "#   kubectl apply -f install.yaml"
    printf '%s\n' "$rendered"
  } > "$out.new"
  mv -f "$out.new" "$out"
  echo "release.sh: wrote $out" >&2
}

binary() {
  target=${CARGO_TARGET_DIR:-$root/target}
  (cd "$root" && cargo build --release --locked --bin savepoint-webhook)
  bin="$target/release/savepoint-webhook"
  said=$("$bin" --version)
  if [ "$said" != "savepoint-webhook $version" ]; then
    echo "release.sh: $bin --version says '$said', not savepoint-webhook $version" >&2
    exit 1
  fi
  sections=$(readelf --section-headers --wide "$bin")
  if printf '%s\n' "$sections" | grep -E '\.(symtab|strtab|debug_[a-z_]+)( |$)' >&2; then
    echo "release.sh: $bin carries a symbol table or debug sections (above); see [profile.release]" >&2
    exit 1
  fi
  echo "release.sh: $bin is savepoint-webhook $version, with no symbol table and no debug sections" >&2
}

case ${1:-all} in
  manifest) shift; manifest "$@" ;;
  binary) binary ;;
  all) manifest && binary ;;
  *) echo "usage: deploy/release.sh [manifest [OUT] | binary]" >&2; exit 2 ;;
esac
