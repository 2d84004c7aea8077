"""Colour histograms over a codebook: the features that are indexed and compared. Pure numeric functions.

A pixel goes to its nearest codebook colour (CIELAB) through a lookup table over colour bins, built once per
codebook. A spatial layout splits the image into regions, each with its own histogram (shares that sum to 1);
"global+" layouts add the whole-image histogram as one more block. Blocks are compared with weights
(:func:`block_weights`): in a "global+" layout the regions together weigh as much as the whole-image block.
"""

import numpy as np

from .colour import bin_centres, bin_index, to_space
from .kmeans import nearest_centre

LAYOUTS = ("global", "2x2", "3x3", "center", "global+2x2", "global+3x3", "global+center")
LUT_BITS = 6


def lookup_table(codebook, space="lab", bits=LUT_BITS):
    """Nearest codebook colour of the centre of every colour bin.

    Parameters
    ----------
    codebook : (K, 3) float, colours in the working space
    space : {"lab", "rgb"}
    bits : int, bits per channel of the bins (6: 262144 entries)

    Returns
    -------
    lut : (2**(3*bits),) int32, index into ``codebook``
    """
    return nearest_centre(to_space(bin_centres(bits), space), codebook)


def region_map(height, width, layout):
    """Region of every pixel for a layout (without its "global+" block).

    Returns
    -------
    regions : (height, width) int32 in 0 .. n_regions - 1
    n_regions : int
    """
    base = layout.removeprefix("global+")
    if base == "global":
        return np.zeros((height, width), np.int32), 1
    y = (np.arange(height) + 0.5) / height
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


def n_blocks(layout):
    """Number of histograms (blocks) a layout gives per image."""
    return region_map(1, 1, layout)[1] + layout.startswith("global+")


def block_weights(layout):
    """Weight of each block's distance in the total: ``(B,) float64``.

    Plain layouts weigh every block 1. A "global+" layout weighs the whole-image block 1 and each of its n regions
    1/n, so the layout means "half what the image holds, half where it holds it": otherwise n small, noisy region
    histograms would outvote the global one n to 1.
    """
    regions = region_map(1, 1, layout)[1]
    if layout.startswith("global+"):
        return np.concatenate([[1.0], np.full(regions, 1.0 / regions)])
    return np.ones(regions)


def histogram(image, lut, n_colors, layout="global", bits=LUT_BITS):
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
    """
    labels = lut[bin_index(image, bits)]
    regions, n_regions = region_map(image.shape[0], image.shape[1], layout)
    counts = np.bincount((regions * n_colors + labels).ravel(), minlength=n_regions * n_colors)
    counts = counts.reshape(n_regions, n_colors).astype(np.float64)
    if layout.startswith("global+"):
        counts = np.vstack([counts.sum(0, keepdims=True), counts])
    return (counts / np.maximum(counts.sum(1, keepdims=True), 1)).astype(np.float32).ravel()
