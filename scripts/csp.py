#!/usr/bin/env python3
"""Trunk post-build hook: puts a Content-Security-Policy <meta> tag into $TRUNK_STAGING_DIR/index.html,
so the policy travels with the page to wherever it is hosted.

Scripts run only from the page's own origin, plus the one inline module script Trunk writes to start
the wasm (allowed by its sha256, computed here from the built file, so it changes with each build);
WebAssembly may compile ('wasm-unsafe-eval'); nothing is fetched from, posted to or framed by any
other origin. Styles allow inline attributes (Leptos sets style="width: …" on bars). A label or text
holding HTML is shown as text by Leptos anyway; the policy is the second wall behind that.

Checked by the browser test: the tag is there and no violation is reported while the page runs."""
import base64
import hashlib
import os
import re
import sys
from pathlib import Path

INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def policy(html: str) -> str:
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1).encode()).digest()).decode() + "'"
        for m in INLINE.finditer(html)
    ]
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval' " + " ".join(hashes),
            "worker-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data: blob:",
            "style-src 'self' 'unsafe-inline'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def main() -> int:
    index = Path(os.environ.get("TRUNK_STAGING_DIR", "dist")) / "index.html"
    html = index.read_text()
    html = re.sub(r'\s*<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    tag = f'<meta http-equiv="Content-Security-Policy" content="{policy(html)}" />'
    html, n = re.subn(r"(<head[^>]*>)", r"\1\n    " + tag.replace("\\", "\\\\"), html, count=1)
    if n != 1:
        print("csp: no <head> in index.html", file=sys.stderr)
        return 1
    index.write_text(html)
    print(f"csp: {index}: Content-Security-Policy with {html.count(chr(39) + 'sha256-')} inline-script hash(es)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
