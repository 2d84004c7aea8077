"""Rankings as pictures: the results page (HTML), the contact sheet (PNG) and the codebook swatch.

This module reads the ranked image files (through :mod:`cbir.decode`) to make thumbnails and writes the page;
the pictures themselves are built by the pure :mod:`cbir.render` (arrays) and :mod:`cbir.report` (HTML string).
Each image's colour make-up is its stored histogram: the global block of a "global+" layout, otherwise the
blocks averaged with equal weights.
"""

import os
from dataclasses import dataclass

import numpy as np

from .colour import from_space
from .decode import encode_image, read_image, write_file
from .errors import CbirError, DecodeError
from .features import n_blocks
from .render import contact_sheet, fit, palette_swatch
from .report import Picture, Section, results_page

THUMBNAIL = 240  # longest side of a page thumbnail, pixels
ANY_COLOUR = (221, 221, 221)  # how the "any colour" rest of a colour query is drawn


@dataclass(frozen=True)
class Query:
    """A query to show: ``source`` is an image path or an ``(H, W, 3) uint8`` picture standing for it."""

    label: str
    title: str
    source: object
    vector: np.ndarray


@dataclass(frozen=True)
class Shown:
    """One picture ready to draw: thumbnail ``(h, w, 3) uint8``, make-up ``(K,)`` shares, rank and distance."""

    label: str
    title: str
    image: np.ndarray
    makeup: np.ndarray
    rank: int = None
    distance: float = None
    note: str = None


def global_shares(vectors, n_colors, layout):
    """Whole-picture colour shares of stored histograms.

    Parameters
    ----------
    vectors : (N, B*K) float, raw shares per block
    n_colors : int, K
    layout : str, the index's layout (B = n_blocks(layout))

    Returns
    -------
    shares : (N, K) float64; the first block for "global+" layouts, else the mean of the blocks
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    blocks = n_blocks(layout)
    if vectors.ndim != 2 or vectors.shape[1] != blocks * n_colors:
        raise ValueError(f"vectors must be (N, {blocks} * {n_colors}) for layout {layout!r}, got {vectors.shape}")
    per_block = vectors.reshape(len(vectors), blocks, n_colors)
    return per_block[:, 0] if layout.startswith("global+") else per_block.mean(axis=1)


def load_thumbnail(path, size=THUMBNAIL):
    """A thumbnail of an image file, or a grey placeholder and the reason when it cannot be read.

    Returns
    -------
    image : (h, w, 3) uint8, longest side ``size`` at most
    note : str or None
    """
    try:
        image = read_image(path, min_side=size)
    except DecodeError as error:
        return np.full((size * 3 // 4, size, 3), 200, np.uint8), f"cannot show: {error}"
    h, w = image.shape[:2]
    return (fit(image, size, size) if max(h, w) > size else image), None


def colour_query_picture(colours, rest, width=THUMBNAIL, height=THUMBNAIL * 2 // 3):
    """A swatch standing for a colour query: its colours sized by share, the "any colour" rest in light grey."""
    rgb = [c.rgb for c in colours] + ([ANY_COLOUR] if rest > 0 else [])
    shares = [c.share for c in colours] + ([rest] if rest > 0 else [])
    swatch = palette_swatch(np.array(rgb, np.uint8), shares, width - 2, height - 2)
    return np.pad(swatch, ((1, 1), (1, 1), (0, 0)), constant_values=128)  # a frame, so white shows on white


def gather(index, queries, rankings, size=THUMBNAIL, progress=None):
    """Thumbnails and colour make-ups of the queries and of their ranked results.

    Parameters
    ----------
    index : cbir.Index
    queries : list of Query
    rankings : list of lists of cbir.Result, one list per query
    size : int, longest side of the thumbnails
    progress : callable(done, total) or None

    Returns
    -------
    groups : list of (Shown query, list of Shown results)
    """
    engine = index.engine
    k, layout = len(engine.codebook), engine.settings.layout
    total, done = len(queries) + sum(len(r) for r in rankings), 0
    groups = []
    for query, results in zip(queries, rankings):
        if isinstance(query.source, np.ndarray):
            image, note = query.source, None
        else:
            image, note = load_thumbnail(query.source, size)
        makeup = global_shares(np.asarray(query.vector)[None], k, layout)[0]
        done += 1
        if progress:
            progress(done, total)
        shown = []
        for result in results:
            path = index.disk_path(result.path)
            thumbnail, note_ = load_thumbnail(path, size)
            vector = engine.store.histograms_of([result.image_id], engine.backend.vectors.shape[1])
            shown.append(Shown(os.path.basename(result.path), path, thumbnail, global_shares(vector, k, layout)[0],
                               result.rank, result.distance, note_))
            done += 1
            if progress:
                progress(done, total)
        groups.append((Shown(query.label, query.title, image, makeup, note=note), shown))
    return groups


def codebook_rgb(index):
    """The index's codebook colours in sRGB: ``(K, 3) uint8``."""
    engine = index.engine
    return from_space(engine.codebook, engine.settings.space)


def page(groups, palette, title="cbir results", meta=""):
    """The results page of :func:`gather`'s groups, thumbnails as inline JPEG; ``palette (K, 3) uint8``."""
    hexes = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in palette]

    def picture(shown):
        return Picture(shown.label, shown.title, encode_image(shown.image, ".jpg"), "image/jpeg",
                       sorted(((h, float(s)) for h, s in zip(hexes, shown.makeup) if s > 0), key=lambda c: -c[1]),
                       shown.rank, shown.distance,
                       shown.note)

    return results_page([Section(picture(q), [picture(r) for r in results]) for q, results in groups], title, meta)


def by_share(palette, shares):
    """Palette ``(K, 3)`` and shares ``(K,)`` reordered largest share first (for make-up bars)."""
    order = np.argsort(-np.asarray(shares), kind="stable")
    return np.asarray(palette)[order], np.asarray(shares)[order]


def montage(groups, palette, width=160, height=120):
    """The contact sheet of :func:`gather`'s groups: ``(H, W, 3) uint8``, one block of tiles per query."""
    rows = []
    for query, results in groups:
        tiles = [(query.image, ["query:", query.label], *by_share(palette, query.makeup))]
        tiles += [(r.image, [f"#{r.rank}  d={r.distance:.4f}", r.label], *by_share(palette, r.makeup))
                  for r in results]
        rows.append(tiles)
    return contact_sheet(rows, width, height)


def codebook_swatch(store, width=800, height=64):
    """The stored codebook as a bar, each colour as wide as its share of the collection.

    store : cbir.storage.Store; returns ``(height, width, 3) uint8``
    """
    rows = store.codebook_rows()
    if not rows:
        raise CbirError(f"{store.path} has no codebook yet: index some photos first with: "
                        f"cbir index PHOTOS_DIR --db {store.path}")
    rgb = np.array([[int(row["hex"][i : i + 2], 16) for i in (1, 3, 5)] for row in rows], np.uint8)
    return palette_swatch(rgb, [row["share"] for row in rows], width, height)


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` whole or not at all; OS errors become CbirError."""
    write_file(path, text.encode("utf-8"))
