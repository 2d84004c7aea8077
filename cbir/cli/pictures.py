"""Rankings as pictures for ``cbir query --html/--montage``: thumbnails and colour make-ups gathered through
:class:`cbir.Index`, drawn by :mod:`cbir.viz`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DecodeError
from ..files import write_text
from ..imageio import encode_image, read_thumbnail, write_image
from ..viz.page import Picture, Section, results_page
from ..viz.sheets import Shown, montage
from .output import one_line, stderr
from .progress import ProgressBar

THUMBNAIL = 240  # longest side of a page thumbnail, pixels


@dataclass(frozen=True)
class Query:
    """A query to show: ``source`` is an image path or an ``(H, W, 3) uint8`` picture standing for it; ``examples``
    what it searches for (image paths, colour queries), as :meth:`cbir.Index.search` takes them."""

    label: str
    title: str
    source: object
    vector: np.ndarray
    examples: list = dataclasses.field(default_factory=list)


def load_thumbnail(path, size=THUMBNAIL):
    """A thumbnail of an image file, or a grey placeholder and the reason when it cannot be read: ``(image, note)``."""
    try:
        return read_thumbnail(path, size), None
    except DecodeError as error:
        return np.full((size * 3 // 4, size, 3), 200, np.uint8), f"cannot show: {error}"


def gather(index, queries, rankings, size=THUMBNAIL, progress=None):
    """Thumbnails and colour make-ups of the queries and of their ranked results: a list of (Shown query, list of
    Shown results), one per query."""
    total, done = len(queries) + sum(len(r) for r in rankings), 0
    groups = []
    for query, results in zip(queries, rankings):
        if isinstance(query.source, np.ndarray):
            image, note = query.source, None
        else:
            image, note = load_thumbnail(query.source, size)
        makeup = index.colour_makeup(np.asarray(query.vector)[None])[0]
        makeups = index.colour_makeup(index.histograms([r.image_id for r in results])) if results else []
        done += 1
        if progress:
            progress(done, total)
        shown = []
        for result, result_makeup in zip(results, makeups):
            thumbnail, result_note = load_thumbnail(result.path, size)
            shown.append(Shown(os.path.basename(result.stored_path), result.path, thumbnail, result_makeup,
                               result.rank, result.distance, result_note))
            done += 1
            if progress:
                progress(done, total)
        groups.append((Shown(query.label, query.title, image, makeup, note=note), shown))
    return groups


def page(groups, palette, title="cbir results", meta=""):
    """The results page of :func:`gather`'s groups, thumbnails as inline JPEG; ``palette (K, 3) uint8``."""
    hexes = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in palette]

    def picture(shown):
        return Picture(shown.label, shown.title, encode_image(shown.image, ".jpg"), "image/jpeg",
                       sorted(((h, float(s)) for h, s in zip(hexes, shown.makeup) if s > 0), key=lambda c: -c[1]),
                       shown.rank, shown.distance, shown.note)

    return results_page([Section(picture(q), [picture(r) for r in results]) for q, results in groups], title, meta)


def write_result_pictures(index, queries, rankings, html, montage_path, show_progress, quiet):
    """Write the results page and/or contact sheet of a query run; ``wrote PATH`` hints on stderr."""
    with ProgressBar("thumbnails", show_progress) as progress:
        groups = gather(index, queries, rankings, progress=progress)
    palette, _ = index.codebook_colours()
    if html is not None:
        settings = index.settings
        meta = (f"{len(index)} images in {index.path}; codebook of {len(palette)} colours "
                f"({settings.space}), layout {settings.layout}, kernel {settings.kernel}, power {settings.power:g}")
        write_text(html, page(groups, palette, meta=meta))
    if montage_path is not None:
        write_image(montage_path, montage(groups, palette))
    for path in (html, montage_path):
        if path is not None and not quiet:
            stderr.print(f"wrote {one_line(str(path))}", markup=False)
