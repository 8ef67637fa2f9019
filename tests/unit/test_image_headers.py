"""An image's format and size from its header (server/image_headers.py), for each format served."""

from __future__ import annotations

import struct

import pytest

from localmodel_runtime.server.image_headers import image_size
from tests.support.tiny_mmproj import png_image


def jpeg(width: int, height: int) -> bytes:
    """SOI, a JFIF APP0 segment, a restart marker and a baseline start-of-frame: what the reader walks."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00" * 3
    return b"\xff\xd8" + app0 + b"\xff\xff" + sof0 + b"\xff\xd9"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png_image(40, 30, (1, 2, 3)), ("PNG", 40, 30)),
        (jpeg(640, 488), ("JPEG", 640, 488)),
        (b"GIF89a" + struct.pack("<HH", 7, 9) + b"\x00" * 8, ("GIF", 7, 9)),
        (b"BM" + b"\x00" * 16 + struct.pack("<ii", 12, -5) + b"\x00" * 8, ("BMP", 12, 5)),
    ],
)
def test_the_formats_served_give_their_size(data: bytes, expected: tuple[str, int, int]) -> None:
    assert image_size(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"plain text",
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",  # WebP: llama.cpp would need ffmpeg for it
        png_image(4, 4, (0, 0, 0))[:20],  # cut inside the PNG header
        b"\xff\xd8\xff\xe0\x00",  # cut inside a JPEG segment
        b"\xff\xd8\x00\x00",  # not a JPEG segment
    ],
)
def test_anything_else_has_no_size(data: bytes) -> None:
    assert image_size(data) is None
