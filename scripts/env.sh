# Sourced by the scripts: one place for the shared build/cache locations.
# Compiled output lives outside the clone so it survives between clones, sessions and CI runs.
export LORAFUSE_CACHE="${LORAFUSE_CACHE:-$HOME/.cache/lorafuse}"
export CARGO_TARGET_DIR="${LORAFUSE_TARGET_DIR:-${CARGO_TARGET_DIR:-$LORAFUSE_CACHE/target}}"

# Web tools (trunk, wasm-bindgen) are installed by scripts/setup into $LORAFUSE_CACHE/tools/bin.
case ":$PATH:" in
  *":$LORAFUSE_CACHE/tools/bin:"*) ;;
  *) export PATH="$LORAFUSE_CACHE/tools/bin:$PATH" ;;
esac
# trunk must use exactly the wasm-bindgen of Cargo.lock (with --offline a mismatch is an error
# instead of a download attempt). wasm-opt comes from Debian's binaryen (no version pinned).
LORAFUSE_WASM_BINDGEN_VERSION="$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/^version = "|"$/, ""); print; exit }' \
  "$(dirname "${BASH_SOURCE[0]}")/../Cargo.lock" 2>/dev/null || true)"
export LORAFUSE_WASM_BINDGEN_VERSION
if [[ -n "$LORAFUSE_WASM_BINDGEN_VERSION" ]]; then
  export TRUNK_TOOLS_WASM_BINDGEN="$LORAFUSE_WASM_BINDGEN_VERSION"
fi
export LORAFUSE_TRUNK_VERSION=0.22.1
