"""Learning a collection's colour codebook with the quantization core. Pure numeric functions.

The colours of a sample of images are pooled as counts over 6-bit colour bins (262144 bins, a few MB however many
images), then one weighted k-means over the occupied bins (coarse to fine, as for a single image) gives K colours.
"""

from __future__ import annotations

import cv2
import numpy as np

from .blas import one_blas_thread
from .colour import bin_centres, bin_index, from_space
from .quantize import kmeans_palette

POOL_BITS = 6


def empty_pool() -> np.ndarray:
    """Pixel counts per colour bin, to be filled by :func:`pool_colours`: ``(2**18,) int64`` zeros."""
    return np.zeros(1 << (3 * POOL_BITS), np.int64)


def pool_colours(pool: np.ndarray, image: np.ndarray) -> None:
    """Add the pixels of ``image (H, W, 3) uint8`` to ``pool`` in place, each image weighing the same.

    Every image contributes 65536 counts in all (its shares scaled), so large photos do not outweigh small ones.
    """
    pool_counts(pool, *colour_counts(image))


def colour_counts(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The colour bins an image ``(H, W, 3) uint8`` occupies and its pixels in each: ``bins (n,) int64``,
    ``counts (n,) int64``. What :func:`pool_colours` adds, in a form small enough to send between processes."""
    # Only the occupied bins: a bincount over all 2**18 bins cost as much as decoding the image (4.5 ms against
    # 0.4 ms per 128x96 image, tests/benchmarks/bench_first_index.py), and the pool is the same.
    return np.unique(bin_index(image, POOL_BITS).ravel(), return_counts=True)


def block_means(image: np.ndarray, factor: int) -> np.ndarray:
    """``image (H, W, 3) uint8`` averaged over ``factor`` x ``factor`` blocks (OpenCV's area interpolation):
    ``(max(1, H // factor), max(1, W // factor), 3) uint8``; the image itself when ``factor`` is 1.

    What a JPEG decoded ``factor`` times smaller holds (its DCT scaling keeps the mean of each block), from a decode
    that was made larger for the histograms: the codebook's sample is decoded once, at the histograms' scale.
    """
    if factor <= 1:
        return image
    height, width = image.shape[:2]
    return cv2.resize(image, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA)


def pool_counts(pool: np.ndarray, bins: np.ndarray, counts: np.ndarray) -> None:
    """Add one image's :func:`colour_counts` to ``pool`` in place, scaled to 65536 in all."""
    pool[bins] += np.rint(counts * (65536 / max(int(counts.sum()), 1))).astype(np.int64)


def learn_codebook(pool: np.ndarray, k: int, *, space: str = "lab", seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k colours that best represent the pooled colours.

    Parameters
    ----------
    pool : (2**18,) int, from :func:`pool_colours`
    k : int, codebook size; fewer occupied colour bins give fewer colours
    space : {"lab", "rgb"}
    seed : int

    Returns
    -------
    colours : (k', 3) float32, in the working space, ordered by share, largest first
    rgb : (k', 3) uint8, sRGB
    shares : (k',) float64, share of the pooled pixels nearest each colour

    Examples
    --------
    >>> import numpy as np
    >>> pool = empty_pool()
    >>> image = np.zeros((8, 8, 3), np.uint8); image[:, :2] = (255, 255, 0)
    >>> pool_colours(pool, image)
    >>> colours, rgb, shares = learn_codebook(pool, 2)
    >>> rgb.tolist(), shares.tolist()  # largest share first; colours are the centres of 6-bit colour bins
    ([[2, 2, 2], [254, 254, 2]], [0.75, 0.25])
    """
    occupied = np.flatnonzero(pool)
    if len(occupied) == 0:
        raise ValueError("the colour pool is empty: pool the colours of at least one image first")
    weights = pool[occupied].astype(np.float64)
    with one_blas_thread():
        result = kmeans_palette(bin_centres(POOL_BITS)[occupied], weights, k, space=space, seed=seed)
    shares = np.bincount(result.labels, weights=weights, minlength=len(result.centres)) / weights.sum()
    order = np.argsort(-shares, kind="stable")
    colours = result.centres[order]
    return colours, from_space(colours, space), shares[order]
