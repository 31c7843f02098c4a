#!/usr/bin/env bash
# Trunk's post-build hook (Trunk.toml). Trunk starts the hooks of one stage all at once, so the steps
# that depend on each other run here, in order:
#   0. build_threads.sh     builds the threaded engine worker into threads/ (nightly, atomics)
#   1. strip_wasm_names.py  drops the wasm name sections
#   2. csp.py               adds the Content-Security-Policy <meta> to index.html
#   3. pwa.py               writes sw.js with the final files' hashes (needs 1 and 2 done)
# And first: the page downloads the default model's F16 weights (model.f16.safetensors), never the
# 91 MB F32 file that `copy-dir public/models` brought along, so that one leaves the build.
set -euo pipefail
here="$(dirname "$0")"
rm -f "${TRUNK_STAGING_DIR:-dist}/models/all-MiniLM-L6-v2/model.safetensors"
bash "$here/build_threads.sh"
python3 "$here/strip_wasm_names.py"
python3 "$here/csp.py"
python3 "$here/pwa.py"
