"""Rankings as pictures for ``cbir query --html/--montage``: thumbnails and colour make-ups gathered through
:class:`cbir.Index`, drawn by :mod:`cbir.viz`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from ..core.colour_query import describe, rest_share
from ..errors import DecodeError
from ..files import write_text
from ..imageio import encode_image, read_thumbnail, write_image
from ..viz.page import Picture, Section, results_page
from ..viz.sheets import ANY_COLOUR, Shown, colour_query_swatch, montage
from .output import one_line, stderr
from .progress import ProgressBar

THUMBNAIL = 320  # longest side of a page thumbnail, pixels
PAGE_LIMIT = 100  # results per query drawn on a page or sheet: -n 0 over 100,000 photos must not make a 1 GB page


@dataclass(frozen=True)
class Query:
    """A query to show: ``source`` is an image path or an ``(H, W, 3) uint8`` picture standing for it; ``vector`` its
    histogram; ``examples`` what it searches for (image paths, colour queries), as :meth:`cbir.Index.search` takes
    them; ``colours``, for a colour query ranked by the share of the colours missing, the colours asked for (its
    results then say how much of each they have)."""

    label: str
    title: str
    source: object
    vector: np.ndarray
    examples: list = dataclasses.field(default_factory=list)
    colours: tuple = ()

    @classmethod
    def of_colours(cls, target, vector):
        label = describe(target)
        swatch = colour_query_swatch([c.rgb for c in target], [c.share for c in target], rest_share(target))
        return cls(label, label, swatch, vector, [target], tuple(target))


def load_thumbnail(path, size=THUMBNAIL):
    """A thumbnail of an image file, or a grey placeholder and the reason when it cannot be read: ``(image, note)``."""
    try:
        return read_thumbnail(path, size), None
    except DecodeError as error:
        return np.full((size * 3 // 4, size, 3), 200, np.uint8), f"cannot show: {error}"


def _makeup(palette, shares):
    """A colour make-up as ``(rgb (M, 3) uint8, shares (M,))``, colours with no share left out."""
    shares = np.asarray(shares, np.float64)
    keep = shares > 0
    return np.asarray(palette, np.uint8)[keep], shares[keep]


def gather(index, queries, rankings, size=THUMBNAIL, progress=None):
    """Thumbnails, colour make-ups and likeness of the queries and of their ranked results: a list of (Shown
    query, list of Shown results), one per query.

    Likeness, a percentage a person can read beside the distance: for a query image, the share of colours the
    two pictures have in common (the sum over codebook colours of the smaller whole-picture share); for a colour
    query, the share of the requested colours the picture has.
    """
    palette, _ = index.codebook_colours()
    total, done = len(queries) + sum(len(r) for r in rankings), 0
    groups = []
    for query, results in zip(queries, rankings):
        if isinstance(query.source, np.ndarray):
            image, note = query.source, None
        else:
            image, note = load_thumbnail(query.source, size)
        if not query.colours:
            query_shares = index.colour_makeup(np.asarray(query.vector)[None])[0]
            makeup = _makeup(palette, query_shares)
        else:
            rest = rest_share(query.colours)
            makeup = (np.array([c.rgb for c in query.colours] + ([ANY_COLOUR] if rest > 0 else []), np.uint8),
                      np.array([c.share for c in query.colours] + ([rest] if rest > 0 else [])))
        makeups = index.colour_makeup(index.histograms([r.image_id for r in results])) if results else []
        done += 1
        if progress:
            progress(done, total)
        shown = []
        for result, result_shares in zip(results, makeups):
            if not query.colours:
                likeness = float(np.minimum(query_shares, result_shares).sum())
            else:
                wanted = np.array([c.share for c in query.colours])
                likeness = float(np.minimum(np.array(result.found), wanted).sum() / wanted.sum())
            thumbnail, result_note = load_thumbnail(result.path, size)
            shown.append(Shown(os.path.basename(result.stored_path), result.path, thumbnail,
                               _makeup(palette, result_shares), result.rank, result.distance, result_note, likeness,
                               "of the colours asked for" if query.colours else "colours in common"))
            done += 1
            if progress:
                progress(done, total)
        groups.append((Shown(query.label, query.title, image, makeup, note=note), shown))
    return groups


def page(groups, page_path, absolute_paths=False, meta=""):
    """The results page of :func:`gather`'s groups, thumbnails as inline JPEG, each linked to its file: by a path
    relative to the page's folder, or (``absolute_paths``) by its absolute path. Names shown are relative to the
    folder the results share, so a page meant to be passed on does not carry where the files live."""
    folder = os.path.dirname(os.path.abspath(page_path))
    files = [os.path.abspath(r.title) for _, results in groups for r in results]
    common = os.path.commonpath(files) if files else folder
    if files and len(set(files)) == 1:
        common = os.path.dirname(common)

    def picture(shown, is_result):
        colours, shares = shown.makeup
        hexes = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in colours]
        makeup = sorted(zip(hexes, (float(s) for s in shares)), key=lambda c: -c[1])
        if not is_result:
            return Picture(shown.label, shown.title if absolute_paths else shown.label,
                           encode_image(shown.image, ".jpg"), "image/jpeg", makeup, note=shown.note)
        path = os.path.abspath(shown.title)
        link = path if absolute_paths else os.path.relpath(path, folder)
        name = path if absolute_paths else os.path.relpath(path, common)
        return Picture(os.path.basename(path), name, encode_image(shown.image, ".jpg"), "image/jpeg", makeup,
                       shown.rank, shown.distance, shown.note, link=link, absolute_link=absolute_paths,
                       likeness=shown.likeness, likeness_label=shown.likeness_label)

    sections = [Section(picture(q, False), [picture(r, True) for r in results]) for q, results in groups]
    titles = [q.label for q, _ in groups]
    title = "cbir: " + titles[0] + (f" and {len(titles) - 1} more queries" if len(titles) > 1 else "")
    return results_page(sections, title, meta)


def write_result_pictures(index, queries, rankings, html, montage_path, show_progress, quiet, absolute_paths=False):
    """Write the results page and/or contact sheet of a query run; ``wrote PATH`` hints on stderr."""
    with ProgressBar("thumbnails", show_progress) as progress:
        groups = gather(index, queries, rankings, progress=progress)
    if html is not None:
        settings = index.settings
        where = index.path if absolute_paths else os.path.basename(index.path)
        meta = (f"{len(index)} images in {where}; codebook of {len(index.codebook_colours()[0])} colours "
                f"({settings.space}), layout {settings.layout}, kernel {settings.kernel}, power {settings.power:g}")
        write_text(html, page(groups, html, absolute_paths, meta=meta))
    if montage_path is not None:
        write_image(montage_path, montage(groups))
    for path in (html, montage_path):
        if path is not None and not quiet:
            stderr.print(f"wrote {one_line(str(path))}", markup=False)
