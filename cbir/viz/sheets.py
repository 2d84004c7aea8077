"""Pictures made of arrays: comparison sheets, palette swatches and contact sheets (no file I/O here).

Everything takes and returns ``(H, W, 3) uint8`` sRGB arrays. Captions use OpenCV's Hershey font, which draws
ASCII only: other characters are shown as ``?``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUND = 255
TEXT = (20, 20, 20)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _ascii(text):
    return text.encode("ascii", "replace").decode("ascii")


def fit(image, width, height):
    """Scale ``image`` to fit inside ``width`` x ``height`` keeping its aspect ratio (area filter when shrinking)."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def captioned(image, lines, width, height, font_scale=0.45):
    """A tile of ``width`` x ``height`` image pixels plus one text row per caption line below it.

    Parameters
    ----------
    image : (H, W, 3) uint8
    lines : list of str
    width, height : int, the box the image is fitted into

    Returns
    -------
    tile : (height + rows, width, 3) uint8
    """
    row = int(22 * font_scale / 0.45)
    tile = np.full((height + row * len(lines) + 4, width, 3), BACKGROUND, np.uint8)
    picture = fit(image, width, height)
    y, x = (height - picture.shape[0]) // 2, (width - picture.shape[1]) // 2
    tile[y : y + picture.shape[0], x : x + picture.shape[1]] = picture
    for i, line in enumerate(lines):
        text = _ascii(line)
        # Shorten captions that would overflow the tile.
        while len(text) > 1 and cv2.getTextSize(text, _FONT, font_scale, 1)[0][0] > width - 4:
            text = text[:-2] + "~"
        cv2.putText(tile, text, (2, height + row * (i + 1)), _FONT, font_scale, TEXT, 1, cv2.LINE_AA)
    return tile


