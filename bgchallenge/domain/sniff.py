"""What the first bytes of a body show it to be: one of the image types the service stores, or
nothing. Pure: the caller gives the prefix (the first `SNIFF_BYTES`, or the whole body when it
is shorter) and stores the answer as the object's ``Content-Type``.

Written here rather than taken from PyPI (docs/benchmarks.md, "Content check", has the numbers):
``filetype`` (last release 2022) knows no SVG, nor the ``avis``/``heix`` brands or a bare
``mif1``/``msf1``, and takes two or three bytes as proof (``BM``, ``GIF``); ``puremagic`` finds
an SVG only when it starts with ``<svg`` or one exact XML declaration, or from the file's *end*
(which a prefix does not have), misses ``mif1``/``msf1``, and costs 0.2 to 0.5 ms a call
against a few µs here. The raster signatures are a few fixed bytes each; SVG needs a small scan
of the XML prolog that neither does.

ICO is stored as ``image/vnd.microsoft.icon`` (the type IANA registered); a generic HEIF file
(brand ``mif1`` or ``msf1`` without an AVIF or HEIC brand) as ``image/heif`` or
``image/heif-sequence``.
"""

from __future__ import annotations

import re

# Room for what an SVG usually has before its root element (an XML declaration, a comment or
# two, a doctype); one whose root starts later is refused, as the bound must hold in memory.
# The raster signatures need at most 18 bytes, ISO-BMFF's brands fit in the first hundred.
SNIFF_BYTES = 4096

PNG = b"\x89PNG\r\n\x1a\n"
# BITMAPCOREHEADER, BITMAPINFOHEADER and its successors (V2, V3, OS/2 2.x, V4, V5)
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_ISO_BMFF_BRANDS = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif-sequence",
}
_BRAND_PREFERENCE = (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1")


def sniff_image_type(prefix: bytes) -> str | None:
    """The media type the bytes show, or None when they show none of the accepted images
    (a prefix cut before the end of its signature included)."""
    return _raster_type(prefix) or _iso_bmff_type(prefix) or _svg_type(prefix)


def _raster_type(data: bytes) -> str | None:
    if data.startswith(PNG):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:15] == b"WEBPVP8" and data[15:16] in (b" ", b"L", b"X"):
        return "image/webp"
    if (
        data[:2] == b"BM"
        and len(data) >= 18
        and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF, BigTIFF
        return "image/tiff"
    if _is_ico(data):
        return "image/vnd.microsoft.icon"
    return None


def _is_ico(data: bytes) -> bool:
    # ICONDIR (reserved 0, type 1, count) and the first ICONDIRENTRY up to its planes (0 or 1)
    if data[:4] != b"\x00\x00\x01\x00" or len(data) < 12:
        return False
    count = int.from_bytes(data[4:6], "little")
    planes = int.from_bytes(data[10:12], "little")
    return count >= 1 and planes in (0, 1)


def _iso_bmff_type(data: bytes) -> str | None:
    """An ISO-BMFF file starts with its ``ftyp`` box: size, ``ftyp``, major brand, minor
    version, compatible brands."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return None
    box_size = int.from_bytes(data[:4], "big")
    if box_size < 16 or box_size % 4:
        return None
    end = min(box_size, len(data))
    # the major brand, then the compatible ones (those the prefix holds)
    brands = {data[i : i + 4] for i in (8, *range(16, end - 3, 4))}
    for brand in _BRAND_PREFERENCE:
        if brand in brands:
            return _ISO_BMFF_BRANDS[brand]
    return None


# The XML prolog: whitespace, processing instructions (the XML declaration among them),
# comments and one doctype, whose internal subset may hold quoted strings and `>`.
_MISC = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
# Possessive: a string, comment or subset is read one way only (no backtracking into it).
_DOCTYPE = re.compile(
    rb"<!DOCTYPE"
    rb"""(?:[^"'\[>]|"[^"]*"|'[^']*'|\[(?:<!--.*?-->|[^"'\]]|"[^"]*"|'[^']*')*+\])*+>""",
    re.DOTALL,
)
# The root element's name, prefixed (``<svg:svg``) or not, and what may follow a name.
_SVG_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?svg[\s/>]")
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _svg_type(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            data = data[len(bom) :]
            if encoding != "utf-8":
                # the markup before the root is ASCII: re-encode it to match on bytes
                text = data.decode(encoding, errors="ignore")
                data = text.encode("utf-8", errors="ignore")
            break
    position = 0
    doctype_seen = False
    while True:
        misc = _MISC.match(data, position)
        if misc:
            position = misc.end()
            continue
        doctype = None if doctype_seen else _DOCTYPE.match(data, position)
        if doctype:
            doctype_seen = True
            position = doctype.end()
            continue
        break
    return "image/svg+xml" if _SVG_ROOT.match(data, position) else None
