"""Colour spaces and colour binning: pure functions, arrays in and arrays out.

CIELAB here is CIE 1976 L*a*b* under D65 from sRGB (IEC 61966-2-1), computed in float64 and returned as float32.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

SPACES = ("lab", "rgb")
# Spaces of image quantization: rgblab measures RGB and CIELAB differences together, so a palette chosen in it keeps
# both the RGB error and the perceptual error low (docs/benchmarks.md); the index's codebooks use SPACES.
QUANTIZE_SPACES = ("rgblab", "lab", "rgb")

# sRGB (linear) -> CIE XYZ, D65 white.
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = _RGB_TO_XYZ.sum(axis=1)
_EPS = 216 / 24389
_KAPPA = 24389 / 27
# Row-vector form (colours @ M) with the white point folded in, float32 so whole images stay float32.
_RGB_TO_XYZ_NORMALISED = (_RGB_TO_XYZ / _WHITE_D65[:, None]).T.astype(np.float32)
_LEVELS = np.arange(256) / 255.0
_LINEAR_TABLE = np.where(_LEVELS <= 0.04045, _LEVELS / 12.92, ((_LEVELS + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _check_colours(colours, name="rgb"):
    colours = np.asarray(colours)
    if colours.shape[-1:] != (3,):
        raise ValueError(f"{name} must have shape (..., 3), got {colours.shape}; pass colours as the last axis")
    return colours


def _linearise(rgb):
    """sRGB companding inverse, (..., 3) -> (..., 3) float32 in 0..1; a table lookup for uint8."""
    if rgb.dtype == np.uint8:
        return _LINEAR_TABLE[rgb]
    v = rgb.astype(np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def srgb_to_lab(rgb: ArrayLike) -> np.ndarray:
    """Convert sRGB colours to CIELAB.

    Parameters
    ----------
    rgb : (..., 3) uint8 in 0..255, or float in 0..255

    Returns
    -------
    lab : (..., 3) float32, L* in 0..100

    Examples
    --------
    >>> import numpy as np
    >>> np.round(srgb_to_lab([[255, 255, 255], [255, 0, 0]]).astype(float), 2).tolist()
    [[100.0, 0.0, 0.0], [53.24, 80.09, 67.2]]
    """
    return _lab_from_linear(_linearise(_check_colours(rgb)))


def _lab_from_linear(linear):
    """CIELAB of linear sRGB ``(..., 3) float32`` in 0..1."""
    xyz = linear @ _RGB_TO_XYZ_NORMALISED
    f = np.cbrt(xyz)
    small = xyz <= _EPS
    if small.any():
        f[small] = (_KAPPA * xyz[small] + 16) / 116
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_srgb(lab: ArrayLike) -> np.ndarray:
    """Convert CIELAB colours to sRGB, clipped to the gamut and rounded.

    Parameters
    ----------
    lab : (..., 3) float

    Returns
    -------
    rgb : (..., 3) uint8
    """
    lab = _check_colours(lab, "lab").astype(np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE_D65
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    rgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def to_space(rgb: ArrayLike, space: str) -> np.ndarray:
    """sRGB colours -> working space. ``rgb : (..., 3)``; returns ``(..., 3) float32``, or ``(..., 6)`` for
    ``rgblab`` (sRGB 0..255 and CIELAB side by side: squared distances add up the two errors)."""
    if space == "lab":
        return srgb_to_lab(rgb)
    if space == "rgb":
        return _check_colours(rgb).astype(np.float32)
    if space == "rgblab":
        rgb = _check_colours(rgb)
        return np.concatenate([rgb.astype(np.float32), srgb_to_lab(rgb)], axis=-1)
    raise ValueError(f"unknown colour space {space!r}; choose one of {', '.join(QUANTIZE_SPACES)}")


def from_space(colours: ArrayLike, space: str) -> np.ndarray:
    """Working-space colours -> sRGB ``(..., 3) uint8``. An ``rgblab`` centre is a mean of colours: its RGB half
    is their mean colour (its CIELAB half, a mean of CIELAB values, is not a colour's CIELAB exactly)."""
    if space == "lab":
        return lab_to_srgb(colours)
    if space == "rgb":
        return np.clip(np.rint(_check_colours(colours)), 0, 255).astype(np.uint8)
    if space == "rgblab":
        colours = np.asarray(colours)
        if colours.shape[-1:] != (6,):
            raise ValueError(f"rgblab colours must have shape (..., 6), got {colours.shape}")
        return np.clip(np.rint(colours[..., :3]), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown colour space {space!r}; choose one of {', '.join(QUANTIZE_SPACES)}")


def bin_index(rgb: np.ndarray, bits: int) -> np.ndarray:
    """Index of each pixel's colour bin, keeping the top ``bits`` bits of each channel.

    Parameters
    ----------
    rgb : (..., 3) uint8
    bits : int, 1..8

    Returns
    -------
    index : (...) int32 in 0 .. 2**(3*bits) - 1
    """
    rgb = _check_colours(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8, got {rgb.dtype}; decode images with cbir.imageio.read_image")
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    shift = 8 - bits
    r = (rgb[..., 0] >> shift).astype(np.int32)
    g = (rgb[..., 1] >> shift).astype(np.int32)
    b = (rgb[..., 2] >> shift).astype(np.int32)
    return (r << (2 * bits)) | (g << bits) | b


def bin_centres(bits: int) -> np.ndarray:
    """sRGB centre of every colour bin: ``(2**(3*bits), 3) float32``, in the order of :func:`bin_index`."""
    return _grid(_bin_levels(bits))


def bin_centres_in(bits: int, space: str) -> np.ndarray:
    """``to_space(bin_centres(bits), space)``, the same values: in CIELAB, the sRGB companding is computed once per
    level of a channel instead of once per bin (262,144 bins at 6 bits: most of the conversion's time)."""
    if space != "lab":
        return to_space(bin_centres(bits), space)
    return _lab_from_linear(_grid(_linearise(_bin_levels(bits))))


def _bin_levels(bits):
    """sRGB centre of each bin of one channel: ``(2**bits,) float32``."""
    return (np.arange(2**bits, dtype=np.float32) + 0.5) * 2 ** (8 - bits)


def _grid(levels):
    """Every (r, g, b) of ``levels``, r slowest: ``(len(levels)**3, 3)``."""
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    return np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)


def distinct_colours(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct colours of an image, how often each occurs, and which one each pixel is.

    A lossless summary of the pixel colours (k-means over it weighted by the counts is k-means over every pixel),
    computed without sorting: a count over 6-bit bins, then over the 64 colours within each occupied bin.

    Parameters
    ----------
    rgb : (H, W, 3) or (N, 3) uint8

    Returns
    -------
    colours : (U, 3) uint8, grouped by 6-bit colour bin
    counts : (U,) int64, pixels per colour
    inverse : (N,) int32, index into ``colours`` of each pixel, ``colours[inverse]`` is the image
    """
    flat = np.asarray(rgb).reshape(-1, 3)
    coarse = bin_index(flat, 6)
    occupied = np.flatnonzero(np.bincount(coarse, minlength=1 << 18))
    position = np.zeros(1 << 18, np.int32)
    position[occupied] = np.arange(len(occupied), dtype=np.int32)
    low = flat & 3
    fine = (position[coarse] << 6) | (low[:, 0].astype(np.int32) << 4) | (low[:, 1].astype(np.int32) << 2) | low[:, 2]
    fine_counts = np.bincount(fine, minlength=len(occupied) << 6)
    present = np.flatnonzero(fine_counts)
    index = np.zeros(len(fine_counts), np.int32)
    index[present] = np.arange(len(present), dtype=np.int32)
    bins, sub = occupied[present >> 6], present & 63
    colours = np.stack([((bins >> 12) << 2) | (sub >> 4), (((bins >> 6) & 63) << 2) | ((sub >> 2) & 3),
                        ((bins & 63) << 2) | (sub & 3)], axis=1).astype(np.uint8)
    return colours, fine_counts[present], index[fine]


def group_colours(colours: ArrayLike, counts: ArrayLike, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge weighted colours into colour bins: mean colour and total count of each occupied bin.

    The mean colour of a bin (not its centre) makes weighted k-means over the bins minimise the same squared
    error as k-means over the colours, up to the spread within each bin.

    Parameters
    ----------
    colours : (U, 3) uint8, sRGB
    counts : (U,) int or float, weight of each colour
    bits : int, bits per channel of the bins

    Returns
    -------
    means : (M, 3) float32
    counts : (M,) float64
    """
    idx = bin_index(np.asarray(colours, dtype=np.uint8), bits)
    weights = np.asarray(counts, dtype=np.float64)
    n_bins = 1 << (3 * bits)
    mass = np.bincount(idx, weights=weights, minlength=n_bins)
    occupied = np.flatnonzero(mass)
    sums = np.stack([np.bincount(idx, weights=weights * colours[:, c], minlength=n_bins)[occupied]
                     for c in range(3)], axis=1)
    return (sums / mass[occupied, None]).astype(np.float32), mass[occupied]


def binned_colours(rgb: np.ndarray, bits: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour ``(M, 3) float32`` and pixel count ``(M,) float64`` of each occupied colour bin of an image."""
    colours, counts, _ = distinct_colours(rgb)
    return group_colours(colours, counts, bits)
