"""A messy photo collection generated on the spot (nothing downloaded): good images of every odd kind, broken
files, links and names that break naive code. Used by test_reliability.py; see docs/reliability.md."""

import os
import struct
import zlib

import cv2
import numpy as np

from cbir.imageio import write_image
from helpers import make_photo


def photo(seed, size=(24, 32)):
    """A small synthetic photo (RGB), different for every seed."""
    return make_photo(seed, size)


def encoded(bgr_or_gray, extension, params=()):
    ok, data = cv2.imencode(extension, bgr_or_gray, list(params))
    if not ok:
        raise RuntimeError(f"OpenCV cannot write {extension}")
    return data.tobytes()


def jpeg(rgb, quality=90):
    return encoded(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])


# --- hand-made JPEG variants ----------------------------------------------------------------------------------
def _segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _split_jpeg(data):
    """(marker, payload) of the segments before the first scan, and the scan (SOS segment and entropy-coded data,
    without the final EOI)."""
    pos, segments = 2, []
    while data[pos + 1] != 0xDA:
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        segments.append((data[pos + 1], data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
    return segments, data[pos:-2]


def cmyk_jpeg(cmyk, size=(16, 24)):
    """A four-component Adobe CMYK JPEG of one colour, ``cmyk`` in 0..1 (ink amounts).

    OpenCV writes no CMYK, so it is assembled from four one-channel JPEGs: one non-interleaved baseline scan per
    component (legal JPEG), the Adobe APP14 marker saying "no transform", and values stored inverted as Photoshop
    does (255 = no ink).
    """
    scans, tables = [], []
    for component, ink in enumerate(cmyk, 1):
        gray = encoded(np.full(size, round(255 * (1 - ink)), np.uint8), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
        segments, scan = _split_jpeg(gray)
        tables = [s for s in segments if s[0] in (0xDB, 0xC4)]  # the same standard tables for every channel
        scans.append(scan[:5] + bytes([component]) + scan[6:])  # SOS: length(2) count(1) component id
    frame = struct.pack(">BHHB", 8, size[0], size[1], 4) + b"".join(bytes([c, 0x11, 0]) for c in range(1, 5))
    adobe = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0)
    return (b"\xff\xd8" + _segment(0xEE, adobe) + b"".join(_segment(m, p) for m, p in tables)
            + _segment(0xC0, frame) + b"".join(scans) + b"\xff\xd9")


def exif_jpeg(rgb, orientation):
    """A JPEG with an APP1 Exif segment holding one Orientation tag (6: display rotated 90 degrees clockwise)."""
    data = jpeg(rgb)
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    return data[:2] + _segment(0xE1, b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd) + data[2:]


# --- decompression bombs: headers declaring enormous images, followed by next to nothing ---------------------
def png_bomb(side=100_000):
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = b"IDAT" + zlib.compress(b"\x00" * 1000)
    chunk = lambda body: struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(ihdr) + chunk(idat) + chunk(b"IEND")


def jpeg_bomb():
    data = jpeg(photo(1, (16, 16)))
    frame = data.find(b"\xff\xc0")
    return data[: frame + 5] + struct.pack(">HH", 65000, 65000) + data[frame + 9 :]


def tiff_bomb(side=200_000):
    entries = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, side), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count)
        + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        for tag, kind, count, value in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 16) + b"\x00" * 8 + ifd


def webp_bomb(side=1_000_000):
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (side - 1).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def png_with_bad_crc(rgb):
    data = bytearray(encoded(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), ".png"))
    start = data.find(b"IDAT")
    length = struct.unpack(">I", data[start - 4 : start])[0]
    data[start + 4 + length] ^= 0xFF  # first byte of the IDAT CRC
    return bytes(data)


# --- the collection -------------------------------------------------------------------------------------------
LONG_NAME = "long-" + "x" * 200 + ".png"
ODD_NAMES = ["with space.png", "quo'te\"s.png", "ünïcødé-写真.png", "new\nline.png",
             "<script>alert(1)<script> &amp;.png", LONG_NAME, "x'); DROP TABLE images;--.png", "UPPER CASE.JPG"]

HAS_GIF = hasattr(cv2, "imencodeanimation")  # GIF reading and writing came with OpenCV 4.11

# name -> what must happen: ("indexed", None) or ("failed", words the reason must contain)
EXPECTED = {
    "tiny-1x1.png": ("indexed", None),
    "flat.png": ("indexed", None),
    "gray.png": ("indexed", None),
    "deep16.png": ("indexed", None),
    "deep16-twin8.png": ("indexed", None),
    "rgba.png": ("indexed", None),
    "cmyk.jpg": ("indexed", None),
    "multipage.tiff": ("indexed", None),
    "exif-rotated.jpg": ("indexed", None),
    "progressive.jpg": ("indexed", None),  # several scans: the truncation check must not refuse it
    "restart-markers.jpg": ("indexed", None),
    "folder.jpg/inside.png": ("indexed", None),  # a directory named like an image is a folder: searched
    **{name: ("indexed", None) for name in ODD_NAMES},
    "empty.jpg": ("failed", "empty file"),
    "truncated-header.jpg": ("failed", "truncated JPEG"),
    "truncated-half.jpg": ("failed", "truncated JPEG"),
    "truncated-no-eoi.jpg": ("failed", "truncated JPEG"),
    "bad-crc.png": ("failed", "not a readable image"),
    "random-bytes.jpg": ("failed", "not an image file (unknown format)"),
    "text.png": ("failed", "not an image file (unknown format)"),
    "bad\nname <b>.jpg": ("failed", "not an image file (unknown format)"),
    "bomb.png": ("failed", "over the limit"),
    "bomb.jpg": ("failed", "over the limit"),
    "bomb.tiff": ("failed", "over the limit"),
    "bomb.webp": ("failed", "over the limit"),
    "dangling-link.jpg": ("failed", "broken symbolic link"),
    "loop-a.jpg": ("failed", "symbolic link loop"),
    "loop-b.jpg": ("failed", "symbolic link loop"),
    "not-utf8-\\xff.png": ("failed", "not valid UTF-8"),
    **({"animated.gif": ("indexed", None)} if HAS_GIF else {}),
}
IGNORED = ["notes.txt", "folder.jpg"]  # not image files: neither indexed nor reported


