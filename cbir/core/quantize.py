"""k-means colour quantization: the core that codebooks, histograms and ``cbir quantize`` all use.

Method: summarise the image by its distinct colours and their pixel counts (lossless), run weighted k-means
coarse to fine (k-means++ restarts on coarse colour bins, Lloyd steps on finer bins, then on the distinct colours)
in the working space; every pixel gets its exact nearest palette colour through its distinct colour, or, with
dithering, the nearest to its colour plus the error its neighbours pushed on (:mod:`cbir.core.dither`).

Images with an alpha channel are quantized in premultiplied RGBA: a palette entry has an alpha too, colour
differences count in proportion to opacity, and transparent pixels keep a transparent entry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .colour import QUANTIZE_SPACES, distinct_colours, from_space, group_colours, srgb_to_lab, to_space
from .dither import ERROR_LIMIT, dither_strength, floyd_steinberg, perceptual_metric
from .kmeans import KMeansResult, nearest_centre, weighted_kmeans

RESTART_BUDGET = 50  # k-means++ restarts on the coarse bins: about this many centres seeded in all (see restarts)
COARSE_BITS = 4  # bits per channel of the coarse bins: at most 4096, a few hundred occupied in a photo
REFINE_BITS = (5,)  # finer bins on the way to the exact colours
REFINE_ITER = 10  # Lloyd steps at most on each finer level
FINAL_ITER = 3  # Lloyd steps at most on the distinct colours
# Large palettes: a few hundred 4-bit bins are too few to seed 256 centres well (RGB MSE 14% above 5-bit seeding
# on the Kodak images), so they seed on 5-bit bins and refine on 6-bit ones (docs/benchmarks.md).
LARGE_PALETTE = 64
LARGE_SCHEDULE = (5, (6,), 5, FINAL_ITER)
DITHERS = ("none", "floyd-steinberg")
ALPHA_WEIGHT = 500.0  # alpha 0..1 scaled to this in the features: an alpha step of 1/255 weighs ~2 RGB levels
ALPHA_SNAP = 8  # palette alphas this close to 0 or 255 become exactly transparent or opaque


@dataclass(frozen=True)
class Quantization:
    """Result of :func:`quantize`, palette sorted by share, largest first.

    palette : (k', D) float32, in the working space (D = 3, or 6 for rgblab; one more, premultiplied, with alpha)
    palette_rgb : (k', 3) uint8, sRGB
    shares : (k',) float32, fraction of pixels per colour, sums to 1
    labels : (H, W) int32, palette index per pixel
    image : (H, W, 3) uint8, the quantized sRGB image; (H, W, 4) with straight alpha for an image with alpha
    space : str
    palette_alpha : (k',) uint8 alpha of each palette colour, or None for an image without alpha
    dither : str, "none" or "floyd-steinberg"
    """

    palette: np.ndarray
    palette_rgb: np.ndarray
    shares: np.ndarray
    labels: np.ndarray
    image: np.ndarray
    space: str
    palette_alpha: np.ndarray | None = None
    dither: str = "none"

    @property
    def palette_colours(self) -> np.ndarray:
        """``(k', 3)`` or, with alpha, ``(k', 4) uint8``: what a palette image file stores."""
        if self.palette_alpha is None:
            return self.palette_rgb
        return np.column_stack([self.palette_rgb, self.palette_alpha])


def check_image(image: ArrayLike, *, alpha: bool = False) -> np.ndarray:
    """Validate a decoded image: ``(H, W, 3) uint8`` sRGB (or ``(H, W, 4)`` with ``alpha``), at least one pixel."""
    image = np.asarray(image)
    channels = (3, 4) if alpha else (3,)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in channels or image.size == 0:
        shape = "(H, W, 3) or (H, W, 4)" if alpha else "(H, W, 3)"
        raise ValueError(
            f"image must be a non-empty {shape} uint8 sRGB array, got {image.shape} {image.dtype}; "
            "cbir.imageio.read_image converts grayscale, 16-bit and alpha images to that form"
        )
    return image


def quantize(image: np.ndarray, k: int, *, space: str = "rgblab", seed: int = 0, init: ArrayLike | None = None,
             dither: str = "none") -> Quantization:
    """Quantize an image to at most ``k`` colours by weighted k-means over its colours.

    Parameters
    ----------
    image : (H, W, 3) uint8, sRGB; or (H, W, 4) with straight alpha (kept: see :class:`Quantization`)
    k : int >= 1; an image with fewer distinct colours gets fewer
    space : {"rgblab", "lab", "rgb"}, where distances are measured: rgblab adds the RGB and the CIELAB squared
        differences, which keeps both the RGB error and the mean ΔE low; lab is best for ΔE alone, rgb for RGB
        MSE alone
    seed : int, k-means++ seed; same inputs and seed give the same result
    init : (k, D) float, starting palette in the working space instead of k-means++ (for experiments and tests)
    dither : {"none", "floyd-steinberg"}: each pixel its nearest palette colour, or Floyd-Steinberg error
        diffusion with the same palette (:func:`cbir.core.dither.floyd_steinberg`)

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
    image = check_image(image, alpha=True)
    if space not in QUANTIZE_SPACES:
        raise ValueError(f"unknown colour space {space!r}; choose one of {', '.join(QUANTIZE_SPACES)}")
    if dither not in DITHERS:
        raise ValueError(f"unknown dither {dither!r}; choose one of {', '.join(DITHERS)}")
    if not 0 <= seed < 1 << 63:
        raise ValueError(f"seed must be in 0..2**63-1, got {seed}")
    if image.shape[2] == 4 and image[..., 3].min() == 255:
        image = image[..., :3]  # an opaque alpha channel: nothing to keep
    if image.shape[2] == 4:
        palette, palette_rgb, alpha, labels = _quantize_rgba(image, k, space, seed, init)
    else:
        colours, counts, inverse = distinct_colours(image)
        result = kmeans_palette(colours, counts, k, space=space, seed=seed, init=init, schedule=_schedule(k),
                                matmul=True)
        # Lloyd's last step labels every distinct colour with its nearest palette colour: the pixels follow.
        palette, labels, alpha = result.centres, result.labels[inverse], None
        palette_rgb = from_space(palette, space)

    shares = np.bincount(labels, minlength=len(palette)).astype(np.float64)
    order = np.argsort(-shares, kind="stable")
    keep = order[shares[order] > 0]
    rank = np.zeros(len(palette), np.int32)
    rank[keep] = np.arange(len(keep))
    palette, palette_rgb, shares = palette[keep], palette_rgb[keep], shares[keep] / shares.sum()
    alpha = None if alpha is None else alpha[keep]
    labels = rank[labels].reshape(image.shape[:2])
    if dither == "floyd-steinberg":
        metric = perceptual_metric(palette_rgb, shares)
        colours = palette_rgb
        if alpha is not None:  # alpha weighs in the dithering as in the k-means features
            colours = np.column_stack([palette_rgb, alpha])
            metric = np.diag([1, 1, 1, ALPHA_WEIGHT / 255]).astype(np.float32)
            metric[:3, :3] = perceptual_metric(palette_rgb, shares)
        labels = floyd_steinberg(image, colours, strength=dither_strength(labels), metric=metric,
                                 error_limit=ERROR_LIMIT)
        shares = np.bincount(labels.ravel(), minlength=len(palette)) / labels.size
    colours = palette_rgb if alpha is None else np.column_stack([palette_rgb, alpha])
    return Quantization(
        palette=palette,
        palette_rgb=palette_rgb,
        shares=shares.astype(np.float32),
        labels=labels.astype(np.int32),
        image=np.take(colours, labels, axis=0),
        space=space,
        palette_alpha=alpha,
        dither=dither,
    )


def _schedule(k):
    """(coarse bits, refine bits, Lloyd steps per finer level, Lloyd steps on the distinct colours) for k."""
    return LARGE_SCHEDULE if k > LARGE_PALETTE else (COARSE_BITS, REFINE_BITS, REFINE_ITER, FINAL_ITER)


def rgba_features(colours: ArrayLike, space: str) -> np.ndarray:
    """Straight sRGB + alpha colours ``(U, 4) uint8`` -> premultiplied working-space features ``(U, D + 1)``."""
    colours = np.asarray(colours)
    opacity = colours[:, 3:].astype(np.float32) / 255
    return np.concatenate([to_space(colours[:, :3], space) * opacity, opacity * ALPHA_WEIGHT], axis=1)


def _quantize_rgba(image, k, space, seed, init):
    """Palette (features, sRGB, alpha) and pixel labels of an image with alpha (see the module docstring)."""
    pixels = image.reshape(-1, 4).copy()
    pixels[pixels[:, 3] == 0] = 0  # the colour hidden under a transparent pixel does not matter
    keys, inverse, counts = np.unique(pixels.view(np.uint32).ravel(), return_inverse=True, return_counts=True)
    colours = keys.view(np.uint8).reshape(-1, 4)
    features = rgba_features(colours, space)
    if init is not None:
        result = weighted_kmeans(features, counts, int(k), init=init, matmul=True)
    else:
        # Seeding on bins of 4 bits per channel (alpha too), then Lloyd on the distinct colours.
        bins = (colours >> 4).astype(np.int64) @ np.array([1 << 12, 1 << 8, 1 << 4, 1])
        _, grouped = np.unique(bins, return_inverse=True)
        mass = np.bincount(grouped, weights=counts)
        means = np.stack([np.bincount(grouped, weights=counts * f) for f in features.T], axis=1) / mass[:, None]
        result = weighted_kmeans(means, mass, int(k), seed=seed, n_init=restarts(k), matmul=True)
        result = weighted_kmeans(features, counts, int(k), init=result.centres, max_iter=REFINE_ITER, matmul=True)
    centres = result.centres.astype(np.float64)
    opacity = centres[:, -1] / ALPHA_WEIGHT
    alpha = np.clip(np.rint(opacity * 255), 0, 255)
    alpha[alpha <= ALPHA_SNAP] = 0
    alpha[alpha >= 255 - ALPHA_SNAP] = 255
    straight = centres[:, :-1] / np.maximum(opacity, 1e-6)[:, None]
    palette_rgb = from_space(straight.astype(np.float32), space)
    palette_rgb[alpha == 0] = 0
    alpha = alpha.astype(np.uint8)
    # Pixels go to the nearest of the palette as it will be stored (rounded, alpha snapped).
    palette = rgba_features(np.column_stack([palette_rgb, alpha]), space)
    labels = nearest_centre(features, palette)[inverse]
    return palette, palette_rgb, alpha, labels


def restarts(k: int) -> int:
    """k-means++ restarts for k colours: many for small palettes, whose few local optima differ a lot (and whose
    restarts are cheap), one for large ones, whose many optima are all close (docs/benchmarks.md)."""
    return max(1, min(10, round(RESTART_BUDGET / k)))


def kmeans_palette(colours: ArrayLike, counts: ArrayLike, k: int, *, space: str = "lab", seed: int = 0,
                   init: ArrayLike | None = None, schedule: tuple | None = None, matmul: bool = False
                   ) -> KMeansResult:
    """Weighted k-means over colours, coarse to fine: the quantization core, shared by images and codebooks.

    k-means++ restarts run on a few hundred coarse colour bins, where they are cheap; Lloyd steps on finer bins,
    then on the given colours themselves, recover the detail.

    Parameters
    ----------
    colours : (U, 3) uint8 or float in 0..255, sRGB (distinct colours, or mean colours of bins)
    counts : (U,) int or float, weight (pixel count) of each colour
    k : int >= 1
    space : {"lab", "rgb", "rgblab"}
    seed : int
    init : (k, D) float, starting centres in the working space; then plain Lloyd on ``colours`` to convergence
    schedule : (coarse bits, refine bits, Lloyd steps per refine level, Lloyd steps on ``colours``); default
        ``(COARSE_BITS, REFINE_BITS, REFINE_ITER, FINAL_ITER)``
    matmul : bool, see :func:`cbir.core.kmeans.weighted_kmeans` (image quantization uses it; codebooks keep
        OpenCV's distances, so shipped indexes stay reproducible to the last digit)

    Returns
    -------
    KMeansResult : ``centres (k', D) float32`` in the working space and ``labels (U,) int32``, each colour's
    nearest centre
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    coarse_bits, refine_bits, refine_iter, final_iter = schedule or (COARSE_BITS, REFINE_BITS, REFINE_ITER,
                                                                     FINAL_ITER)
    points = to_space(colours, space)
    if init is not None:
        return weighted_kmeans(points, counts, int(k), init=init, matmul=matmul)
    coarse_colours, coarse_counts = group_colours(colours, counts, coarse_bits)
    result = weighted_kmeans(to_space(coarse_colours, space), coarse_counts, int(k), seed=seed, n_init=restarts(k),
                             matmul=matmul)
    for bits in refine_bits:
        binned, binned_counts = group_colours(colours, counts, bits)
        result = weighted_kmeans(to_space(binned, space), binned_counts, int(k), init=result.centres,
                                 max_iter=refine_iter, matmul=matmul)
    return weighted_kmeans(points, counts, int(k), init=result.centres, max_iter=final_iter, matmul=matmul)


def rgb_mse(a: ArrayLike, b: ArrayLike) -> float:
    """Mean squared error over all pixels and channels of two ``(H, W, 3) uint8`` images, as float (images with
    alpha: see :func:`over_white`)."""
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


def over_white(image: ArrayLike) -> np.ndarray:
    """``(H, W, 3) uint8``: an image with alpha composited over white (how :mod:`cbir.imageio` reads it), an image
    without alpha as it is; errors of images with alpha are measured on this."""
    image = np.asarray(image)
    if image.shape[-1] == 3:
        return image
    opacity = image[..., 3:].astype(np.float32) / 255
    return np.rint(image[..., :3] * opacity + 255 * (1 - opacity)).astype(np.uint8)


def quantize_sweep(image: np.ndarray, ks: Sequence[int], *, space: str = "rgblab", seed: int = 0,
                   dither: str = "none") -> list[SweepResult]:
    """Quantize one image to each of several palette sizes, with the error and the time of each.

    Parameters
    ----------
    image : (H, W, 3) uint8, sRGB, or (H, W, 4) with alpha (errors measured over white)
    ks : list of int, palette sizes
    space, seed, dither : see :func:`quantize`

    Returns
    -------
    list of SweepResult, in the order of ``ks``

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((4, 4, 3), np.uint8); image[:, 2:] = 255
    >>> [(r.k, len(r.quantization.palette), r.rgb_mse) for r in quantize_sweep(image, [1, 2])]
    [(1, 1, 16256.5), (2, 2, 0.0)]
    """
    image = check_image(image, alpha=True)
    flat = over_white(image)
    results = []
    for k in ks:
        start = time.perf_counter()
        result = quantize(image, k, space=space, seed=seed, dither=dither)
        seconds = time.perf_counter() - start
        shown = over_white(result.image)
        results.append(SweepResult(k, result, rgb_mse(flat, shown), mean_delta_e(flat, shown), seconds))
    return results
