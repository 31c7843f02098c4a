# Sourced by the scripts: the one nightly toolchain the threaded wasm worker is built with
# (scripts/build_threads.sh), pinned by date and commit. Sets LORAFUSE_NIGHTLY to a rustup toolchain
# name: the dated one when installed, else `nightly` when it is exactly the pinned build.
LORAFUSE_NIGHTLY_DATE=2026-05-19
LORAFUSE_NIGHTLY_COMMIT=e50aa6fba
if rustup run "nightly-$LORAFUSE_NIGHTLY_DATE" rustc --version >/dev/null 2>&1; then
  LORAFUSE_NIGHTLY="nightly-$LORAFUSE_NIGHTLY_DATE"
elif rustup run nightly rustc --version 2>/dev/null | grep -q "($LORAFUSE_NIGHTLY_COMMIT $LORAFUSE_NIGHTLY_DATE)"; then
  LORAFUSE_NIGHTLY=nightly
else
  LORAFUSE_NIGHTLY=""
fi
export LORAFUSE_NIGHTLY LORAFUSE_NIGHTLY_DATE LORAFUSE_NIGHTLY_COMMIT
