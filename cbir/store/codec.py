"""How a histogram is kept in a BLOB: the cube roots of its shares in 65,535 steps, and only the ones not zero.

A histogram of the default layout holds 1,280 shares, of which a photo uses about 40% (485 on average for Wang
and Kodak, docs/scaling.md). As float32 values that is 5,120 bytes per image, 51 GB for ten million photos. Here
each share s is kept as q = round(65535 * s^(1/3)), a uint16, and the BLOB holds a bitmap of the shares that are
not zero (one bit per share, little-endian bit order) followed by their q as little-endian uint16: about 1,250
bytes per image. The stored share is (q / 65535)^3.

Why the cube root: distances compare shares raised to a power (1/3 by default), which makes a patch of a few
pixels count. Steps of 1/65536 on the shares themselves round a one-pixel share of a large photo to 0 or 1 step;
steps on the cube root keep about 4 significant digits of every share down to one pixel in 12 million. Over Wang
and Kodak (tests/benchmarks/measure_storage.py), cube-root steps change 0.4% of the positions of the full
rankings (swaps of near-equal distances; distances move at most 2.3e-5), keep 99.99% of each top 10 and Wang's MAP
(0.5641); linear steps change 13% of the positions, distances by up to 0.018. The rounding is part of what is
stored: the distances cbir reports are exact for the stored histograms, and a query image is rounded the same
way, so a photo of the index finds itself at distance 0.

Pure numpy: arrays and bytes in and out.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

STEPS = 65535


class BlobError(ValueError):
    """A BLOB that is not a histogram in this format; ``position`` is its place in the list decoded."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"histogram {position} {reason}")
        self.position = position


def quantise(vectors: np.ndarray) -> np.ndarray:
    """Shares ``(..., D)`` in [0, 1] -> ``round(65535 * share^(1/3))``, ``(..., D) uint16``.

    Raises ValueError for values that are not shares (negative, above 1, NaN).

    Examples
    --------
    >>> quantise(np.array([0.0, 0.125, 1.0, 1e-15])).tolist()
    [0, 32768, 65535, 1]
    """
    vectors = np.asarray(vectors, np.float64)
    if not (np.isfinite(vectors).all() and (vectors >= 0).all() and (vectors <= 1 + 1e-6).all()):
        raise ValueError("histogram shares must be finite numbers in [0, 1]")
    return np.rint(np.cbrt(np.minimum(vectors, 1.0)) * STEPS).astype(np.uint16)


def dequantise(steps: np.ndarray) -> np.ndarray:
    """``(..., D) uint16`` from :func:`quantise` -> the shares they stand for, ``(steps / 65535)^3`` computed in
    float64 and rounded once to ``float32`` (looked up in a table of the 65,536 values)."""
    return _shares_of_steps()[np.asarray(steps, np.uint16)]


@functools.lru_cache(maxsize=1)
def _shares_of_steps() -> np.ndarray:
    root = np.arange(STEPS + 1, dtype=np.float64) / STEPS
    table = (root * root * root).astype(np.float32)
    table.flags.writeable = False
    return table


def stored_form(vectors: np.ndarray) -> np.ndarray:
    """The shares ``vectors`` read back as once stored: ``dequantise(quantise(vectors))``, ``float32``."""
    return dequantise(quantise(vectors))


def encode(steps: np.ndarray) -> bytes:
    """One histogram ``(D,) uint16`` from :func:`quantise` as a BLOB: the bitmap of the entries that are not zero,
    then those entries as ``<u2``.

    Examples
    --------
    >>> blob = encode(np.array([0, 7, 0, 65535, 0, 0, 0, 0, 1], np.uint16))
    >>> len(blob), decode([blob], 9).tolist()
    (8, [[0, 7, 0, 65535, 0, 0, 0, 0, 1]])
    """
    steps = np.asarray(steps, np.uint16).ravel()
    present = steps > 0
    return np.packbits(present, bitorder="little").tobytes() + steps[present].astype("<u2").tobytes()


def decode(blobs: Sequence[bytes], dimension: int) -> np.ndarray:
    """Many BLOBs at once -> ``(len(blobs), dimension) uint16``.

    Raises BlobError (a ValueError) with the position of the first BLOB that is not one (not bytes, shorter than its
    bitmap, of another length than its bitmap says, or with bits set past ``dimension``).
    """
    bitmap = (dimension + 7) // 8
    try:
        lengths = np.fromiter(map(len, blobs), np.int64, len(blobs))
        maps = np.frombuffer(b"".join([blob[:bitmap] for blob in blobs]), np.uint8).reshape(len(blobs), bitmap)
        values = b"".join([blob[bitmap:] for blob in blobs])
    except TypeError:  # a value that is not a BLOB (text, a number, NULL)
        bad = next(i for i, blob in enumerate(blobs) if not isinstance(blob, bytes))
        raise BlobError(bad, "is not a BLOB") from None
    except ValueError:  # a BLOB shorter than its bitmap
        bad = int(np.argmax(np.fromiter(map(len, blobs), np.int64, len(blobs)) < bitmap))
        raise BlobError(bad, "is shorter than its bitmap") from None
    present = np.unpackbits(maps, axis=1, count=dimension, bitorder="little")
    wrong = lengths != bitmap + 2 * np.count_nonzero(present, axis=1)
    if dimension % 8:  # bits past the dimension must be clear, or a longer histogram could pass for this one
        wrong |= (maps[:, -1] >> (dimension % 8)) != 0
    if wrong.any():
        raise BlobError(int(np.argmax(wrong)), "has another length than its bitmap says")
    out = np.zeros(len(blobs) * dimension, np.uint16)
    out[np.flatnonzero(present)] = np.frombuffer(values, "<u2")
    return out.reshape(len(blobs), dimension)
