#!/usr/bin/env python3
"""Trunk post-build step: writes the service worker, $TRUNK_STAGING_DIR/sw.js, from web/sw.js with the
build's files to keep for offline use (everything but models/, which the engine caches itself, and
dotfiles) and a version: the sha256 of those files' names and contents, so every build that changes a
byte is a new service worker with a new cache. Runs after csp.py (scripts/post_build.sh): index.html is
final by then.

The files come in three lists: SHELL, the page itself, copied when the service worker installs; and
the two engine workers, ENGINES.single (worker*: WebGPU, or one thread) and ENGINES.threads (threads/:
the CPU on a pool of threads), copied only when the page says it runs that one. A first visit then
downloads the page and one engine, not both (each engine is megabytes of wasm)."""
import hashlib
import json
import os
import sys
from pathlib import Path


def main() -> int:
    staging = Path(os.environ.get("TRUNK_STAGING_DIR", sys.argv[1] if len(sys.argv) > 1 else "dist"))
    source = Path(os.environ.get("TRUNK_SOURCE_DIR", "."))
    template = (source / "web" / "sw.js").read_text()
    shell = sorted(
        p.relative_to(staging).as_posix()
        for p in staging.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(staging).parts)
        and p.relative_to(staging).parts[0] != "models"
        and p.name != "sw.js"
    )
    if "index.html" not in shell:
        print(f"pwa.py: {staging}/index.html missing", file=sys.stderr)
        return 1
    h = hashlib.sha256()
    for name in shell:
        h.update(name.encode() + b"\0" + hashlib.sha256((staging / name).read_bytes()).digest())
    version = h.hexdigest()[:16]
    engines = {
        "threads": [f for f in shell if f.startswith("threads/")],
        "single": [f for f in shell if f.startswith("worker")],
    }
    if not engines["single"]:
        print(f"pwa.py: {staging} has no single-thread engine (worker*)", file=sys.stderr)
        return 1
    page = [f for f in shell if not any(f in e for e in engines.values())]
    out = (
        template.replace("'__VERSION__'", json.dumps(version))
        .replace("__SHELL__", json.dumps(page))
        .replace("__ENGINES__", json.dumps(engines))
    )
    (staging / "sw.js").write_text(out)
    print(
        f"pwa.py: sw.js version {version}: {len(page)} page files kept at install, engines "
        f"{len(engines['single'])} + {len(engines['threads'])} files kept when used"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
