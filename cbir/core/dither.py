"""Floyd-Steinberg error diffusion onto a fixed palette, in numpy: the pixels that depend on each other are
processed in order, the ones that do not are processed together.

Floyd-Steinberg visits pixels in raster order and pushes each pixel's error to its right, lower-left, lower and
lower-right neighbours, so pixel (y, x) needs the results of (y, x-1), (y-1, x-1), (y-1, x) and (y-1, x+1): all
pixels with the same ``t = x + 2 y`` are independent of each other. The image is processed as ``W + 2 (H - 1)``
such wavefronts, each a handful of whole-array operations; the result equals plain raster-order Floyd-Steinberg
(tests/test_dither.py compares with a pixel loop). An image taller than wide is diffused along its columns (the
raster order of the transposed image), which takes fewer wavefronts.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .colour import srgb_to_lab

STRENGTH = 0.85  # share of the error passed on where dithering is full; below 1 so small errors fade out (0.94
# left the median RGB MSE at 64 colours 0.6% above pngquant's, docs/benchmarks.md)
ERROR_LIMIT = 32.0  # per channel, in 0..255 units: a pixel far from every palette colour pushes on no more than this
# Weights of the slots (t - 3, same row), (t - 3, row above), (t - 2, ...), (t - 1, ...) in the incoming error.
_PULL = np.array([0, 1, 0, 5, 7, 3], np.float32) / 16


def dither_strength(labels: ArrayLike) -> np.ndarray:
    """How much error each pixel receives: the share of its 8 neighbours that have its undithered palette colour.

    Where the undithered image is flat (a band of one colour) dithering breaks the band; where it is already busy
    (edges, texture) dithering adds noise that costs error and file size and shows nothing, so it fades out.

    Parameters
    ----------
    labels : (H, W) int, undithered palette index of every pixel

    Returns
    -------
    strength : (H, W) float32 in 0 .. STRENGTH
    """
    labels = np.asarray(labels)
    padded = np.pad(labels, 1, mode="edge")
    height, width = labels.shape
    same = np.zeros(labels.shape, np.uint8)  # counts 0..8: a quarter of the memory traffic of float32
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                same += padded[dy:dy + height, dx:dx + width] == labels
    return same * np.float32(STRENGTH / 8)


def perceptual_metric(palette_rgb: ArrayLike, shares: ArrayLike) -> np.ndarray:
    """A linear colour metric close to RGB + CIELAB distance for this palette's colours.

    ``|d @ M|^2`` approximates ``|d|^2 + |J d|^2`` for a small RGB difference ``d``, with ``J`` the Jacobian of
    CIELAB with respect to sRGB averaged over the palette (weighted by share): nearly the joint RGB + CIELAB
    distance that :func:`cbir.core.quantize.quantize` minimises, at the cost of plain RGB distances.

    Returns
    -------
    M : (3, 3) float32, lower triangular
    """
    colours = np.asarray(palette_rgb, np.float64)
    weights = np.asarray(shares, np.float64)
    step = np.eye(3)
    jacobian = np.stack([(srgb_to_lab(np.clip(colours + step[c], 0, 255)).astype(np.float64)
                          - srgb_to_lab(np.clip(colours - step[c], 0, 255))) / 2 for c in range(3)], axis=1)
    normal = np.eye(3) + np.einsum("k,kij,klj->il", weights / weights.sum(), jacobian, jacobian)
    return np.linalg.cholesky(normal).astype(np.float32)


def floyd_steinberg(image: ArrayLike, palette: ArrayLike, *, strength: ArrayLike | float = 1.0,
                    metric: ArrayLike | None = None, error_limit: float | None = None) -> np.ndarray:
    """Floyd-Steinberg dithering onto a fixed palette: every pixel gets the palette colour nearest to its colour
    plus the error pushed on by its already dithered neighbours (7/16 right, 3/16 lower left, 5/16 below,
    1/16 lower right), in raster order.

    With an alpha channel, pixels and palette are premultiplied by alpha and alpha is dithered like a colour
    channel, but only among translucent pixels: transparent pixels receive no error, opaque ones no alpha error.

    Parameters
    ----------
    image : (H, W, 3) or (H, W, 4) uint8, sRGB (with straight alpha)
    palette : (K, 3) or (K, 4) uint8, same channels as ``image``
    strength : float or (H, W) float, share of the incoming error each pixel takes (1: plain Floyd-Steinberg)
    metric : (3, 3) float, nearest colour by ``|(a - b) @ metric|``; default plain RGB distance. With alpha,
        (4, 4) for premultiplied RGBA, or (3, 3) with alpha weighing like an RGB channel
    error_limit : float, clip each channel of the error a pixel passes on to +-error_limit (None: no limit)

    Returns
    -------
    labels : (H, W) int32, palette index per pixel

    Examples
    --------
    >>> grey = np.full((2, 4, 3), 128, np.uint8)
    >>> floyd_steinberg(grey, np.array([[0, 0, 0], [255, 255, 255]], np.uint8))
    array([[1, 0, 1, 0],
           [0, 1, 0, 1]], dtype=int32)
    """
    image = np.asarray(image)
    palette = np.asarray(palette)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8 or image.size == 0:
        raise ValueError(f"image must be a non-empty (H, W, 3|4) uint8 array, got {image.shape} {image.dtype}")
    channels = image.shape[2]
    if palette.ndim != 2 or palette.shape[1] != channels or len(palette) == 0:
        raise ValueError(f"palette must be (K, {channels}) like the image's channels, got {palette.shape}")
    height, width = image.shape[:2]
    strength = np.broadcast_to(np.asarray(strength, np.float32), (height, width))
    metric = np.eye(3, dtype=np.float32) if metric is None else np.asarray(metric, np.float32)
    pixels = image.astype(np.float32)
    colours = palette.astype(np.float32)
    if channels == 4:  # premultiplied alpha: colour error of a half-transparent pixel counts half
        pixels[..., :3] *= pixels[..., 3:] / 255
        colours[:, :3] *= colours[:, 3:] / 255
        # Alpha error goes only to translucent pixels: an opaque or a transparent pixel keeps its alpha.
        alpha = image[..., 3]
        strength = np.stack([np.where(alpha == 0, np.float32(0), strength)] * 3
                            + [np.where((alpha == 0) | (alpha == 255), np.float32(0), strength)], axis=-1)
        if metric.shape == (3, 3):
            metric = np.block([[metric, np.zeros((3, 1), np.float32)], [np.zeros((1, 3), np.float32),
                                                                       np.eye(1, dtype=np.float32)]])
    else:
        strength = strength[..., None]
    if height > width:  # fewer wavefronts along the longer side
        labels = _diffuse(pixels.transpose(1, 0, 2), strength.transpose(1, 0, 2), colours, metric, error_limit)
        return np.ascontiguousarray(labels.T)
    return _diffuse(pixels, strength, colours, metric, error_limit)


def _diffuse(pixels, strength, colours, metric, error_limit):
    height, width, channels = pixels.shape
    # Channel planes: a wavefront's pixels (y, t - 2 y) sit at flat index t + y (W - 2), one strided slice of
    # each plane, so every operation below runs over one row of n values.
    source = np.ascontiguousarray(pixels.reshape(-1, channels).T)  # (C, H W)
    gain = np.ascontiguousarray(strength.reshape(-1, strength.shape[2]).T)  # (1 or C, H W)
    # Nearest colour: argmin over the palette of [v, 1] @ [-2 M M^T c; |c M|^2], one small product per wavefront.
    mapped = colours @ metric
    weights = np.concatenate([metric @ (-2 * mapped.T), (mapped * mapped).sum(1)[None]]).astype(np.float32)
    planes = np.ascontiguousarray(colours.T)  # (C, K)
    labels = np.empty(height * width, np.int32)
    # The error pixel (t, y) passes on is kept twice in a ring of wavefronts: errors[slot, 0, :, y] and, one row
    # down, errors[slot, 1, :, y + 1]; the error coming into wavefront t is then one weighted sum of the slots of
    # t - 3 .. t - 1: 7/16 from the left, 3/16 from above right, 5/16 from above, 1/16 from above left.
    ring = 64
    errors = np.zeros((ring, 2, channels, height + 1), np.float32)
    stacked = errors.reshape(2 * ring, channels * (height + 1))
    pull = _PULL
    value = np.ones((channels + 1, height), np.float32)  # [v; 1] for the product
    limit = None if error_limit is None else np.float32(error_limit)
    step = max(width - 2, 1)  # a slice step; a wavefront of an image 2 wide holds one pixel
    base = -3  # wavefront t lives in slot t - base
    for t in range(width + 2 * (height - 1)):
        y0 = max(0, (t - width + 2) // 2)
        y1 = min(height - 1, t // 2) + 1
        n = y1 - y0
        slot = t - base
        if slot == ring:  # keep the last three wavefronts, clear the rest
            errors[:3] = errors[ring - 3:]
            errors[3:] = 0
            base += ring - 3
            slot = 3
        if n <= 0:
            continue
        first = t + y0 * (width - 2)
        pixels_at = slice(first, first + (n - 1) * step + 1, step)
        incoming = (pull @ stacked[2 * slot - 6:2 * slot]).reshape(channels, height + 1)
        augmented = value[:, :n]
        v = augmented[:channels]
        np.multiply(incoming[:, y0:y1], gain[:, pixels_at], out=v)
        v += source[:, pixels_at]
        np.maximum(v, 0, out=v)
        np.minimum(v, 255, out=v)
        if channels == 4:
            np.minimum(v[:3], v[3:], out=v[:3])  # premultiplied colour cannot exceed alpha
        chosen = (augmented.T @ weights).argmin(1)
        labels[pixels_at] = chosen
        e = errors[slot, 0, :, y0:y1]
        np.subtract(v, np.take(planes, chosen, axis=1), out=e)
        if limit is not None:
            np.maximum(e, -limit, out=e)
            np.minimum(e, limit, out=e)
        errors[slot, 1, :, y0 + 1:y1 + 1] = e
    return labels.reshape(height, width)
