"""Hostile image files built in memory: tiny files whose headers claim huge canvases, and the like.

Each is what a visitor could upload; none needs the huge canvas in the test process.
"""

from __future__ import annotations

import io
import struct
import textwrap
import zlib

from PIL import Image

#: Start of the memory-measuring child scripts (test_hardening, test_fuzz): the shipped model loaded and
#: warmed up; `status(key)` reads /proc/self/status in MB; `reset_peak()` restarts VmHWM so that a peak
#: belongs to one call (ru_maxrss would not do: Linux carries it over from the parent across exec).
CHILD_PRELUDE = textwrap.dedent("""
    import json, os, resource, sys, time, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    from ferlens.core.recognition import EmotionRecognizer
    from ferlens.core.images import InvalidImageError
    from ferlens.config import DEFAULT_MODEL_DIR

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) / 1024

    def reset_peak():
        try:  # Linux >= 4.0
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            return True
        except OSError:
            return False

    recognizer = EmotionRecognizer(DEFAULT_MODEL_DIR, tta="none")
    recognizer.predict(np.zeros((64, 64), np.uint8))
""")


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, color_type: int = 0, bit_depth: int = 8, rows: int | None = None) -> bytes:
    """A PNG of constant pixels (streamed through zlib, so a 120-megapixel one is built in ~1 s and a
    few MB). `rows` < height leaves the image data short: a header-only bomb. Colour type 0 is gray,
    2 RGB, 6 RGBA."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = b"\x00" + b"\x50" * (width * channels * bit_depth // 8)  # filter byte, then the pixels
    compressor = zlib.compressobj(1)
    parts = [compressor.compress(row) for _ in range(height if rows is None else rows)]
    data = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int, progressive: bool = False, size: int = 4096) -> bytes:
    """A small JPEG whose frame header says `width` x `height` (the scan data is a 64x64 image's)."""
    data = bytearray(encode(Image.new("RGB", (64, 64), (100, 150, 200)), "JPEG", quality=50, progressive=progressive))
    marker = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    struct.pack_into(">HH", data, marker + 5, height, width)
    return bytes(data) + b"\x00" * max(0, size - len(data))


def webp_claiming(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header says `width` x `height` (a 40-byte file)."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (1, 2, 3)), "WEBP", lossless=True))
    signature = data.index(b"VP8L") + 8
    bits = int.from_bytes(data[signature + 1:signature + 5], "little")
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[signature + 1:signature + 5] = bits.to_bytes(4, "little")
    return bytes(data)


#: An AVIF file's opening (the `ftyp` box) followed by damaged data, as if renamed to .png.
DAMAGED_AVIF = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(range(256)) * 8
#: Encapsulated PostScript: Pillow would hand it to Ghostscript where that is installed.
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n"
