"""Colour histograms over a codebook: the features that are indexed and compared. Pure numeric functions.

A pixel goes to its nearest codebook colour (CIELAB) through a lookup table over colour bins, built once per
codebook. A spatial layout splits the image into regions, each with its own histogram (shares that sum to 1);
"global+" layouts add the whole-image histogram as one more block. Blocks are compared with weights
(:func:`block_weights`): in a "global+" layout the regions together weigh as much as the whole-image block.

Counting runs through OpenCV when it can (:func:`region_counts`): several times faster than the numpy
formulation, with identical counts (tests/test_features.py checks both on every layout). The numpy formulation
stays as the reference and as the fallback for what the fast path does not cover.
"""

from __future__ import annotations

import functools
import sys
import weakref

import cv2
import numpy as np
from numpy.typing import ArrayLike

from .blas import one_blas_thread
from .colour import bin_centres_in, bin_index
from .kmeans import nearest_centre

LAYOUTS = ("global", "2x2", "3x3", "center", "global+2x2", "global+3x3", "global+center")
LUT_BITS = 6


def lookup_table(codebook: ArrayLike, space: str = "lab", bits: int = LUT_BITS) -> np.ndarray:
    """Nearest codebook colour of the centre of every colour bin.

    Parameters
    ----------
    codebook : (K, 3) float, colours in the working space
    space : {"lab", "rgb"}
    bits : int, bits per channel of the bins (6: 262144 entries)

    Returns
    -------
    lut : (2**(3*bits),) int32, index into ``codebook``, read-only (so the fast path may cache what it derives
        from it)
    """
    with one_blas_thread():
        lut = nearest_centre(bin_centres_in(bits, space), codebook)
    lut.flags.writeable = False
    return lut


@functools.lru_cache(maxsize=8)
def region_map(height: int, width: int, layout: str) -> tuple[np.ndarray, int]:
    """Region of every pixel for a layout (without its "global+" block). Cached per (height, width, layout).

    Returns
    -------
    regions : (height, width) int32 in 0 .. n_regions - 1, read-only
    n_regions : int
    """
    regions, n_regions = _region_map(height, width, layout)
    regions.flags.writeable = False
    return regions, n_regions


def _region_map(height, width, layout, start=0, stop=None):
    """Regions of rows ``start:stop`` of a ``height`` x ``width`` image: ``(stop - start, width) int32``."""
    stop = height if stop is None else stop
    base = layout.removeprefix("global+")
    if base == "global":
        return np.zeros((stop - start, width), np.int32), 1
    y = (np.arange(start, stop) + 0.5) / height
    x = (np.arange(width) + 0.5) / width
    if base in ("2x2", "3x3"):
        n = int(base[0])
        rows = np.minimum((y * n).astype(np.int32), n - 1)
        cols = np.minimum((x * n).astype(np.int32), n - 1)
        return rows[:, None] * n + cols[None, :], n * n
    if base == "center":
        # An ellipse over the middle (axes 3/4 of the image) and the four corner quadrants around it: the
        # subject of a photo tends to sit in the middle, its surroundings in the corners.
        yy, xx = np.meshgrid(y, x, indexing="ij")
        quadrant = (yy >= 0.5).astype(np.int32) * 2 + (xx >= 0.5)
        inside = ((xx - 0.5) / 0.375) ** 2 + ((yy - 0.5) / 0.375) ** 2 <= 1
        return np.where(inside, 4, quadrant).astype(np.int32), 5
    raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def n_blocks(layout: str) -> int:
    """Number of histograms (blocks) a layout gives per image."""
    return region_map(1, 1, layout)[1] + layout.startswith("global+")


def block_weights(layout: str) -> np.ndarray:
    """Weight of each block's distance in the total: ``(B,) float64``.

    Plain layouts weigh every block 1. A "global+" layout weighs the whole-image block 1 and each of its n regions
    1/n, so the layout means "half what the image holds, half where it holds it": otherwise n small, noisy region
    histograms would outvote the global one n to 1.
    """
    regions = region_map(1, 1, layout)[1]
    if layout.startswith("global+"):
        return np.concatenate([[1.0], np.full(regions, 1.0 / regions)])
    return np.ones(regions)


