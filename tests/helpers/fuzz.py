"""A header fuzzer for the decoder: small valid JPEG, PNG, TIFF, WebP and JPEG 2000 files with their headers
mutated (declared sizes set to extremes and to lies, bits flipped, bytes inserted, deleted or overwritten, files
cut short), from a fixed seed, for a bounded time.

:func:`run` decodes case after case with :func:`cbir.imageio.decode_with_size` and prints one JSON line: the
counts of each outcome. Every case must give an ``(H, W, 3) uint8`` image within the pixel limit or a DecodeError;
anything else (another exception, a crash, a hang) is a failure, reported with the case number so that
``cases(seed)`` gives the same bytes again. tests/test_fuzz.py runs it in a child process with bounded memory.
"""

import json
import re
import struct
import time
import zlib
from collections import Counter

import cv2
import numpy as np

from helpers.crafted import encoded, png_chunk

EXTREMES = [0, 1, 2, 255, 256, 32767, 32768, 65535, 65536, 11_000, 16_384, 100_000, 1 << 24, 0x7FFFFFFF,
            0xFFFFFFFF]


def seeds():
    """``{format: bytes}``: one small valid file per format (64x48 noise)."""
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return {"jpeg": encoded(image, ".jpg"), "png": encoded(image, ".png"), "tiff": encoded(image, ".tif"),
            "webp-lossy": encoded(image, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
            "webp-lossless": encoded(image, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
            "jpeg2000": encoded(image, ".jp2")}


def _fix_png_crcs(data):
    """Recompute every chunk CRC, so a mutation reaches the decoder instead of stopping at a checksum."""
    out, pos = bytearray(data[:8]), 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        end = pos + 12 + length
        if end > len(data):
            break
        out += png_chunk(data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length])
        pos = end
    return bytes(out + data[pos:])


def _value(rng, bits):
    value = int(rng.choice(EXTREMES)) if rng.random() < 0.7 else int(rng.integers(0, 1 << bits))
    return value & ((1 << bits) - 1)


def _lie_about_size(rng, fmt, data):
    """Set the declared width and/or height (and for some formats depth and sample fields) to extremes."""
    data = bytearray(data)
    if fmt == "png":
        data[16:24] = struct.pack(">II", _value(rng, 32), _value(rng, 32))
        if rng.random() < 0.3:
            data[24:26] = bytes([int(rng.choice([1, 2, 4, 8, 16, 3])), int(rng.choice([0, 2, 3, 4, 6, 7]))])
        return _fix_png_crcs(bytes(data))
    if fmt == "jpeg":
        pos = 2
        while pos + 9 < len(data) and data[pos + 1] not in (0xC0, 0xC1, 0xC2):
            pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        data[pos + 5 : pos + 9] = struct.pack(">HH", _value(rng, 16), _value(rng, 16))
        if rng.random() < 0.3:
            data[pos + 4] = int(rng.choice([8, 12, 16, 0, 255]))  # sample precision
        return bytes(data)
    if fmt == "tiff":
        order = "<" if data[:2] == b"II" else ">"
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        for i in range(count):
            entry = offset + 2 + 12 * i
            tag = struct.unpack(order + "H", data[entry : entry + 2])[0]
            if tag in (256, 257, 258, 277, 278) and rng.random() < 0.7:  # sizes, bits, samples, rows per strip
                kind = int(rng.choice([3, 4, 8, 9, 1, 16]))  # SHORT LONG SSHORT SLONG BYTE LONG8
                data[entry + 2 : entry + 12] = struct.pack(order + "HII", kind, 1, _value(rng, 32))
        return bytes(data)
    if fmt.startswith("webp"):
        chunk = bytes(data[12:16])
        if chunk == b"VP8L":
            data[21:25] = struct.pack("<I", _value(rng, 32))
        elif chunk == b"VP8 ":
            data[26:30] = struct.pack("<HH", _value(rng, 16), _value(rng, 16))
        if rng.random() < 0.5:  # and as an extended file: a VP8X canvas in front
            canvas = struct.pack("<I", _value(rng, 24))[:3] + struct.pack("<I", _value(rng, 24))[:3]
            vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + canvas
            body = vp8x + bytes(data[12:])
            return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
        return bytes(data)
    if fmt == "jpeg2000":
        siz = data.find(b"\xff\x51")
        width, height = _value(rng, 32), _value(rng, 32)
        data[siz + 6 : siz + 14] = struct.pack(">II", width, height)
        if rng.random() < 0.5:  # one tile as large as the image
            data[siz + 22 : siz + 30] = struct.pack(">II", width, height)
        ihdr = data.find(b"ihdr")
        if ihdr >= 0 and rng.random() < 0.7:
            data[ihdr + 4 : ihdr + 12] = struct.pack(">II", height, width)
        return bytes(data)
    raise ValueError(fmt)


def mutate(rng, fmt, data):
    """One mutation of ``data`` (a file of format ``fmt``): its name and the mutated bytes."""
    kind = str(rng.choice(["size", "size", "flip", "insert", "delete", "overwrite", "truncate"]))
    if kind == "size":
        try:
            return kind, _lie_about_size(rng, fmt, data)
        except (struct.error, IndexError):  # an earlier mutation broke the structure: nothing to find
            return kind, data
    data = bytearray(data)
    head = max(2, min(len(data), 160))
    at = int(rng.integers(0, head))
    if kind == "flip":
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, head))] ^= 1 << int(rng.integers(0, 8))
    elif kind == "insert":
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8).tobytes()
    elif kind == "delete":
        del data[at : at + int(rng.integers(1, 8))]
    elif kind == "overwrite":
        span = int(rng.integers(1, 12))
        data[at : at + span] = rng.integers(0, 256, span, dtype=np.uint8).tobytes()
    else:
        data = data[: int(rng.integers(1, max(2, len(data))))]
    if fmt == "png" and rng.random() < 0.7:
        return kind, _fix_png_crcs(bytes(data))
    return kind, bytes(data)


