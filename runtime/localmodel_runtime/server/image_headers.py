"""An image file's format and size, read from its header without decoding it.

The llama backend decodes images with stb_image (PNG, JPEG, GIF, BMP; WebP would need ffmpeg, which the
runtime images do not carry). Its limit on dimensions is 2^24 pixels a side, so a small file that claims
a huge image would make it allocate gigabytes; the server reads the claimed size first and refuses it.
"""

from __future__ import annotations

import struct

FORMATS = "PNG, JPEG, GIF or BMP"
"""The formats served, for messages."""


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """`(format, width, height)` from the header, or None when `data` is none of FORMATS (or its header
    is cut short)."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return "PNG", width, height
        if data.startswith((b"GIF87a", b"GIF89a")):
            width, height = struct.unpack("<HH", data[6:10])
            return "GIF", width, height
        if data.startswith(b"BM"):
            width, height = struct.unpack("<ii", data[18:26])
            return "BMP", abs(width), abs(height)  # a negative height is a top-down bitmap
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


# JPEG start-of-frame markers (baseline, progressive, ...); C4, C8 and CC are other segments.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[str, int, int] | None:
    """Walk the JPEG segments to the start-of-frame one, which holds the height and width."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return "JPEG", width, height
        i += 2 + length
    return None
