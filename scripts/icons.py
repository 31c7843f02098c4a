#!/usr/bin/env python3
"""Writes the page's app icons, web/icon-192.png and web/icon-512.png (the PNGs the web app manifest
needs to install the page; web/icon.svg is the same drawing for the tab). Standard library only:
a blue rounded square, three white bars (the task adapters) joined by a white disc (the fusion).
Run once after changing the drawing; the PNGs are committed."""
import struct
import zlib
from pathlib import Path

BLUE = (37, 99, 235)
WHITE = (255, 255, 255)


def pixel(x: float, y: float) -> tuple[int, int, int, int]:
    """Colour at (x, y) in a 0..1 square."""
    r = 0.18  # corner radius
    cx, cy = min(max(x, r), 1 - r), min(max(y, r), 1 - r)
    if (x - cx) ** 2 + (y - cy) ** 2 > r * r:
        return (0, 0, 0, 0)
    # the fusion disc
    if (x - 0.70) ** 2 + (y - 0.5) ** 2 < 0.13 ** 2:
        return (*WHITE, 255)
    # three adapter bars, from the left edge to the disc
    for by in (0.30, 0.5, 0.70):
        if 0.18 < x < 0.66 and abs(y - by) < 0.045:
            return (*WHITE, 255)
    return (*BLUE, 255)


def png(size: int) -> bytes:
    ss = 4  # supersampling per axis
    rows = []
    for j in range(size):
        row = bytearray([0])
        for i in range(size):
            acc = [0, 0, 0, 0]
            for sj in range(ss):
                for si in range(ss):
                    p = pixel((i + (si + 0.5) / ss) / size, (j + (sj + 0.5) / ss) / size)
                    a = p[3]
                    for k in range(3):
                        acc[k] += p[k] * a
                    acc[3] += a
            n = ss * ss
            a = acc[3]
            row += bytes([acc[k] // a if a else 0 for k in range(3)] + [a // n])
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    web = Path(__file__).resolve().parent.parent / "web"
    for size in (192, 512):
        (web / f"icon-{size}.png").write_bytes(png(size))
        print(f"web/icon-{size}.png")