def make_corpus(folder):
    """Write the collection into ``folder``; returns a dict of the arrays the decoded images must equal."""
    folder.mkdir(parents=True, exist_ok=True)
    expect = {}
    write = lambda name, data: (folder / name).write_bytes(data)  # noqa: E731

    write_image(folder / "tiny-1x1.png", np.array([[[10, 200, 30]]], np.uint8))
    write_image(folder / "flat.png", np.full((20, 20, 3), (200, 30, 140), np.uint8))
    gray = photo(2)[..., 1]
    write("gray.png", encoded(gray, ".png"))
    expect["gray.png"] = np.repeat(gray[..., None], 3, axis=2)
    base = photo(3)
    write("deep16.png", encoded(cv2.cvtColor(base, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257, ".png"))
    write_image(folder / "deep16-twin8.png", base)
    expect["deep16.png"] = base
    bgra = np.dstack([cv2.cvtColor(photo(4), cv2.COLOR_RGB2BGR), np.full((24, 32), 255, np.uint8)])
    bgra[:, :16, 3] = 0  # left half fully transparent: counts as white
    write("rgba.png", encoded(bgra, ".png"))
    composited = photo(4)
    composited[:, :16] = 255
    expect["rgba.png"] = composited
    write("cmyk.jpg", cmyk_jpeg((0, 1, 1, 0)))  # full magenta and yellow ink: red
    expect["cmyk.jpg"] = np.full((16, 24, 3), (255, 0, 0), np.uint8)
    first, second = photo(5), photo(6)
    pages = [cv2.cvtColor(first, cv2.COLOR_RGB2BGR), cv2.cvtColor(second, cv2.COLOR_RGB2BGR)]
    if HAS_GIF:
        animation = cv2.Animation()
        animation.frames, animation.durations = pages, [100, 100]
        ok, gif = cv2.imencodeanimation(".gif", animation)
        if not ok:
            raise RuntimeError("OpenCV could not write an animated GIF")
        write("animated.gif", gif.tobytes())
        expect["animated.gif"] = None  # GIF is palettised: compared by shape only
    ok, tiff = cv2.imencodemulti(".tiff", pages)
    if not ok:
        raise RuntimeError("OpenCV could not write a multi-page TIFF")
    write("multipage.tiff", tiff.tobytes())
    expect["multipage.tiff"] = first
    upright = np.zeros((20, 40, 3), np.uint8)
    upright[:, :20] = (250, 0, 0)  # left half red; displayed rotated 90 degrees clockwise: top half red
    write("exif-rotated.jpg", exif_jpeg(upright, 6))
    expect["exif-rotated.jpg"] = np.rot90(upright, k=-1)
    bgr = cv2.cvtColor(photo(15, (64, 80)), cv2.COLOR_RGB2BGR)
    write("progressive.jpg", encoded(bgr, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]))
    write("restart-markers.jpg", encoded(bgr, ".jpg", [cv2.IMWRITE_JPEG_RST_INTERVAL, 1]))
    (folder / "folder.jpg").mkdir()
    write_image(folder / "folder.jpg" / "inside.png", photo(7))
    for i, name in enumerate(ODD_NAMES):
        write_image(folder / name, photo(20 + i)) if not name.endswith(".JPG") else write(name, jpeg(photo(20 + i)))

    good_jpeg = jpeg(photo(8, (64, 96)))
    write("empty.jpg", b"")
    write("truncated-header.jpg", good_jpeg[:120])
    write("truncated-half.jpg", good_jpeg[: len(good_jpeg) // 2])
    write("truncated-no-eoi.jpg", good_jpeg[:-2])
    write("bad-crc.png", png_with_bad_crc(photo(9)))
    write("random-bytes.jpg", np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    write("text.png", "This is a text file, not a PNG.\n".encode())
    write("bad\nname <b>.jpg", b"PK\x03\x04 a zip archive, not a JPEG")
    write("bomb.png", png_bomb())
    write("bomb.jpg", jpeg_bomb())
    write("bomb.tiff", tiff_bomb())
    write("bomb.webp", webp_bomb())
    os.symlink(folder / "no-such-target.jpg", folder / "dangling-link.jpg")
    os.symlink(folder / "loop-b.jpg", folder / "loop-a.jpg")
    os.symlink(folder / "loop-a.jpg", folder / "loop-b.jpg")
    with open(os.path.join(os.fsencode(folder), b"not-utf8-\xff.png"), "wb") as handle:
        handle.write(encoded(photo(10), ".png"))
    write("notes.txt", b"not an image extension: ignored")
    return expect
