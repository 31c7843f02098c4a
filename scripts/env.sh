# Sourced by the scripts: one place for the shared build/cache locations.
# Compiled output lives outside the clone so it survives between clones, sessions and CI runs.
export LORAFUSE_CACHE="${LORAFUSE_CACHE:-$HOME/.cache/lorafuse}"
export CARGO_TARGET_DIR="${LORAFUSE_TARGET_DIR:-${CARGO_TARGET_DIR:-$LORAFUSE_CACHE/target}}"
