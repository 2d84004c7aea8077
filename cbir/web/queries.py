"""What a search request asks for, read from its parameters (the same for a page and for the API) and turned into
a histogram by the index: examples from the index by id, colours with shares, a painted layout, or an uploaded
picture. Bad input raises :class:`BadRequest` with a message saying what to change."""

from dataclasses import dataclass, field

import numpy as np

from ..core.colour_query import describe, parse_target
from ..errors import DecodeError
from ..imageio import decode_with_size, header_size

MAX_RESULTS = 200
DEFAULT_RESULTS = 24
MAX_COLOURS = 12
MAX_EXAMPLES = 50


class BadRequest(Exception):
    """A request that cannot be answered as asked: the face's own error (like a usage error of the CLI), with the
    HTTP ``status`` to answer."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class NotFound(BadRequest):
    def __init__(self, message):
        super().__init__(message, 404)


@dataclass
class Query:
    """A search: ``kind`` of its first example ("images", "colour", "layout" or "upload"), its words, and how to
    rank: ``examples`` for :meth:`cbir.Index.search` (positive examples; None when one histogram ranks alone),
    ``unlike`` (negative examples: ids), ``vector`` (the one histogram; with several examples, their mean: what
    "why" and "% similar" compare with), ``like`` (ids marked like), ``params`` (the first example's parameters,
    to ask for it again with more marks), ``note`` (what the page should say about how it ranked)."""

    kind: str
    title: str
    vector: np.ndarray = None
    like: list = field(default_factory=list)
    unlike: list = field(default_factory=list)
    params: list = field(default_factory=list)
    examples: list = None
    note: str = ""
    colours: list = None  # a colour search alone: its colours, ranked by the share of them missing


def number_of_results(value):
    if value in (None, ""):
        return DEFAULT_RESULTS
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"n must be a whole number from 1 to {MAX_RESULTS}, got {value!r}") from None
    if not 1 <= n <= MAX_RESULTS:
        raise BadRequest(f"n must be from 1 to {MAX_RESULTS}, got {n}")
    return n


def image_ids(values, name):
    ids = []
    for value in values:
        for part in value.replace(",", " ").split():
            if not part.isdigit() or len(part) > 18:
                raise BadRequest(f"{name} takes image ids (whole numbers), got {part!r}")
            ids.append(int(part))
    if len(ids) > MAX_EXAMPLES:
        raise BadRequest(f"at most {MAX_EXAMPLES} examples in {name}, got {len(ids)}")
    return list(dict.fromkeys(ids))


def colour_target(values):
    """Colour items ``COLOUR[:PERCENT]`` as the CLI's ``--color`` takes them (empty items ignored)."""
    specs = [v.strip() for v in values if v.strip()]
    if len(specs) > MAX_COLOURS:
        raise BadRequest(f"at most {MAX_COLOURS} colours, got {len(specs)}")
    return parse_target(specs)


def layout_cells(value, regions):
    """A painted layout ``c1,c2,...`` (one colour or nothing per region, row by row) as a list of colour targets
    (a one-colour list, or None for "any colour")."""
    cells = value.split(",")
    if len(cells) != regions:
        raise BadRequest(f"layout takes {regions} cells (comma-separated, empty for any colour), got {len(cells)}")
    if not any(c.strip() for c in cells):
        raise BadRequest("paint at least one cell of the layout")
    return [parse_target([c.strip() + ":100"]) if c.strip() else None for c in cells]


def read_query(params, index, regions, uploads):
    """The :class:`Query` of a search's parameters (a multi-dict), histograms made by ``index``.

    The first example is one of: colours (``color``, or the colour form's ``pick`` and ``share``), a painted
    ``layout``, an ``upload`` kept from an earlier search (``uploads``: token -> picture), or photos of the index
    (``like``); results marked ``like`` and ``unlike`` refine it (relevance feedback, :meth:`cbir.Index.search`).
    """
    like, unlike = image_ids(params.getlist("like"), "like"), image_ids(params.getlist("unlike"), "unlike")
    colours = [c for c in params.getlist("color") if c.strip()]
    # the colour form's rows: a picked colour and its percentage, used when the percentage is given
    colours += [f"{pick}:{share}" for pick, share in zip(params.getlist("pick"), params.getlist("share"))
                if share.strip() not in ("", "0")]
    layout, upload = params.get("layout", ""), params.get("upload", "")
    kinds = [k for k, given in (("colour", colours), ("layout", layout.strip(",").strip()), ("upload", upload))
             if given]
    if len(kinds) > 1:
        raise BadRequest(f"one kind of search at a time, got {' and '.join(kinds)}")
    if not kinds and not like:
        raise BadRequest("ask for one kind of search: like=ID (examples from the index), color=COLOUR[:PERCENT] or "
                         "layout=C1,...,C9")
    if set(like) & set(unlike):
        raise BadRequest("a photo cannot be marked both like and unlike")
    found = {i.image_id: i for i in index.images(like + unlike)}
    missing = sorted(set(like + unlike) - set(found))
    if missing:
        raise NotFound(f"no indexed image with id {', '.join(map(str, missing))}")
    examples, vectors, title, note, kept = [], [], [], "", []
    if colours:
        target = colour_target(colours)
        examples.append(target)
        vectors.append(index.colour_vector(target))
        title, kept = [describe(target)], [("color", c) for c in colours]
    elif layout.strip(",").strip():
        vectors.append(index.layout_vector(layout_cells(layout, regions)))
        title = ["painted layout: " + ", ".join(c.strip() or "any" for c in layout.split(","))]
        kept = [("layout", layout)]
        if like or unlike:  # not an example Index.search takes: the marked photos alone rank this round
            vectors, note = [], "The painted layout is not an example the feedback takes: the marked photos rank."
    elif upload:
        picture = uploads.get(upload)
        if picture is None:
            raise BadRequest("the uploaded picture is no longer kept (the server keeps the last few): upload it "
                             "again", 410)
        examples.append(picture)
        vectors.append(index.histogram(picture))
        title, kept = ["the uploaded picture"], [("upload", upload)]
    if like:
        examples += like
        vectors += list(index.histograms(like))
        title.append("like " + ", ".join(found[i].stored_path for i in like[:3]) + f" and {len(like) - 3} more"
                     * (len(like) > 3))
    if not vectors:
        raise BadRequest("mark at least one photo as like")
    if unlike:
        title.append(f"not like {len(unlike)} photo{'s' * (len(unlike) > 1)}")
    kind = kinds[0] if kinds else "images"
    one = len(vectors) == 1 and not unlike  # one example alone: its histogram ranks
    return Query(kind, "; ".join(title), np.mean(vectors, axis=0), like, unlike, kept,
                 None if one else examples, note, examples[0] if one and colours else None)


def read_upload(data, name, min_side, max_pixels):
    """An uploaded picture: ``(H, W, 3) uint8``, decoded as indexing decodes photos, after the same header checks,
    and refused above ``max_pixels``."""
    size = header_size(data) if data else None
    if size is None:
        raise BadRequest("upload a JPEG, PNG, GIF, BMP, TIFF or WebP image (the file's header names no image size)",
                         415)
    if size[0] * size[1] > max_pixels:  # before decoding: a small file can declare a huge image
        raise BadRequest(f"the uploaded image is {size[0]}x{size[1]} pixels, over the limit of {max_pixels:,}", 413)
    try:
        return decode_with_size(data, min_side=min_side, name=name)[0]
    except DecodeError as error:
        raise BadRequest(f"cannot read the uploaded file as an image: {error}", 415) from None
