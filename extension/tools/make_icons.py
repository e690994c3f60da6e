"""Draw the CivicSense icons (16, 32, 48, 128 px) as PNGs with the standard library only.

A teal rounded square holding three bars: negative (red), neutral (grey), positive (green).
Run once; the PNGs are committed: `python extension/tools/make_icons.py`.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

ICONS = Path(__file__).resolve().parent.parent / "icons"
BG = (11, 92, 115)
BARS = [((214, 69, 69), 0.45), ((200, 207, 214), 0.65), ((47, 158, 91), 0.9)]


def png(size: int, pixels: list[list[tuple[int, int, int, int]]]) -> bytes:
    raw = b"".join(b"\x00" + b"".join(bytes(p) for p in row) for row in pixels)
    chunk = lambda tag, data: (struct.pack(">I", len(data)) + tag + data  # noqa: E731
                               + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def coverage(size: int, x: int, y: int, inside) -> float:
    """Anti-aliasing: the share of 4×4 subsamples of pixel (x, y) inside the shape."""
    hits = sum(inside((x + (i + 0.5) / 4) / size, (y + (j + 0.5) / 4) / size)
               for i in range(4) for j in range(4))
    return hits / 16


def draw(size: int) -> bytes:
    r = 0.22

    def rounded(u: float, v: float) -> bool:
        cx, cy = min(max(u, r), 1 - r), min(max(v, r), 1 - r)
        return (u - cx) ** 2 + (v - cy) ** 2 <= r * r

    bar_w, gap = 0.16, 0.07
    left = (1 - 3 * bar_w - 2 * gap) / 2
    base = 0.8
    pixels = []
    for y in range(size):
        row = []
        for x in range(size):
            a = coverage(size, x, y, rounded)
            color = BG
            for k, (rgb, height) in enumerate(BARS):
                x0 = left + k * (bar_w + gap)
                top = base - 0.6 * height

                def in_bar(u, v, x0=x0, top=top):
                    return x0 <= u <= x0 + bar_w and top <= v <= base

                c = coverage(size, x, y, in_bar)
                if c:
                    pairs = zip(rgb, BG, strict=True)
                    color = tuple(round(c * fg + (1 - c) * bg) for fg, bg in pairs)
            row.append((*color, round(255 * a)))
        pixels.append(row)
    return png(size, pixels)


if __name__ == "__main__":
    ICONS.mkdir(exist_ok=True)
    for size in (16, 32, 48, 128):
        (ICONS / f"icon{size}.png").write_bytes(draw(size))
        print(ICONS / f"icon{size}.png")
