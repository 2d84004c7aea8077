"""Query by colour (QBIC's colour-percentage query): colours and their shares, and how much of them a picture has.

Pure functions, no I/O. A query is written as ``COLOUR[:PERCENT]`` items, e.g. ``#1e90ff:40`` and ``white:20``:

- COLOUR is a CSS colour name (``CSS_COLOURS``), a hex colour (``#1e90ff`` or ``#19f``), ``rgb(30,144,255)`` or
  CIELAB ``lab(50,20,-30)`` (L* 0..100; a colour outside the sRGB gamut is clipped to it).
- PERCENT is the share of the picture, 0 < PERCENT <= 100 (``40`` or ``40%``). Colours given without a share split
  evenly what the others leave of 100.
- Shares adding up to more than 100 are refused. When they add up to less, the rest is any colour at all, the
  requested colours included: it neither helps nor hurts a picture.

The score: ``#1e90ff:40`` asks for at least 40% of the picture in colours within CIE76 ΔE 25 (``SIMILAR``) of
#1e90ff. A picture's *found* share of each requested colour is its share of the codebook colours that count for it
(:func:`near_colours`); what it lacks, ``missing = sum over colours of max(0, wanted - found)``, ranks the pictures
(0: it has every requested colour in at least its share). Ties go to the picture with more of the requested colours
in all. So a picture with 60% sky blue satisfies ``#1e90ff:40`` fully, and a busy picture with a little of everything
does not: the rest of the picture has no say (an earlier design spread the rest over the collection's average
colours and compared whole histograms, which favoured busy pictures; docs/colour-queries.md has the measurements).

Painted layouts (QBIC's sketch query, :func:`layout_histogram`) are different: a colour target per region is
turned into a histogram (:func:`target_histogram`), each colour's share on the codebook colour its pixels are
counted as and a region's rest spread over the collection's colours, and compared by the quadratic-form distance
like a query image.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ColourError, Remedy
from .colour import bin_index, lab_to_srgb, srgb_to_lab
from .histogram import LUT_BITS, region_map

# The 16 CSS basic colours, both spellings of grey, and a few common extended-CSS names.
CSS_COLOURS = {
    "black": "#000000", "silver": "#c0c0c0", "gray": "#808080", "grey": "#808080", "white": "#ffffff",
    "maroon": "#800000", "red": "#ff0000", "purple": "#800080", "fuchsia": "#ff00ff", "magenta": "#ff00ff",
    "green": "#008000", "lime": "#00ff00", "olive": "#808000", "yellow": "#ffff00", "navy": "#000080",
    "blue": "#0000ff", "teal": "#008080", "aqua": "#00ffff", "cyan": "#00ffff", "orange": "#ffa500",
    "brown": "#a52a2a", "pink": "#ffc0cb", "gold": "#ffd700", "beige": "#f5f5dc", "tan": "#d2b48c",
    "skyblue": "#87ceeb", "dodgerblue": "#1e90ff", "forestgreen": "#228b22", "darkgreen": "#006400",
    "lightgray": "#d3d3d3", "lightgrey": "#d3d3d3", "darkgray": "#a9a9a9", "darkgrey": "#a9a9a9",
    "violet": "#ee82ee", "indigo": "#4b0082", "khaki": "#f0e68c", "salmon": "#fa8072", "coral": "#ff7f50",
    "crimson": "#dc143c", "turquoise": "#40e0d0", "sienna": "#a0522d", "chocolate": "#d2691e",
}

_NUMBER = r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*"
_FUNCTION = re.compile(rf"^(lab|rgb)\({_NUMBER},{_NUMBER},{_NUMBER}\)$")
_HEX = re.compile(r"^#([0-9a-f]{3}|[0-9a-f]{6})$")
_HOW = "write a colour as a name (red), hex (#1e90ff), rgb(30,144,255) or lab(50,20,-30)"


@dataclass(frozen=True)
class TargetColour:
    """One colour of a target.

    spec : str, as written by the user
    rgb : (3,) uint8 sRGB
    lab : (3,) float32 CIELAB (of ``rgb``, after clipping to the sRGB gamut)
    share : float, 0 < share <= 1, fraction of the picture
    """

    spec: str
    rgb: np.ndarray
    lab: np.ndarray
    share: float

    @property
    def hex(self) -> str:
        return "#%02x%02x%02x" % tuple(int(v) for v in self.rgb)


def parse_colour(text: str) -> np.ndarray:
    """Parse one colour.

    Parameters
    ----------
    text : str, a CSS colour name, ``#rgb``/``#rrggbb``, ``rgb(r,g,b)`` (0..255) or ``lab(L,a,b)``

    Returns
    -------
    rgb : (3,) uint8, sRGB (CIELAB input clipped to the sRGB gamut)

    Raises
    ------
    ColourError
        the text is not a colour, with the forms that are accepted

    Examples
    --------
    >>> parse_colour("dodgerblue").tolist(), parse_colour("#19f").tolist(), parse_colour("rgb(1, 2, 3)").tolist()
    ([30, 144, 255], [17, 153, 255], [1, 2, 3])
    >>> parse_colour("lab(50, 0, 0)").tolist()
    [119, 119, 119]
    """
    value = text.strip().lower().replace(" ", "")
    value = CSS_COLOURS.get(value, value)
    hex_match = _HEX.match(value)
    if hex_match:
        digits = hex_match.group(1)
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        return np.array([int(digits[i : i + 2], 16) for i in (0, 2, 4)], np.uint8)
    function = _FUNCTION.match(value)
    if function:
        kind, *numbers = function.groups()
        a, b, c = (float(n) for n in numbers)
        if kind == "rgb":
            if not all(0 <= v <= 255 for v in (a, b, c)):
                raise ColourError(f"{text!r}: rgb() values must be in 0..255")
            return np.rint([a, b, c]).astype(np.uint8)
        if not 0 <= a <= 100:
            raise ColourError(f"{text!r}: the L* of lab() must be in 0..100")
        return lab_to_srgb(np.array([a, b, c]))
    raise ColourError(f"{text!r} is not a colour; {_HOW}")


def parse_target(specs: Sequence[str]) -> list[TargetColour]:
    """Parse ``COLOUR[:PERCENT]`` items into target colours whose shares follow the module's rules.

    Parameters
    ----------
    specs : list of str, e.g. ``["#1e90ff:40", "white:20", "lab(50,20,-30)"]``

    Returns
    -------
    colours : list of TargetColour, shares as fractions; their sum is at most 1, the rest is "any colour"

    Raises
    ------
    ColourError
        no colours, an unreadable colour or share, or shares adding up to more than 100

    Examples
    --------
    >>> [(c.hex, c.share) for c in parse_target(["#1e90ff:40", "white:20"])]
    [('#1e90ff', 0.4), ('#ffffff', 0.2)]
    >>> [(c.hex, c.share) for c in parse_target(["#1e90ff:40", "white"])]  # white takes what is left
    [('#1e90ff', 0.4), ('#ffffff', 0.6)]
    """
    if not specs:
        raise ColourError(f"give at least one colour; {_HOW}", remedy=Remedy.GIVE_COLOUR)
    parsed = []
    for spec in specs:
        colour, share = spec, None
        head, sep, tail = spec.rpartition(":")
        if sep:
            colour, number = head, tail.strip().removesuffix("%").strip()
            try:
                share = float(number)
            except ValueError:
                raise ColourError(f"{spec!r}: {tail!r} is not a percentage; write COLOUR:PERCENT, "
                                  "e.g. white:20") from None
            if not 0 < share <= 100:
                raise ColourError(f"{spec!r}: the percentage must be more than 0 and at most 100")
        parsed.append((spec, parse_colour(colour), share))
    given = sum(share for _, _, share in parsed if share is not None)
    if given > 100 + 1e-9:
        raise ColourError(f"the shares add up to {given:g}%; make them add up to at most 100 "
                          "(what is left counts as any colour)")
    unspecified = sum(share is None for _, _, share in parsed)
    if unspecified and given >= 100 - 1e-9:
        raise ColourError(f"the shares given already add up to {given:g}%, leaving nothing for the colours "
                          "without one; give every colour a percentage")
    fill = (100 - given) / unspecified if unspecified else 0.0
    return [TargetColour(spec, rgb, srgb_to_lab(rgb), (fill if share is None else share) / 100)
            for spec, rgb, share in parsed]


def rest_share(colours: Sequence[TargetColour]) -> float:
    """Share of the picture left as "any colour": ``1 - sum of the target shares``, never below 0."""
    return max(0.0, 1.0 - sum(c.share for c in colours))


def describe(colours: Sequence[TargetColour]) -> str:
    """A target as text, e.g. ``"#1e90ff 40%, white 20%, any colour 40%"``: str."""
    parts = [f"{c.spec.rpartition(':')[0] or c.spec} {100 * c.share:g}%" for c in colours]
    rest = rest_share(colours)
    return ", ".join(parts + ([f"any colour {100 * rest:g}%"] if rest > 1e-9 else []))


def target_histogram(rgb: ArrayLike, shares: ArrayLike, lut: np.ndarray, background: ArrayLike, n_blocks: int = 1,
                     bits: int = LUT_BITS) -> np.ndarray:
    """The histogram of a colour target over a codebook.

    Parameters
    ----------
    rgb : (T, 3) uint8, target colours in sRGB
    shares : (T,) float, their fractions of the picture, each > 0, summing to at most 1
    lut : (2**(3*bits),) int, the index's lookup table (colour bin -> codebook colour)
    background : (K,) float, non-negative, "any colour" distribution (e.g. the codebook's collection shares);
        normalised here, and given the share ``1 - sum(shares)``
    n_blocks : int, blocks of the index's layout; every block gets the same histogram
    bits : int, bits per channel of the lookup table

    Returns
    -------
    hist : (n_blocks * K,) float32, each block summing to 1
    """
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    shares = np.asarray(shares, dtype=np.float64).ravel()
    background = np.asarray(background, dtype=np.float64).ravel()
    if shares.shape != (len(rgb),) or (shares <= 0).any() or shares.sum() > 1 + 1e-9:
        raise ValueError("shares must be (T,) positive fractions, one per colour, adding up to at most 1")
    if (background < 0).any() or background.sum() <= 0:
        raise ValueError("background must be (K,) non-negative with a positive sum")
    k = len(background)
    block = np.bincount(lut[bin_index(rgb, bits)], weights=shares, minlength=k)[:k]
    block += max(0.0, 1.0 - shares.sum()) * background / background.sum()
    block /= block.sum()
    return np.tile(block, n_blocks).astype(np.float32)


def layout_histogram(cells: Sequence[tuple[ArrayLike, ArrayLike] | None], lut: np.ndarray, background: ArrayLike,
                     layout: str, bits: int = LUT_BITS) -> np.ndarray:
    """The histogram of a painted layout (QBIC's sketch query): a colour target for each region of a layout.

    Parameters
    ----------
    cells : one item per region of ``layout`` (row by row for the grids): None (any colour there) or
        ``(rgb (T, 3) uint8, shares (T,))`` as :func:`target_histogram` takes them
    lut : (2**(3*bits),) int, the index's lookup table (colour bin -> codebook colour)
    background : (K,) float, non-negative, the "any colour" distribution (normalised here)
    layout : str, the index's layout; a "global+" layout's whole-picture block is the regions' blocks averaged by
        their areas: what a picture painted that way holds

    Returns
    -------
    hist : (n_blocks * K,) float32, each block summing to 1

    Examples
    --------
    >>> from cbir.core.histogram import histogram, lookup_table
    >>> codebook = srgb_to_lab(np.array([[255, 0, 0], [0, 0, 255], [255, 255, 255]], np.uint8))
    >>> lut = lookup_table(codebook)
    >>> red, white, blue = ((np.array([c]), [1.0]) for c in ([255, 0, 0], [255, 255, 255], [0, 0, 255]))
    >>> painted = layout_histogram([red, white, blue, blue], lut, [1, 1, 1], "global+2x2")
    >>> picture = np.zeros((40, 40, 3), np.uint8)  # a picture painted so: red, white / blue, blue
    >>> picture[:20, :20], picture[:20, 20:], picture[20:] = (255, 0, 0), (255, 255, 255), (0, 0, 255)
    >>> painted[:3].tolist(), bool(np.allclose(painted, histogram(picture, lut, 3, "global+2x2")))
    ([0.25, 0.5, 0.25], True)
    >>> layout_histogram([red, None, None, None], lut, [1, 1, 1], "2x2")[3:6].tolist()  # any colour: the background
    [0.3333333432674408, 0.3333333432674408, 0.3333333432674408]
    """
    regions, n_regions = region_map(240, 240, layout)
    if len(cells) != n_regions:
        raise ValueError(f"layout {layout!r} has {n_regions} regions, got {len(cells)} cells")
    background = np.asarray(background, np.float64).ravel()
    blocks = np.stack([target_histogram(*cell, lut, background, 1, bits) if cell is not None
                       else background / background.sum() for cell in cells])
    if layout.startswith("global+"):
        area = np.bincount(regions.ravel(), minlength=n_regions) / regions.size
        blocks = np.vstack([area @ blocks, blocks])
    return blocks.reshape(-1).astype(np.float32)


SIMILAR = 25.0  # CIE76 ΔE within which a colour counts as the requested one (clearly the same colour family)
ROWS_AT_A_TIME = 1 << 16  # rows of shares scored together (a few MB in float64)


def near_colours(codebook_lab: ArrayLike, targets_lab: ArrayLike, radius: float = SIMILAR) -> np.ndarray:
    """Which codebook colours count as which requested colour.

    A codebook colour counts for the requested colour nearest to it when it lies within ``radius`` of it (CIE76),
    so no pixel is counted twice. A requested colour with no codebook colour that close is matched to its nearest
    codebook colour alone: the histograms cannot tell it from that one.

    Parameters
    ----------
    codebook_lab : (K, 3) float, codebook colours in CIELAB
    targets_lab : (T, 3) float, requested colours in CIELAB
    radius : float, CIE76 ΔE

    Returns
    -------
    near : (K, T) float64 of 0 and 1; each column has at least one 1, each row at most one (more only for the
        nearest codebook colour of a far requested colour)

    Examples
    --------
    >>> near_colours([[50, 0, 0], [52, 3, 0], [60, 40, 30]], [[51, 0, 0], [60, 80, 60]]).tolist()
    [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    """
    codebook_lab = np.asarray(codebook_lab, np.float64).reshape(-1, 3)
    targets_lab = np.asarray(targets_lab, np.float64).reshape(-1, 3)
    if len(codebook_lab) == 0 or len(targets_lab) == 0:
        raise ValueError("give at least one codebook colour and one target colour")
    d = np.sqrt(((codebook_lab[:, None, :] - targets_lab[None]) ** 2).sum(-1))  # (K, T)
    near = (d <= radius) & (d.argmin(1)[:, None] == np.arange(len(targets_lab))[None])
    for t in np.flatnonzero(~near.any(0)):
        near[d[:, t].argmin(), t] = True
    return near.astype(np.float64)


def missing_shares(shares: ArrayLike, near: ArrayLike, wanted: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """How much of a colour query each picture lacks: the score colour queries are ranked by (0 = none missing).

    Parameters
    ----------
    shares : (N, K) float, whole-picture codebook shares
    near : (K, T) float, from :func:`near_colours`
    wanted : (T,) float, the requested shares

    Returns
    -------
    missing : (N,) float64, sum over t of max(0, wanted_t - found_t), in 0 .. sum(wanted)
    found : (N, T) float64, each picture's estimated share within the radius of each requested colour
    """
    shares, near = np.asarray(shares), np.asarray(near, np.float64)
    found = np.empty((len(shares), near.shape[1]), np.float64)
    # A block of rows at a time in float64: a float64 copy of all the shares would be 10 GB at ten million pictures.
    for start in range(0, len(shares), ROWS_AT_A_TIME):
        found[start : start + ROWS_AT_A_TIME] = shares[start : start + ROWS_AT_A_TIME].astype(np.float64) @ near
    return np.maximum(np.asarray(wanted, np.float64) - found, 0).sum(1), found


def rank_colour_matches(missing: np.ndarray, found: np.ndarray, n: int) -> np.ndarray:
    """Rows best first: least missing, then most found in all (more of the requested colours), then row order.

    Parameters
    ----------
    missing : (N,) float, found : (N, T) float, from :func:`missing_shares`
    n : int, how many; 0 for all

    Returns
    -------
    rows : (min(n, N),) int64, or (N,) when ``n`` is 0
    """
    missing = np.asarray(missing)
    rows = np.arange(len(missing))
    if n and n < len(missing):  # only rows that can make the top n (every tie with the n-th included)
        rows = np.flatnonzero(missing <= np.partition(missing, n - 1)[n - 1])
    order = np.lexsort((rows, -np.asarray(found)[rows].sum(1), missing[rows]))
    return rows[order][: n or len(rows)]
