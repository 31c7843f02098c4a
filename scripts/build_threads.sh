#!/usr/bin/env bash
# Builds the page's threaded engine worker into $1 (default: $TRUNK_STAGING_DIR, else dist)/threads/:
#   engine.js, engine_bg.wasm     the worker (`--bin worker --features flex,threads`), wasm-bindgen `--target web`
#   snippets/                     wasm-bindgen-rayon's pool helper (a module worker per thread)
#
# WebAssembly threads need std rebuilt with atomics, which only a nightly cargo does (`-Z build-std`);
# the nightly is pinned (scripts/nightly.sh) and used for this build only: the native build, the UI
# and the single-thread worker stay on stable. The output lives in its own target folder
# ($CARGO_TARGET_DIR/threads), since every crate is compiled with other flags.
#
# The threaded worker has no WebGPU backend (wgpu's browser types are not Send with atomics); the page
# starts it for the CPU backend when it is cross-origin isolated (src/app/bridge.rs), else the
# single-thread worker Trunk builds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
source "$here/env.sh"
source "$here/nightly.sh"
out="${1:-${TRUNK_STAGING_DIR:-$root/dist}}/threads"
if [[ -z "$LORAFUSE_NIGHTLY" ]]; then
  echo "error: the nightly $LORAFUSE_NIGHTLY_DATE ($LORAFUSE_NIGHTLY_COMMIT) the threaded worker is built with is missing: run ./scripts/setup" >&2
  exit 1
fi

target_dir="$CARGO_TARGET_DIR/threads"
# Every crate: the flags of .cargo/config.toml for wasm32 plus atomics; the maximum memory is 4 GiB
# (the usual 1 GiB is too little to train on the full model).
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals -C link-arg=--max-memory=4294967296'
# The worker binary's link: a shared, imported memory and the thread-local storage exports that
# wasm-bindgen's thread support needs. rustc no longer adds these for atomics (rust-lang/rust#147225).
link=()
for a in --shared-memory --import-memory --export=__wasm_init_tls --export=__tls_size \
  --export=__tls_align --export=__tls_base --export=__heap_base; do
  link+=(-C "link-arg=$a")
done
cargo "+$LORAFUSE_NIGHTLY" rustc --release --offline --manifest-path "$root/Cargo.toml" \
  --target wasm32-unknown-unknown -Z build-std=panic_abort,std \
  --no-default-features --features flex,threads --bin worker --target-dir "$target_dir" \
  -- "${link[@]}"

rm -rf "$out"
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name engine \
  "$target_dir/wasm32-unknown-unknown/release/worker.wasm"
cp "$root/web/threads_start.js" "$out/start.js"
echo "build_threads.sh: $(du -sh "$out" | cut -f1) in $out"
