"""k-means colour quantization: the core that codebooks, histograms and ``cbir quantize`` all use.

Method: reduce the image to its occupied colour bins (mean colour and pixel count of each), run weighted k-means
(k-means++ restarts on 5-bit bins, then Lloyd steps on 6-bit bins) in the working space, then give every pixel
its exact nearest palette colour.
"""

from dataclasses import dataclass

import numpy as np

from .colour import bin_sums, coarsen_bins, from_space, occupied_bins, srgb_to_lab, to_space
from .kmeans import nearest_centre, weighted_kmeans

DEFAULT_BITS = 6  # fine bins: at most 262144 points, about 20k occupied in a photo
N_INIT = 3
COARSE_LEVELS = 2
REFINE_ITER = 5


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


def check_image(image):
    """Validate a decoded image: ``(H, W, 3) uint8`` sRGB with at least one pixel."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(
            f"image must be a non-empty (H, W, 3) uint8 sRGB array, got {image.shape} {image.dtype}; "
            "cbir.decode.read_image converts grayscale, 16-bit and alpha images to that form"
        )
    return image


def quantize(image, k, *, space="lab", seed=0, bits=DEFAULT_BITS, init=None):
    """Posterize an image to at most ``k`` colours by weighted k-means over its binned colours.

    Parameters
    ----------
    image : (H, W, 3) uint8, sRGB
    k : int >= 1; an image with fewer distinct colour bins gets fewer colours
    space : {"lab", "rgb"}, where distances are measured
    seed : int, k-means++ seed; same inputs and seed give the same result
    bits : int, bits per channel of the fine colour bins
    init : (k, 3) float, starting palette in the working space instead of k-means++ (for experiments and tests)

    Returns
    -------
    Quantization
    """
    image = check_image(image)
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    flat = image.reshape(-1, 3)
    # Coarse to fine over a pyramid of colour bins: k-means++ restarts where they are cheap (bits - 2 bits per
    # channel, a few hundred points), then Lloyd steps at each finer level recover the detail coarse bins blur.
    levels = [occupied_bins(*bin_sums(flat, bits))]
    for level_bits in range(bits, bits - COARSE_LEVELS, -1):
        levels.append(coarsen_bins(*levels[-1], level_bits))
    if init is None:
        colours, counts, _ = levels[-1]
        result = weighted_kmeans(to_space(colours, space), counts, int(k), seed=seed, n_init=N_INIT)
        for colours, counts, _ in reversed(levels[:-1]):
            result = weighted_kmeans(to_space(colours, space), counts, int(k), init=result.centres,
                                     max_iter=REFINE_ITER)
    else:  # Lloyd to convergence on the fine bins from the given palette
        result = weighted_kmeans(to_space(levels[0][0], space), levels[0][1], int(k), init=init)
    palette = result.centres
    labels = nearest_centre(to_space(flat, space), palette)

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
        image=palette_rgb[labels].reshape(image.shape),
        space=space,
    )


def rgb_mse(a, b):
    """Mean squared error over all pixels and channels of two ``(H, W, 3) uint8`` images, as float."""
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def mean_delta_e(a, b):
    """Mean CIE76 colour difference (Euclidean distance in CIELAB) of two ``(H, W, 3) uint8`` sRGB images."""
    return float(np.linalg.norm(srgb_to_lab(a).astype(np.float64) - srgb_to_lab(b), axis=-1).mean())
