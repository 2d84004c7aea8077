"""Exact nearest-palette-colour assignment at lookup-table speed.

Every pixel lies in a small RGB cube (its colour bin). If the bin's centre is much nearer one palette colour than
any other (a margin of twice the bin's radius in the working space), every pixel in the bin has that nearest
colour (triangle inequality), so one table lookup labels the whole bin. Only pixels in the few bins that straddle
a boundary between palette colours are measured one by one. The result equals brute-force nearest assignment.
"""

from dataclasses import dataclass
from functools import cache

import numpy as np

from .colour import bin_centres, bin_index, to_space
from .kmeans import nearest_centre, squared_distances

DEFAULT_BITS = 6
# The radius of a bin in CIELAB is measured at its eight corners; the map from sRGB is smooth and nearly affine
# over one bin, so a small safety factor covers the curvature between corners.
_RADIUS_SAFETY = 1.05
CANDIDATES = 4


@cache
def bin_geometry(bits, space):
    """Centre of every colour bin in the working space and an upper bound of its radius there.

    Returns
    -------
    centres : (2**(3*bits), 3) float32
    radius : (2**(3*bits),) float32, max distance from the centre to any 8-bit colour in the bin
    """
    width = 2 ** (8 - bits)
    rgb_centres = bin_centres(bits)  # exactly lo + width/2
    lo = rgb_centres - width / 2
    centres = to_space(rgb_centres, space)
    radius = np.zeros(len(centres), dtype=np.float32)
    for corner in np.ndindex(2, 2, 2):
        corner_rgb = lo + np.asarray(corner, dtype=np.float32) * (width - 1)  # 8-bit values run lo .. lo+width-1
        d = np.linalg.norm(to_space(corner_rgb, space) - centres, axis=1)
        np.maximum(radius, d, out=radius)
    radius = radius * _RADIUS_SAFETY + 1e-3
    for array in (centres, radius):
        array.setflags(write=False)
    return centres, radius


@dataclass(frozen=True)
class BinLabels:
    """Nearest palette colour of each bin, and the palette colours that any pixel of the bin could be nearest to.

    labels : (B,) int32, nearest palette colour of the bin centre
    candidates : (B, C) int32, the C palette colours nearest the bin centre
    n_candidates : (B,) int32, how many palette colours some pixel of the bin could be nearest to; 1 means the
        whole bin takes ``labels``, up to C means one of ``candidates``, more means any
    """

    labels: np.ndarray
    candidates: np.ndarray
    n_candidates: np.ndarray


def label_bins(palette, space, bits=DEFAULT_BITS, bins=None, n_candidates=CANDIDATES):
    """Label colour bins with their nearest palette colour and their candidate palette colours.

    Parameters
    ----------
    palette : (K, 3) float, in the working space
    space : {"lab", "rgb"}
    bits : int, bits per channel of the bins
    bins : (B,) int, bin indices to label; all 2**(3*bits) bins if None
    n_candidates : int, candidates kept per bin

    Returns
    -------
    BinLabels for ``bins`` (in that order)
    """
    palette = np.asarray(palette, dtype=np.float32)
    centres, radius = bin_geometry(bits, space)
    if bins is not None:
        centres, radius = centres[bins], radius[bins]
    c = min(n_candidates, len(palette))
    labels = np.empty(len(centres), np.int32)
    candidates = np.empty((len(centres), c), np.int32)
    counts = np.empty(len(centres), np.int32)
    chunk = 1 << 15
    for start in range(0, len(centres), chunk):
        part = slice(start, start + chunk)
        d = np.sqrt(squared_distances(centres[part], palette))
        labels[part] = d.argmin(1)
        nearest = d[np.arange(len(d)), labels[part]]
        # Pixel x in the bin: d(x, c) >= d(centre, c) - r and d(x, nearest) <= d(centre, nearest) + r.
        counts[part] = (d <= (nearest + 2 * radius[part])[:, None]).sum(1)
        candidates[part] = np.argpartition(d, c - 1, axis=1)[:, :c] if c < len(palette) else np.arange(c)
    return BinLabels(labels, candidates, counts)


def assign_pixels(rgb, palette, space, bits=DEFAULT_BITS, table=None, idx=None):
    """Index of the nearest palette colour (in the working space) for every pixel, exactly.

    Parameters
    ----------
    rgb : (N, 3) uint8, sRGB pixels
    palette : (K, 3) float, in the working space
    space : {"lab", "rgb"}
    bits : int, bits per channel of the bins
    table : BinLabels over all bins from :func:`label_bins`, to reuse for many images with one palette;
        otherwise only the bins present in ``rgb`` are labelled
    idx : (N,) int, the pixels' bin indices if already computed (:func:`cbir.colour.bin_index`)

    Returns
    -------
    labels : (N,) int32
    """
    palette = np.asarray(palette, dtype=np.float32)
    idx = bin_index(rgb, bits) if idx is None else idx
    if table is None:
        present = np.flatnonzero(np.bincount(idx, minlength=1 << (3 * bits)))
        position = np.zeros(1 << (3 * bits), np.int32)
        position[present] = np.arange(len(present), dtype=np.int32)
        table = label_bins(palette, space, bits, present)
        idx = position[idx]
    labels = table.labels[idx]
    counts = table.n_candidates[idx]
    few = np.flatnonzero((counts > 1) & (counts <= table.candidates.shape[1]))
    if len(few):
        candidates = table.candidates[idx[few]]
        d2 = ((to_space(rgb[few], space)[:, None, :] - palette[candidates]) ** 2).sum(-1)
        labels[few] = np.take_along_axis(candidates, d2.argmin(1)[:, None], 1)[:, 0]
    many = np.flatnonzero(counts > table.candidates.shape[1])
    if len(many):
        labels[many] = nearest_centre(to_space(rgb[many], space), palette)
    return labels
