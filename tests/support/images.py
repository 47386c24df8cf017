"""Tiny real image files of every type the content check accepts, and what it calls them."""

from __future__ import annotations

import io
import struct

from PIL import Image

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'


def pillow_image(format_name: str) -> bytes:
    image = Image.new("RGB", (2, 2), (200, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, format_name)
    return buffer.getvalue()


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    """A minimal ISO-BMFF start: the ``ftyp`` box, then an empty ``meta`` box."""
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + struct.pack(">I", 8) + b"meta"


def samples() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, the Content-Type the service stores them with)."""
    return {
        "png": (pillow_image("PNG"), "image/png"),
        "jpeg": (pillow_image("JPEG"), "image/jpeg"),
        "gif": (pillow_image("GIF"), "image/gif"),
        "webp": (pillow_image("WEBP"), "image/webp"),
        "bmp": (pillow_image("BMP"), "image/bmp"),
        "tiff": (pillow_image("TIFF"), "image/tiff"),
        "ico": (pillow_image("ICO"), "image/vnd.microsoft.icon"),
        # Pillow may not write AVIF or HEIC: the ftyp box by hand, brands as encoders write them
        "avif": (ftyp(b"avif", b"avif", b"mif1", b"miaf"), "image/avif"),
        "avis": (ftyp(b"avis", b"avis", b"msf1", b"miaf"), "image/avif"),
        "heic": (ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
        "heix": (ftyp(b"heix", b"mif1", b"heix"), "image/heic"),
        "mif1": (ftyp(b"mif1", b"mif1", b"heic"), "image/heic"),
        "msf1": (ftyp(b"msf1", b"msf1", b"iso8"), "image/heif-sequence"),
        "svg": (SVG, "image/svg+xml"),
    }
