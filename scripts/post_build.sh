#!/usr/bin/env bash
# Trunk's post-build hook (Trunk.toml). Trunk starts the hooks of one stage all at once, so the steps
# that depend on each other run here, in order:
#   0. build_threads.sh     builds the threaded engine worker into threads/ (nightly, atomics)
#   1. strip_wasm_names.py  drops the wasm name sections
#   2. csp.py               adds the Content-Security-Policy <meta> to index.html
#   3. pwa.py               writes sw.js with the final files' hashes (needs 1 and 2 done)
set -euo pipefail
here="$(dirname "$0")"
bash "$here/build_threads.sh"
python3 "$here/strip_wasm_names.py"
python3 "$here/csp.py"
python3 "$here/pwa.py"
