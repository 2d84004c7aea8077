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
_WEIGHTS = tuple(np.float32(w / 16) for w in (7, 3, 5, 1))  # right, lower-left, lower, lower-right


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
    same = np.zeros(labels.shape, np.float32)
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


def _skew(height, width):
    """Index of the pixel at each (wavefront t, row y) cell, ``height * width`` (a zero pixel) where none is."""
    t = np.arange(width + 2 * (height - 1))[:, None]
    y = np.arange(height)[None, :]
    x = t - 2 * y
    inside = (x >= 0) & (x < width)
    return np.where(inside, y * width + x, height * width), inside


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
    index, inside = _skew(height, width)
    flat = np.zeros((height * width + 1, channels), np.float32)
    flat[:-1] = pixels.reshape(-1, channels)
    source = flat[index]  # (T, H, C): wavefront t is source[t], contiguous
    gains = np.zeros((height * width + 1, strength.shape[2]), np.float32)
    gains[:-1] = strength.reshape(-1, strength.shape[2])
    gain = gains[index]  # (T, H, 1 or C)
    # Nearest colour: argmin over palette of -2 v.(c M M^T) + |c M|^2, one small matrix product per wavefront.
    mapped = colours @ metric
    weights = (metric @ (-2 * mapped.T)).astype(np.float32)
    bias = (mapped * mapped).sum(1).astype(np.float32)
    labels = np.zeros(index.shape, np.int32)
    errors = np.zeros((4, height + 1, channels), np.float32)  # ring of the next 4 wavefronts' incoming error
    value = np.empty((height, channels), np.float32)
    error = np.empty((height, channels), np.float32)
    part = np.empty((height, channels), np.float32)
    right, lower_left, lower, lower_right = _WEIGHTS
    for t in range(len(index)):
        y0 = max(0, (t - width + 2) // 2)
        y1 = min(height - 1, t // 2) + 1
        n = y1 - y0
        incoming = errors[t & 3]
        v, e, p = value[:n], error[:n], part[:n]
        np.multiply(incoming[y0:y1], gain[t, y0:y1], out=v)
        v += source[t, y0:y1]
        np.maximum(v, 0, out=v)
        np.minimum(v, 255, out=v)
        if channels == 4:
            np.minimum(v[:, :3], v[:, 3:], out=v[:, :3])  # premultiplied colour cannot exceed alpha
        distance = v @ weights
        distance += bias
        chosen = distance.argmin(1)
        labels[t, y0:y1] = chosen
        np.subtract(v, np.take(colours, chosen, axis=0), out=e)
        if error_limit is not None:
            np.maximum(e, -error_limit, out=e)
            np.minimum(e, error_limit, out=e)
        incoming.fill(0)
        ahead = errors[(t + 1) & 3]
        np.multiply(e, right, out=p)
        ahead[y0:y1] += p
        np.multiply(e, lower_left, out=p)
        ahead[y0 + 1:y1 + 1] += p
        np.multiply(e, lower, out=p)
        errors[(t + 2) & 3, y0 + 1:y1 + 1] += p
        np.multiply(e, lower_right, out=p)
        errors[(t + 3) & 3, y0 + 1:y1 + 1] += p
    result = np.empty(height * width + 1, np.int32)
    result[index[inside]] = labels[inside]
    return result[:-1].reshape(height, width)
