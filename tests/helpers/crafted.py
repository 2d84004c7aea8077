"""Crafted hostile image files, a few hundred bytes each: headers that lie (decompression bombs in every format
OpenCV reads, including those whose header cbir does not parse itself), and structure-aware mutations of small
valid files for the header fuzz test. Made with OpenCV, numpy, zlib and struct; nothing is downloaded."""

import struct
import zlib

import cv2
import numpy as np


def encoded(image, extension, params=()):
    ok, data = cv2.imencode(extension, image, list(params))
    if not ok:
        raise RuntimeError(f"OpenCV cannot write {extension}")
    return data.tobytes()


def _small(seed=0, size=(64, 64)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(width, height, depth=8, colour=2, rows=None):
    """A PNG declaring ``width`` x ``height``; ``rows`` (bytes per row, without the filter byte) of zeros are
    compressed in (None: no image data at all)."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    body = b""
    if rows:
        packer = zlib.compressobj(1)
        row = bytes(1 + rows)
        body = png_chunk(b"IDAT", b"".join(packer.compress(row) for _ in range(height)) + packer.flush())
    return b"\x89PNG\r\n\x1a\n" + ihdr + body + png_chunk(b"IEND", b"")


def png16_rgba(side):
    """A decodable 16-bit RGBA PNG of ``side`` x ``side`` transparent black: 8 bytes a pixel once decoded, from a
    file of about side * side / 1000 bytes."""
    return png(side, side, depth=16, colour=6, rows=side * 8)


def jpeg_with_size(width, height, garbage_before_marker=False):
    """A small baseline JPEG whose frame header is patched to declare ``width`` x ``height``; optionally one
    stray byte before its first marker after SOI, which libjpeg skips with a warning."""
    data = bytearray(encoded(_small(), ".jpg"))
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
    if garbage_before_marker:  # after the first segment (APP0): a file still starts with FF D8 FF
        first = 4 + struct.unpack(">H", data[4:6])[0]
        data[first:first] = b"\x00"
    return bytes(data)


def tiff_with_signed_sizes(side):
    """A TIFF whose ImageWidth and ImageLength are typed SSHORT (8) / SLONG (9) instead of SHORT / LONG."""
    data = bytearray(encoded(_small(), ".tif"))
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    for i in range(count):
        entry = offset + 2 + 12 * i
        tag, _ = struct.unpack(order + "HH", data[entry : entry + 4])
        if tag in (256, 257):  # signed long for both: fits any side
            data[entry + 2 : entry + 12] = struct.pack(order + "HII", 9, 1, side)
    return bytes(data)


def jpeg2000_with_size(side):
    """A 64x64 JPEG 2000 (JP2) whose image header and SIZ marker declare ``side`` x ``side`` in one tile."""
    data = bytearray(encoded(_small(), ".jp2"))
    ihdr = data.find(b"ihdr")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", side, side)
    siz = data.find(b"\xff\x51")
    data[siz + 6 : siz + 14] = struct.pack(">II", side, side)  # Xsiz, Ysiz
    data[siz + 22 : siz + 30] = struct.pack(">II", side, side)  # XTsiz, YTsiz
    return bytes(data)


def avif_with_size(side):
    """A 64x64 AVIF whose 'ispe' property declares ``side`` x ``side`` (None when OpenCV has no AVIF writer)."""
    if not cv2.haveImageWriter(".avif"):
        return None
    data = bytearray(encoded(_small(), ".avif"))
    ispe = data.find(b"ispe")
    data[ispe + 8 : ispe + 16] = struct.pack(">II", side, side)
    return bytes(data)


def radiance_hdr(side):
    """A Radiance HDR header declaring ``side`` x ``side`` float pixels (12 bytes each once decoded)."""
    return f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {side} +X {side}\n".encode() + bytes(64)


def os2_bmp(rgb):
    """An OS/2 1.x bitmap (12-byte BITMAPCOREHEADER: 16-bit width and height) of ``rgb (H, W, 3) uint8``."""
    height, width = rgb.shape[:2]
    stride = (3 * width + 3) & ~3
    pixels = b"".join(rgb[y, :, ::-1].tobytes().ljust(stride, b"\0") for y in range(height - 1, -1, -1))
    header = struct.pack("<IHHHH", 12, width, height, 1, 24)
    return b"BM" + struct.pack("<IHHI", 14 + 12 + len(pixels), 0, 0, 14 + 12) + header + pixels


def bombs(side=12_000):
    """``{name: bytes}`` of decompression bombs of ``side`` x ``side`` pixels (over the limit at the default
    side) in every format, named as a collection would hold them (a JPEG 2000 named .png is found by its
    extension and decoded by its content)."""
    found = {
        "garbage-byte.jpg": jpeg_with_size(side, side, garbage_before_marker=True),
        "signed-sizes.tif": tiff_with_signed_sizes(side),
        "jpeg2000.png": jpeg2000_with_size(side),
        "radiance.png": radiance_hdr(side),
        "avif.png": avif_with_size(side),
    }
    return {name: data for name, data in found.items() if data is not None}
