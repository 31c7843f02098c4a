#!/usr/bin/env python3
"""Trunk post-build hook: drops the `name` custom section (function names for stack traces, 2-7 MB
here) from every .wasm file in $TRUNK_STAGING_DIR. Custom sections carry no code or data, so the
program is unchanged; panics then show numbered frames instead of Rust function names."""
import os
import sys
from pathlib import Path


def leb(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def strip(path: Path) -> int:
    b = path.read_bytes()
    if b[:4] != b"\0asm":
        return 0
    out = bytearray(b[:8])
    i = 8
    while i < len(b):
        start = i
        sid = b[i]
        size, j = leb(b, i + 1)
        end = j + size
        if sid == 0:
            n, k = leb(b, j)
            if b[k : k + n] == b"name":
                i = end
                continue
        out += b[start:end]
        i = end
    path.write_bytes(out)
    return len(b) - len(out)


def main() -> None:
    d = Path(os.environ.get("TRUNK_STAGING_DIR") or (sys.argv[1] if len(sys.argv) > 1 else "dist"))
    for f in sorted(d.rglob("*.wasm")):
        print(f"strip_wasm_names: {f.relative_to(d)}: {strip(f) / 1e6:.2f} MB of names removed")


if __name__ == "__main__":
    main()
