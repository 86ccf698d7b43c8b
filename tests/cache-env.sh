# Sourced by the test scripts: where builds and tools are cached across clones.
#   * one cargo target dir for every clone of the project, so a fresh clone rebuilds only
#     the project's own crates, never its dependencies (each profile is built once);
#   * cargo-installed tools (cargo-deny, cargo-fuzz) under their own root.
# Override with CARGO_TARGET_DIR or SAVEPOINT_WEBHOOK_CACHE.
SAVEPOINT_WEBHOOK_CACHE="${SAVEPOINT_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/savepoint-webhook}"
export SAVEPOINT_WEBHOOK_CACHE
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SAVEPOINT_WEBHOOK_CACHE/target}"
SAVEPOINT_WEBHOOK_TOOLS="$SAVEPOINT_WEBHOOK_CACHE/tools"
export SAVEPOINT_WEBHOOK_TOOLS
case ":$PATH:" in
  *":$SAVEPOINT_WEBHOOK_TOOLS/bin:"*) ;;
  *) export PATH="$SAVEPOINT_WEBHOOK_TOOLS/bin:$PATH" ;;
esac

# Installs a cargo tool at a pinned version into the tools root unless it is there.
#   ensure_cargo_tool BINARY CRATE VERSION
ensure_cargo_tool() {
  local binary=$1 crate=$2 version=$3
  if [[ -x "$SAVEPOINT_WEBHOOK_TOOLS/bin/$binary" ]] &&
     "$SAVEPOINT_WEBHOOK_TOOLS/bin/$binary" --version 2>/dev/null | grep -qF "$version"; then
    return 0
  fi
  echo "cache-env: installing $crate $version into $SAVEPOINT_WEBHOOK_TOOLS" >&2
  # Its own target dir: tools are built once, apart from the project's profiles.
  CARGO_TARGET_DIR="$SAVEPOINT_WEBHOOK_CACHE/tools-target" \
    cargo install --locked --root "$SAVEPOINT_WEBHOOK_TOOLS" --version "$version" "$crate"
}
