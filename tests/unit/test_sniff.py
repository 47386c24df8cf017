"""The content check on the first bytes: each accepted type, the SVG prolog, and what is not."""

from __future__ import annotations

import pytest
from PIL import features

from bgchallenge.domain.sniff import SNIFF_BYTES, sniff_image_type
from tests.support.images import SVG, ftyp, pillow_image, samples

SAMPLES = samples()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_type_from_a_real_file(name: str) -> None:
    data, media_type = SAMPLES[name]
    assert sniff_image_type(data) == media_type
    assert sniff_image_type(data + bytes(SNIFF_BYTES)) == media_type  # a prefix of a longer body


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow writes no AVIF")
def test_avif_written_by_pillow() -> None:
    assert sniff_image_type(pillow_image("AVIF")) == "image/avif"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_prefix_cut_inside_the_signature_is_not_an_image(name: str) -> None:
    data, _ = SAMPLES[name]
    shortest = {"png": 8, "jpeg": 3, "gif": 6, "webp": 16, "bmp": 18, "tiff": 4, "ico": 12}
    cut = shortest.get(name, 0) - 1 if name in shortest else None
    if name == "svg":
        cut = len(b"<svg")
    elif cut is None:  # ISO-BMFF: before the major brand is whole
        cut = 11
    assert sniff_image_type(data[:cut]) is None


@pytest.mark.parametrize(
    "prolog",
    [
        b"",
        b"\xef\xbb\xbf",
        b"  \r\n\t",
        b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n',
        b"<?xml version='1.0'?><!-- made by hand -->\n<!-- two > comments -->",
        b'<?xml version="1.0"?>\n<?xml-stylesheet href="a.css" type="text/css"?>\n',
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"\n'
        b'  "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n',
        b'<!DOCTYPE svg [\n  <!ENTITY a "x>y">\n  <!-- ] > -->\n]>\n',
        b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- c -->\n<!DOCTYPE svg>\n<!-- after -->\n',
    ],
)
def test_svg_after_a_prolog(prolog: bytes) -> None:
    assert sniff_image_type(prolog + SVG) == "image/svg+xml"


@pytest.mark.parametrize(
    "root",
    [
        b"<svg>",
        b"<svg\n  width='1'>",
        b"<svg/>",
        b'<svg:svg xmlns:svg="http://www.w3.org/2000/svg">',
    ],
)
def test_svg_root_forms(root: bytes) -> None:
    assert sniff_image_type(b'<?xml version="1.0"?>' + root) == "image/svg+xml"


def test_svg_in_utf16() -> None:
    text = '<?xml version="1.0" encoding="UTF-16"?>\n<svg/>'
    assert sniff_image_type(b"\xff\xfe" + text.encode("utf-16-le")) == "image/svg+xml"
    assert sniff_image_type(b"\xfe\xff" + text.encode("utf-16-be")) == "image/svg+xml"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<!doctype html><html><body><svg></svg></body></html>",
        b"<html><svg/></html>",
        b'<?xml version="1.0"?><rss version="2.0"/>',
        b"<svgx/>",
        b"<svg",  # cut inside the root's name: a prefix never decides on a partial name
        b"text <svg/>",
        b"<!-- an unclosed comment <svg/>",
        b'<?xml version="1.0"?><!DOCTYPE svg [ <!ENTITY a "unclosed> <svg/>',
        b"<!DOCTYPE svg><!DOCTYPE svg><svg/>",  # one doctype at most
        b"<!-- " + b"x" * SNIFF_BYTES + b" --><svg/>",  # the root past the bound: never seen
        b'{"json": true}',
        b"%PDF-1.7",
        b"PK\x03\x04",
        b"BM not a bitmap header",
        b"GIF8 only",
        b"\x00\x00\x01\x00\x00\x00" + bytes(16),  # an icon directory with no icon
        b"\x00\x00\x02\x00\x01\x00" + bytes(16),  # a cursor, not an icon
        b"RIFF\x10\x00\x00\x00WAVEfmt ",
        ftyp(b"isom", b"isom", b"mp41"),  # an MP4 video
        b"\x00\x00\x00\x0cftypavif",  # a box shorter than its fixed fields
    ],
)
def test_not_an_image(body: bytes) -> None:
    assert sniff_image_type(body[:SNIFF_BYTES]) is None


def test_brands_past_the_prefix_are_not_read() -> None:
    box = ftyp(b"isom", *([b"mp41"] * 10), b"avif")
    assert sniff_image_type(box) == "image/avif"
    assert sniff_image_type(box[:40]) is None
