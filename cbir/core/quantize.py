"""k-means colour quantization: the core that codebooks, histograms and ``cbir quantize`` all use.

Method: summarise the image by its distinct colours and their pixel counts (lossless), run weighted k-means
coarse to fine (k-means++ restarts on 4-bit colour bins, Lloyd steps on 5-bit bins, then on the distinct colours)
in the working space; every pixel gets its exact nearest palette colour through its distinct colour.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .colour import distinct_colours, from_space, group_colours, srgb_to_lab, to_space
from .kmeans import KMeansResult, weighted_kmeans

RESTART_BUDGET = 50  # k-means++ restarts on the coarse bins: about this many centres seeded in all (see restarts)
COARSE_BITS = 4  # bits per channel of the coarse bins: at most 4096, a few hundred occupied in a photo
REFINE_BITS = (5,)  # finer bins on the way to the exact colours
REFINE_ITER = 10  # Lloyd steps at most on each finer level
FINAL_ITER = 3  # Lloyd steps at most on the distinct colours


@dataclass(frozen=True)
class Quantization:
    """Result of :func:`quantize`, palette sorted by share, largest first.

    palette : (k', 3) float32, in the working space
    palette_rgb : (k', 3) uint8, sRGB
    shares : (k',) float32, fraction of pixels per colour, sums to 1
    labels : (H, W) int32, palette index per pixel
    image : (H, W, 3) uint8, the posterized sRGB image
    space : str
    """

    palette: np.ndarray
    palette_rgb: np.ndarray
    shares: np.ndarray
    labels: np.ndarray
    image: np.ndarray
    space: str


def check_image(image: ArrayLike) -> np.ndarray:
    """Validate a decoded image: ``(H, W, 3) uint8`` sRGB with at least one pixel."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(
            f"image must be a non-empty (H, W, 3) uint8 sRGB array, got {image.shape} {image.dtype}; "
            "cbir.imageio.read_image converts grayscale, 16-bit and alpha images to that form"
        )
    return image


def quantize(image: np.ndarray, k: int, *, space: str = "lab", seed: int = 0, init: ArrayLike | None = None
             ) -> Quantization:
    """Posterize an image to at most ``k`` colours by weighted k-means over its colours.

    Parameters
    ----------
    image : (H, W, 3) uint8, sRGB
    k : int >= 1; an image with fewer distinct colours gets fewer
    space : {"lab", "rgb"}, where distances are measured
    seed : int, k-means++ seed; same inputs and seed give the same result
    init : (k, 3) float, starting palette in the working space instead of k-means++ (for experiments and tests)

    Returns
    -------
    Quantization

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((2, 4, 3), np.uint8); image[:, 2:] = (255, 0, 0)
    >>> result = quantize(image, 2)
    >>> result.palette_rgb.tolist(), result.shares.tolist()
    ([[255, 0, 0], [0, 0, 0]], [0.5, 0.5])
    >>> result.labels.tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0]]
    """
    image = check_image(image)
    colours, counts, inverse = distinct_colours(image)
    result = kmeans_palette(colours, counts, k, space=space, seed=seed, init=init)
    # Lloyd's last step labels every distinct colour with its nearest palette colour: the pixels follow.
    palette = result.centres
    labels = result.labels[inverse]

    shares = np.bincount(labels, minlength=len(palette)).astype(np.float64)
    order = np.argsort(-shares, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    palette = palette[order]
    labels = rank[labels].astype(np.int32)
    shares = (shares[order] / shares.sum()).astype(np.float32)
    keep = shares > 0
    palette, shares = palette[keep], shares[keep]
    palette_rgb = from_space(palette, space)
    return Quantization(
        palette=palette,
        palette_rgb=palette_rgb,
        shares=shares,
        labels=labels.reshape(image.shape[:2]),
        image=np.take(palette_rgb, labels, axis=0).reshape(image.shape),
        space=space,
    )


def restarts(k: int) -> int:
    """k-means++ restarts for k colours: many for small palettes, whose few local optima differ a lot (and whose
    restarts are cheap), one for large ones, whose many optima are all close (docs/benchmarks.md)."""
    return max(1, min(10, round(RESTART_BUDGET / k)))


def kmeans_palette(colours: ArrayLike, counts: ArrayLike, k: int, *, space: str = "lab", seed: int = 0,
                   init: ArrayLike | None = None) -> KMeansResult:
    """Weighted k-means over colours, coarse to fine: the quantization core, shared by images and codebooks.

    k-means++ restarts run on a few hundred coarse colour bins, where they are cheap; Lloyd steps on finer bins,
    then on the given colours themselves, recover the detail.

    Parameters
    ----------
    colours : (U, 3) uint8 or float in 0..255, sRGB (distinct colours, or mean colours of bins)
    counts : (U,) int or float, weight (pixel count) of each colour
    k : int >= 1
    space : {"lab", "rgb"}
    seed : int
    init : (k, 3) float, starting centres in the working space; then plain Lloyd on ``colours`` to convergence

    Returns
    -------
    KMeansResult : ``centres (k', 3) float32`` in the working space and ``labels (U,) int32``, each colour's
    nearest centre
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    points = to_space(colours, space)
    if init is not None:
        return weighted_kmeans(points, counts, int(k), init=init)
    coarse_colours, coarse_counts = group_colours(colours, counts, COARSE_BITS)
    result = weighted_kmeans(to_space(coarse_colours, space), coarse_counts, int(k), seed=seed, n_init=restarts(k))
    for bits in REFINE_BITS:
        binned, binned_counts = group_colours(colours, counts, bits)
        result = weighted_kmeans(to_space(binned, space), binned_counts, int(k), init=result.centres,
                                 max_iter=REFINE_ITER)
    return weighted_kmeans(points, counts, int(k), init=result.centres, max_iter=FINAL_ITER)


def rgb_mse(a: ArrayLike, b: ArrayLike) -> float:
    """Mean squared error over all pixels and channels of two ``(H, W, 3) uint8`` images, as float."""
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def mean_delta_e(a: ArrayLike, b: ArrayLike) -> float:
    """Mean CIE76 colour difference (Euclidean distance in CIELAB) of two ``(H, W, 3) uint8`` sRGB images."""
    return float(np.linalg.norm(srgb_to_lab(a).astype(np.float64) - srgb_to_lab(b), axis=-1).mean())


@dataclass(frozen=True)
class SweepResult:
    """One palette size of :func:`quantize_sweep`: the quantization, its errors and how long it took."""

    k: int
    quantization: Quantization
    rgb_mse: float
    mean_delta_e: float
    seconds: float


def quantize_sweep(image: np.ndarray, ks: Sequence[int], *, space: str = "lab", seed: int = 0
                   ) -> list[SweepResult]:
    """Quantize one image to each of several palette sizes, with the error and the time of each.

    Parameters
    ----------
    image : (H, W, 3) uint8, sRGB
    ks : list of int, palette sizes
    space, seed : see :func:`quantize`

    Returns
    -------
    list of SweepResult, in the order of ``ks``

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((4, 4, 3), np.uint8); image[:, 2:] = 255
    >>> [(r.k, len(r.quantization.palette), r.rgb_mse) for r in quantize_sweep(image, [1, 2])]
    [(1, 1, 16328.5), (2, 2, 0.0)]
    """
    image = check_image(image)
    results = []
    for k in ks:
        start = time.perf_counter()
        result = quantize(image, k, space=space, seed=seed)
        seconds = time.perf_counter() - start
        results.append(SweepResult(k, result, rgb_mse(image, result.image), mean_delta_e(image, result.image),
                                   seconds))
    return results