def cases(seed):
    """Endless ``(number, format, mutation names, bytes)``, the same sequence for the same seed."""
    rng = np.random.default_rng(seed)
    originals = seeds()
    formats = sorted(originals)
    number = 0
    while True:
        fmt = formats[number % len(formats)]
        data, kinds = originals[fmt], []
        for _ in range(int(rng.integers(1, 4))):
            kind, data = mutate(rng, fmt, data)
            kinds.append(kind)
        yield number, fmt, "+".join(kinds), data
        number += 1


def run(seed, count, seconds):
    """Decode the first ``count`` cases of ``seed``; ``seconds`` bounds the whole run (a hang guard: stopping
    early there is reported by the case count, which the test checks)."""
    from cbir.errors import DecodeError
    from cbir.imageio import MAX_PIXELS, decode_with_size

    outcomes, slowest = Counter(), (0.0, None)
    deadline = time.monotonic() + seconds
    for number, fmt, kinds, data in cases(seed):
        if number >= count or time.monotonic() > deadline:
            break
        started = time.monotonic()
        try:
            image, _ = decode_with_size(data, name="case")
        except DecodeError as error:
            reason = re.sub(r"\d[\d,]*", "N", error.problem.split(": ", 1)[-1])
            outcomes[f"refused: {reason[:70]}"] += 1
        except BaseException as error:  # noqa: BLE001 - the very thing looked for
            print(json.dumps({"failed": number, "format": fmt, "mutations": kinds, "seed": seed,
                              "error": f"{type(error).__name__}: {error}"}))
            return 1
        else:
            if not (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
                    and image.shape[0] * image.shape[1] <= MAX_PIXELS):
                print(json.dumps({"failed": number, "format": fmt, "mutations": kinds, "seed": seed,
                                  "error": f"decoded to {image.shape} {image.dtype}"}))
                return 1
            outcomes["decoded"] += 1
        took = time.monotonic() - started
        if took > slowest[0]:
            slowest = (took, number)
    print(json.dumps({"seed": seed, "cases": sum(outcomes.values()), "outcomes": dict(outcomes),
                      "slowest_case": slowest[1], "slowest_seconds": round(slowest[0], 3)}))
    return 0