def whole_picture_shares(vectors: ArrayLike, n_colors: int, layout: str) -> np.ndarray:
    """Whole-picture colour shares of histograms (the colour make-up of each picture).

    Parameters
    ----------
    vectors : (N, B*K) float, shares per block, as :func:`histogram` gives them
    n_colors : int, K
    layout : str, the layout the histograms were made with (B = :func:`n_blocks`)

    Returns
    -------
    shares : (N, K) float64; the first block for "global+" layouts, else the mean of the blocks
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    blocks = n_blocks(layout)
    if vectors.ndim != 2 or vectors.shape[1] != blocks * n_colors:
        raise ValueError(f"vectors must be (N, {blocks} * {n_colors}) for layout {layout!r}, got {vectors.shape}")
    per_block = vectors.reshape(len(vectors), blocks, n_colors)
    return per_block[:, 0] if layout.startswith("global+") else per_block.mean(axis=1)


def histogram(image: np.ndarray, lut: np.ndarray, n_colors: int, layout: str = "global", bits: int = LUT_BITS
              ) -> np.ndarray:
    """Colour histogram of an image over a codebook, one block per region.

    Parameters
    ----------
    image : (H, W, 3) uint8, sRGB
    lut : (2**(3*bits),) int, from :func:`lookup_table`
    n_colors : int, codebook size K
    layout : str, one of ``LAYOUTS``
    bits : int, bits per channel of the lookup table

    Returns
    -------
    hist : (B * K,) float32, B = :func:`n_blocks`; each block holds shares that sum to 1

    Examples
    --------
    >>> import numpy as np
    >>> from cbir.core.colour import srgb_to_lab
    >>> lut = lookup_table(srgb_to_lab([[0, 0, 0], [255, 255, 255]]))  # a codebook of black and white
    >>> image = np.zeros((4, 4, 3), np.uint8); image[0] = 250  # the top row nearly white
    >>> histogram(image, lut, 2).tolist()
    [0.75, 0.25]
    >>> histogram(image, lut, 2, "global+2x2").reshape(5, 2).tolist()  # whole picture, then each quarter
    [[0.75, 0.25], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [1.0, 0.0]]
    """
    counts = _counts(image, lut, n_colors, layout, bits, "auto")
    # Shares are divided in float32 when the counts are exact float32 integers (the OpenCV path, under 2**24
    # pixels): a float32 quotient of float32 operands is the float64 quotient rounded once more to float32
    # (53 >= 2 * 24 + 2 bits, so the double rounding is harmless), so the bits are those of the float64 path.
    blocks = np.empty((len(counts) + layout.startswith("global+"), n_colors), counts.dtype)
    blocks[len(blocks) - len(counts):] = counts
    if layout.startswith("global+"):
        np.sum(counts, axis=0, out=blocks[0])
    totals = blocks.sum(1, keepdims=True)
    np.maximum(totals, 1, out=totals)
    blocks /= totals
    return blocks.astype(np.float32, copy=False).ravel()


def region_counts(image: np.ndarray, lut: np.ndarray, n_colors: int, layout: str = "global", bits: int = LUT_BITS,
                  method: str = "auto") -> np.ndarray:
    """Pixels of each codebook colour in each region: ``(n_regions, K) int64``.

    ``method``: "numpy" (the reference: bin index, LUT gather, bincount), "opencv" (the same counts through OpenCV
    kernels, see :func:`_opencv_counts`) or "auto" (OpenCV whenever it applies, else numpy).
    """
    if method not in ("auto", "numpy", "opencv"):
        raise ValueError(f"unknown method {method!r}; choose auto, numpy or opencv")
    return _counts(image, lut, n_colors, layout, bits, method).astype(np.int64, copy=False)


def _counts(image, lut, n_colors, layout, bits, method):
    """:func:`region_counts` as exact ``float32`` from the OpenCV path, else ``float64`` (numpy path)."""
    if method == "auto" and _in_strips(image):
        return _strip_counts(image, lut, n_colors, layout, bits)
    if method != "numpy" and _opencv_applies(image, lut, n_colors, layout, bits):
        return _opencv_counts(image, lut, n_colors, layout, bits)
    if method == "opencv":
        raise ValueError("the OpenCV path needs a read-only LUT from lookup_table, bits <= 7, a uint8 (H, W, 3) "
                         "image under 2**24 pixels and sides under 32767")
    return _numpy_counts(image, lut, n_colors, layout, bits)


def _numpy_counts(image, lut, n_colors, layout, bits, rows=None):
    """The reference formulation; ``rows``: ``(start, stop, height)`` when ``image`` is that strip of a taller
    image (regions are those of the whole image)."""
    start, stop, height = rows or (0, image.shape[0], image.shape[0])
    labels = lut[bin_index(image, bits)]
    regions, n_regions = _region_map(height, image.shape[1], layout, start, stop)
    counts = np.bincount((regions * n_colors + labels).ravel(), minlength=n_regions * n_colors)
    return counts.reshape(n_regions, n_colors).astype(np.float64)


# --- large images, a strip of rows at a time ------------------------------------------------------------------
# Counting a 100-megapixel image at once took temporaries of 20 bytes a pixel (2 GB, the numpy path); a strip of
# STRIP_PIXELS at a time keeps them to a few tens of MB. Counts are integers, so the sum of the strips' counts is
# exactly the count of the whole image: the histogram is the same bit for bit.
STRIP_PIXELS = 1 << 22


def _in_strips(image):
    return (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
            and image.shape[0] > 1 and image.shape[0] * image.shape[1] >= 1 << 24)


def _strip_counts(image, lut, n_colors, layout, bits, strip_pixels=STRIP_PIXELS):
    """Counts of a large image, summed over strips of rows, as ``float64`` (exact integers)."""
    height, width = image.shape[:2]
    step = max(1, strip_pixels // width)
    total = None
    for start in range(0, height, step):
        stop = min(height, start + step)
        strip = image[start:stop]
        if _opencv_applies(strip, lut, n_colors, layout, bits):
            counts = _opencv_counts(strip, lut, n_colors, layout, bits, rows=(start, stop, height))
        else:
            counts = _numpy_counts(strip, lut, n_colors, layout, bits, rows=(start, stop, height))
        total = counts.astype(np.float64) if total is None else total + counts
    return total


# --- the OpenCV path ------------------------------------------------------------------------------------------
# 1. RGB -> RGBA, and viewing each pixel as one little-endian uint32 0xAABBGGRR;
# 2. (v >> (8 - bits)) & mask keeps the top bits of R, G and B in bytes 0..2 and clears byte 3, so each pixel read
#    as two int16 is (x, y) = (r' + 256 g', b');
# 3. cv2.remap (nearest) gathers the codebook label at (x, y) from the LUT laid out as a 2-D image;
# 4. cv2.calcHist counts label + K * (region + n_regions * lane), lane = column % 4, then the lanes are summed:
#    neighbouring pixels mostly share a label, and counting them into four different bins avoids a chain of
#    increments of one counter (docs/benchmarks.md). calcHist counts in float32, exact below 2**24 pixels.
LANES = 4


def _opencv_applies(image, lut, n_colors, layout, bits):
    return (sys.byteorder == "little" and isinstance(image, np.ndarray) and image.dtype == np.uint8
            and image.ndim == 3 and image.shape[2] == 3 and 0 < image.shape[0] * image.shape[1] < 1 << 24
            and max(image.shape[:2]) < 32767 and isinstance(lut, np.ndarray) and not lut.flags.writeable
            and 1 <= bits <= 7 and len(lut) == 1 << (3 * bits) and LANES * 9 * n_colors < 1 << 16)


def _opencv_counts(image, lut, n_colors, layout, bits, rows=None):
    height, width = image.shape[:2]
    packed = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2RGBA).view(np.uint32)
    np.right_shift(packed, 8 - bits, out=packed)
    np.bitwise_and(packed, ((1 << bits) - 1) * 0x010101, out=packed)
    labels = cv2.remap(_remap_table(lut, bits), packed.view(np.int16).reshape(height, width, 2), None,
                       cv2.INTER_NEAREST)
    if rows is None:
        offsets, n_regions = _bin_offsets(height, width, layout, n_colors)
    else:  # a strip of a taller image: its own offsets (not cached, every strip differs)
        offsets, n_regions = _offsets(*_region_map(rows[2], width, layout, rows[0], rows[1]), width, n_colors)
    n_bins = LANES * n_regions * n_colors
    counts = cv2.calcHist([cv2.add(labels, offsets, dst=labels)], [0], None, [n_bins], [0, n_bins])
    return counts.reshape(LANES, n_regions, n_colors).sum(0)  # float32 sums of integers < 2**24: exact


_REMAP_TABLES = {}  # id(lut) -> (weak reference to lut, bits, table); entries go when their LUT goes


def _remap_table(lut, bits):
    """The LUT as a ``(2**bits, 257 * (2**bits - 1) + 1) uint16`` image: label of (r, g, b) at (r + 256 g, b)."""
    entry = _REMAP_TABLES.get(id(lut))
    if entry is not None and entry[0]() is lut and entry[1] == bits:
        return entry[2]
    n = 1 << bits
    padded = np.zeros((n, n, 256), np.uint16)  # [b, g, r]: row b, column r + 256 g of the table once flattened
    padded[:, :, :n] = lut.reshape(n, n, n).transpose(2, 1, 0)  # lut[(r << 2 bits) | (g << bits) | b]
    table = np.ascontiguousarray(padded.reshape(n, n * 256)[:, : 257 * (n - 1) + 1])
    key = id(lut)
    _REMAP_TABLES[key] = (weakref.ref(lut, lambda _: _REMAP_TABLES.pop(key, None)), bits, table)
    return table


@functools.lru_cache(maxsize=8)
def _bin_offsets(height, width, layout, n_colors):
    """``n_colors * (region + n_regions * (column % LANES))`` of every pixel: ``(height, width) uint16``."""
    offsets, n_regions = _offsets(*region_map(height, width, layout), width, n_colors)
    offsets.flags.writeable = False
    return offsets, n_regions


def _offsets(regions, n_regions, width, n_colors):
    lanes = np.arange(width) % LANES
    return (n_colors * (regions + n_regions * lanes[None, :])).astype(np.uint16), n_regions