def grid(tiles, columns, gap=6):
    """Lay equal-width tiles out in rows of ``columns``, padding shorter tiles; returns ``(H, W, 3) uint8``."""
    if not tiles:
        raise ValueError("grid needs at least one tile")
    width = max(t.shape[1] for t in tiles)
    height = max(t.shape[0] for t in tiles)
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), BACKGROUND, np.uint8)
    for i, tile in enumerate(tiles):
        y = gap + (i // columns) * (height + gap)
        x = gap + (i % columns) * (width + gap)
        sheet[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return sheet


def comparison_sheet(original, results, tile=320):
    """The original image and its posterized versions side by side, each captioned.

    Parameters
    ----------
    original : (H, W, 3) uint8
    results : list of (caption lines, (H, W, 3) uint8 image)
    tile : int, longest side of each picture in the sheet

    Returns
    -------
    sheet : (H', W', 3) uint8
    """
    h, w = original.shape[:2]
    width, height = (tile, max(1, round(tile * h / w))) if w >= h else (max(1, round(tile * w / h)), tile)
    tiles = [captioned(original, ["original"], width, height)]
    tiles += [captioned(image, lines, width, height) for lines, image in results]
    return grid(tiles, columns=min(len(tiles), 3))


def palette_swatch(colours, shares, width=600, height=48):
    """A bar of palette colours, each as wide as its share.

    Parameters
    ----------
    colours : (K, 3) uint8 sRGB
    shares : (K,) float, non-negative
    width, height : int

    Returns
    -------
    swatch : (height, width, 3) uint8
    """
    colours = np.asarray(colours, dtype=np.uint8)
    shares = np.asarray(shares, dtype=np.float64)
    if colours.ndim != 2 or colours.shape[1] != 3 or shares.shape != (len(colours),) or shares.sum() <= 0:
        raise ValueError("colours must be (K, 3) uint8 and shares (K,) with a positive sum")
    edges = np.rint(np.concatenate([[0], np.cumsum(shares) / shares.sum()]) * width).astype(int)
    swatch = np.full((height, width, 3), BACKGROUND, np.uint8)
    for colour, left, right in zip(colours, edges[:-1], edges[1:]):
        swatch[:, left:right] = colour
    return swatch


def result_tile(image, lines, colours, shares, width=160, height=120, bar=10):
    """A captioned tile with a colour make-up bar (palette colours sized by share) under the picture.

    Parameters
    ----------
    image : (H, W, 3) uint8
    lines : list of str, caption lines
    colours : (K, 3) uint8 sRGB, shares : (K,) float; no bar when the shares sum to 0
    width, height : int, the box the image is fitted into; bar : int, height of the bar in pixels

    Returns
    -------
    tile : (H', width, 3) uint8
    """
    picture = captioned(image, [], width, height)
    parts = [picture[:height]]
    if np.asarray(shares, dtype=np.float64).sum() > 0:
        parts += [np.full((3, width, 3), BACKGROUND, np.uint8), palette_swatch(colours, shares, width, bar)]
    parts.append(captioned(np.full((1, 1, 3), BACKGROUND, np.uint8), lines, width, 1)[1:])
    return np.vstack(parts)


def contact_sheet(rows, width=160, height=120, columns=6, gap=6):
    """Rows of result tiles (one row group per query), stacked and padded to a common width.

    Parameters
    ----------
    rows : list of lists of (image, caption lines, colours, shares), see :func:`result_tile`
    width, height : int, picture box of each tile; columns : int, tiles per line

    Returns
    -------
    sheet : (H, W, 3) uint8
    """
    if not rows or not all(rows):
        raise ValueError("contact_sheet needs at least one row, each with at least one tile")
    sheets = [grid([result_tile(*tile, width=width, height=height) for tile in row],
                   columns=min(columns, len(row)), gap=gap) for row in rows]
    full = max(s.shape[1] for s in sheets)
    rule = np.full((2, full, 3), 200, np.uint8)
    padded = []
    for i, sheet in enumerate(sheets):
        if i:
            padded.append(rule)
        padded.append(np.pad(sheet, ((0, 0), (0, full - sheet.shape[1]), (0, 0)), constant_values=BACKGROUND))
    return np.vstack(padded)


ANY_COLOUR = (221, 221, 221)  # how the "any colour" rest of a colour query is drawn


def colour_query_swatch(colours, shares, rest, width=240, height=160):
    """A swatch standing for a colour query: its colours sized by share, the "any colour" rest in light grey,
    framed so that white shows on white.

    Parameters
    ----------
    colours : (T, 3) uint8 sRGB; shares : (T,) float, each colour's share of the picture
    rest : float, the share left as "any colour" (0 for none)

    Returns
    -------
    swatch : (height, width, 3) uint8
    """
    rgb = list(np.asarray(colours, np.uint8)) + ([ANY_COLOUR] if rest > 0 else [])
    weights = list(shares) + ([rest] if rest > 0 else [])
    swatch = palette_swatch(np.array(rgb, np.uint8), weights, width - 2, height - 2)
    return np.pad(swatch, ((1, 1), (1, 1), (0, 0)), constant_values=128)


@dataclass(frozen=True)
class Shown:
    """One picture ready to draw: thumbnail ``(h, w, 3) uint8``, colour make-up ``(rgb (M, 3) uint8, shares
    (M,))``, rank, distance and likeness (a share, 0..1, and what it is a share of; None for a query), and a note
    (e.g. why the file could not be shown)."""

    label: str
    title: str
    image: np.ndarray
    makeup: tuple
    rank: int | None = None
    distance: float | None = None
    note: str | None = None
    likeness: float | None = None
    likeness_label: str = "colours in common"


def by_share(palette, shares):
    """Palette ``(M, 3)`` and shares ``(M,)`` reordered largest share first (for make-up bars)."""
    order = np.argsort(-np.asarray(shares), kind="stable")
    return np.asarray(palette)[order], np.asarray(shares)[order]


def montage(groups, width=160, height=120):
    """The contact sheet of queries and their results: ``(H, W, 3) uint8``, one block of tiles per query.

    Parameters
    ----------
    groups : list of (Shown query, list of Shown results)
    """
    rows = []
    for query, results in groups:
        tiles = [(query.image, ["query:", query.label], *by_share(*query.makeup))]
        tiles += [(r.image, [f"#{r.rank}  d={r.distance:.4f}" + ("" if r.likeness is None else
                                                              f"  {100 * r.likeness:.0f}%"), r.label],
                   *by_share(*r.makeup)) for r in results]
        rows.append(tiles)
    return contact_sheet(rows, width, height)
