"""Finding copies in an index: identical files, the same photo saved again, near-duplicates, grouped in tiers.

1. Identical files: the same content hash.
2. The same photo saved again (resized, recompressed, converted to another format, rotated by 90/180/270 degrees,
   mirrored): colours and structure both nearly the same, under one of the 8 symmetries of the square.
3. Near-duplicates (bursts, light crops, small edits of brightness or colour): the near-duplicate distance of
   :class:`cbir.core.duplicates.Rule` within a threshold (1 by default).

Colours are the stored histograms under the quadratic-form distance with the default ranking settings, whatever the
index's own (the thresholds were calibrated on them); structure is the stored 16x16 grey thumbnail. Images indexed
before cbir kept thumbnails take part in tier 1 only, until an index run reads them again. Groups are the connected
components of the pairs found; each names a suggested keeper (most pixels, then the largest file, then the oldest)
and why. Nothing here deletes, moves or writes a file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core import duplicates as core
from ..core.blas import one_blas_thread
from ..core.histogram import block_weights
from ..errors import CbirError, Remedy
from ..store import Store
from . import search_cache
from .histograms import StoredHistograms, search_setup
from .tuning import Tuning
from .workers import default_workers

# The ranking the thresholds were calibrated with (tests/benchmarks/bench_duplicates.py): the defaults of Settings.
RANKING = {"kernel": "gaussian", "sigma": 400.0, "power": 1 / 3}
TIER_LABELS = {1: "identical files", 2: "the same photo saved again", 3: "near-duplicates"}
RELATIONS = {0: "keeper", 1: "identical file", 2: "saved again", 3: "near-duplicate"}
MAX_THRESHOLD = 4.0

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DuplicateMember:
    """One file of a group, compared with the group's keeper.

    path : str, as it opens from the caller's working directory; stored_path : str, as the database holds it
    image_id : int
    relation : int, 0 the keeper, 1 an identical file, 2 the same photo saved again, 3 a near-duplicate (of the
        keeper itself, or only through other members when ``distance`` is over the threshold)
    symmetry : str, how it looks next to the keeper: "as is", "rotated 90° clockwise", "mirrored", ...
    colour_distance, structure_distance, distance : float or None, to the keeper (None for the keeper, and when
        either has no structure thumbnail); ``distance`` is the near-duplicate distance (1: the default threshold)
    width, height : int, full-size pixels; size : int, bytes; mtime_ns : int, modification time
    """

    path: str
    stored_path: str
    image_id: int
    relation: int
    symmetry: str
    colour_distance: float | None
    structure_distance: float | None
    distance: float | None
    width: int
    height: int
    size: int
    mtime_ns: int

    @property
    def relation_label(self) -> str:
        """The relation in words: "keeper", "identical file", "saved again" or "near-duplicate"."""
        return RELATIONS[self.relation]


@dataclass(frozen=True)
class DuplicateGroup:
    """Files that are copies of each other. ``tier``: 1 identical files, 2 the same photo saved again, 3
    near-duplicates (the loosest tier needed to join them all); ``members``: the suggested keeper first;
    ``why``: why that one is suggested."""

    tier: int
    members: tuple[DuplicateMember, ...]
    why: str

    @property
    def label(self) -> str:
        return TIER_LABELS[self.tier]

    @property
    def keeper(self) -> DuplicateMember:
        return self.members[0]


@dataclass(frozen=True)
class DuplicatePair:
    """Two files found to be copies directly (groups join such pairs): their paths (as they open from the caller's
    working directory), the tier of the pair and its near-duplicate distance (0 for identical files)."""

    path: str
    other: str
    tier: int
    distance: float


@dataclass(frozen=True)
class DuplicateReport:
    """What :meth:`cbir.Index.duplicates` found: ``groups`` (by tier, then largest first), the ``pairs`` that join
    them (each once, in its tightest tier), how many images were compared, how many have no structure thumbnail (compared as identical files only),
    the candidate pairs measured, the tier and threshold asked for, and the seconds it took."""

    groups: list[DuplicateGroup]
    pairs: list[DuplicatePair]
    images: int
    without_structure: int
    pairs_measured: int
    tier: int
    threshold: float
    seconds: float


def find_duplicates(store: Store, *, tier: int = 3, threshold: float = 1.0, tuning: Tuning = Tuning(),
                    progress: Progress | None = None) -> DuplicateReport:
    """Group the indexed images that are copies of each other; see the module's description.

    Parameters
    ----------
    tier : the loosest tier to report: 1 identical files only, 2 also photos saved again, 3 also near-duplicates
    threshold : near-duplicate distance up to which tier 3 groups photos (1: the calibrated default; smaller is
        stricter); tiers 1 and 2 do not depend on it
    progress : callable(done, total) while the pairs are compared
    """
    if tier not in (1, 2, 3):
        raise ValueError(f"tier must be 1, 2 or 3, got {tier!r}")
    if not 0 < threshold <= MAX_THRESHOLD:
        raise ValueError(f"threshold must be more than 0 and at most {MAX_THRESHOLD:g}, got {threshold!r}")
    started = time.perf_counter()
    # BLAS held to one thread: its own threads spin while they wait, and on a machine shared with other jobs they
    # made the products here 2 to 6 times slower; the all-pairs products run in threads of their own instead.
    with one_blas_thread():
        return _find(store, tier, threshold, tuning, progress, started)


def _find(store, tier, threshold, tuning, progress, started):
    with store.snapshot():
        rows = store.searchable_image_rows()
        ids = np.array([r[0] for r in rows], np.int64)
        loaded = _colours(store, len(rows)) if tier >= 2 and len(rows) else None
        thumbs, present = store.structure_thumbnails(ids)
    n = len(rows)
    sha = [r[4] for r in rows]
    edges = [_identical_edges(sha)]
    distances = [np.zeros(len(edges[0][0]))]
    colour = structure = rule = perms = None
    measured = 0
    if loaded is not None:
        settings, n_colours, colour_ids, transformed = loaded
        if not np.array_equal(colour_ids, ids):
            raise CbirError(f"{store.path}: images and histograms disagree; the database is damaged",
                            remedy=Remedy.CHECK)
        perms = core.block_permutations(settings.layout)
        colour = transformed.reshape(n, len(perms[0]), -1)
        structure = core.structure_vectors(thumbs)
        rule = core.Rule().scaled(core.colour_unit(n_colours, block_weights(settings.layout)))
        rows_with = np.flatnonzero(present)
        try:
            everyone = len(rows_with) == n  # then no copy of the colour matrix (512 MB at 100k)
            i, j = core.candidate_pairs(colour if everyone else colour[rows_with],
                                        structure if everyone else structure[rows_with], perms, rule,
                                        threshold if tier == 3 else 1e-9, block=tuning.duplicates_block,
                                        limit=tuning.duplicates_pairs_limit, progress=progress,
                                        threads=tuning.duplicates_threads or default_workers())
        except core.TooManyPairs as error:
            raise CbirError(f"more than {error.limit:,} pairs of photos are that similar; lower the threshold "
                            f"(now {threshold:g})") from None
        i, j = rows_with[i], rows_with[j]
        measured = len(i)
        c, e, _ = core.pair_distances(colour, structure, i, j, perms)
        saved = rule.saved_again(c, e)
        near_distance = rule.near_distance(c, e)
        edges.append((i[saved], j[saved], np.full(int(saved.sum()), 2)))
        distances.append(near_distance[saved])
        if tier == 3:
            near = ~saved & (near_distance <= threshold)
            edges.append((i[near], j[near], np.full(int(near.sum()), 3)))
            distances.append(near_distance[near])
    a = np.concatenate([e[0] for e in edges]).astype(np.int64)
    b = np.concatenate([e[1] for e in edges]).astype(np.int64)
    kind = np.concatenate([e[2] for e in edges]).astype(np.int64)
    labels = {t: core.connected_groups(n, a[kind <= t], b[kind <= t]) for t in (1, 2, 3) if t <= tier}
    final = labels[tier]
    members_of = list(_components(final))
    keepers, others = [], []
    for members in members_of:
        ranked = sorted(members.tolist(), key=lambda r: _keeper_order(rows[r]))
        keepers.append(ranked[0])
        others.append(ranked[1:])
    measured_to_keeper = _to_keepers(keepers, others, colour, structure, present, perms)
    groups = []
    for members, keeper, rest, to_keeper in zip(members_of, keepers, others, measured_to_keeper):
        group_tier = min(t for t in labels if len(set(labels[t][members].tolist())) == 1)
        groups.append(_group(store, rows, keeper, rest, to_keeper, group_tier, rule, threshold))
    groups.sort(key=lambda g: (g.tier, -len(g.members), g.keeper.stored_path))
    pairs = _pairs(store, rows, a, b, kind, np.concatenate(distances))
    return DuplicateReport(groups, pairs, n, int(n - present.sum()) if tier >= 2 else 0, measured, tier, threshold,
                           time.perf_counter() - started)


def _pairs(store, rows, a, b, kind, near):
    """Each pair once (identical files are measured again as candidates), in its tightest tier, by tier."""
    low, high = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((near, kind, high, low))
    first = np.ones(len(order), bool)
    first[1:] = (low[order][1:] != low[order][:-1]) | (high[order][1:] != high[order][:-1])
    kept = order[first]
    kept = kept[np.lexsort((near[kept], kind[kept]))]
    return [DuplicatePair(store.disk_path(rows[x][1]), store.disk_path(rows[y][1]), int(t), float(d))
            for x, y, t, d in zip(low[kept].tolist(), high[kept].tolist(), kind[kept].tolist(), near[kept].tolist())]


def _colours(store, count):
    """Settings, codebook size, ids and transformed colour vectors ``(N, B*K) float32`` under :data:`RANKING`
    (read from the search cache when it holds them), streamed from the database: the raw histograms are never all
    in memory at once."""
    settings, codebook, dimension, search = search_setup(store, RANKING)
    cached = search_cache.read(store, search.transform_key(), dimension)
    if cached is not None and np.isfinite(cached[1]).all():
        return settings, len(codebook), cached[0], cached[1]
    histograms = StoredHistograms(store, dimension)
    search.transform_chunks(histograms.stream(), count)
    return settings, len(codebook), histograms.ids, search.transformed


def _identical_edges(sha):
    first: dict[str, int] = {}
    a, b = [], []
    for row, digest in enumerate(sha):
        if digest in first:
            a.append(first[digest])
            b.append(row)
        else:
            first[digest] = row
    return np.array(a, np.int64), np.array(b, np.int64), np.ones(len(a), np.int64)


def _components(labels):
    """Rows of every component with at least two members."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(order)]):
        if end - start > 1:
            yield order[start:end]


def _keeper_order(row):
    """Sort key: most pixels, then the largest file, then the oldest, then the path."""
    _, path, size, mtime_ns, _, width, height = row
    return (-(width or 0) * (height or 0), -(size or 0), mtime_ns or 0, path)


def _why(keeper, runner_up):
    _, _, size, mtime_ns, _, width, height = keeper
    _, _, size2, mtime2, _, width2, height2 = runner_up
    if width * height != width2 * height2:
        return f"most pixels ({width}x{height})"
    if size != size2:
        return f"same pixels, largest file ({_bytes(size)})"
    if mtime_ns != mtime2:
        return f"same pixels and size, oldest ({time.strftime('%Y-%m-%d %H:%M', time.localtime(mtime_ns / 1e9))})"
    return "same pixels, size and time: first by path"


def _bytes(size):
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000


def _to_keepers(keepers, others, colour, structure, present, perms):
    """For each group, the colour and structure distances and symmetry of each other member to the keeper (NaN
    where either has no structure thumbnail), measured in one call for all groups."""
    counts = [len(o) for o in others]
    a = np.repeat(np.array(keepers, np.int64), counts)
    b = np.array([r for o in others for r in o], np.int64)
    c = np.full(len(b), np.nan)
    e = np.full(len(b), np.nan)
    g = np.zeros(len(b), np.int64)
    if colour is not None and len(b):
        ok = present[a] & present[b]
        c[ok], e[ok], g[ok] = core.pair_distances(colour, structure, a[ok], b[ok], perms)
    bounds = np.cumsum([0] + counts)
    return [(c[x:y], e[x:y], g[x:y]) for x, y in zip(bounds[:-1], bounds[1:])]


def _group(store, rows, keeper, others, to_keeper, tier, rule, threshold):
    c, e, g = to_keeper
    out = [_member(store, rows[keeper], 0, "as is", None, None, None)]
    for k, row in enumerate(others):
        if rows[row][4] == rows[keeper][4]:
            relation, distances, symmetry = 1, (0.0, 0.0, 0.0), "as is"
        elif not np.isnan(c[k]):
            distance = float(rule.near_distance(c[k], e[k]))
            relation = 2 if rule.saved_again(c[k], e[k]) else 3
            distances, symmetry = (float(c[k]), float(e[k]), distance), core.symmetry_name(int(g[k]))
        else:
            relation, distances, symmetry = tier, (None, None, None), "as is"
        out.append(_member(store, rows[row], relation, symmetry, *distances))
    out[1:] = sorted(out[1:], key=lambda m: (m.relation, m.distance if m.distance is not None else 0, m.stored_path))
    return DuplicateGroup(tier, tuple(out), _why(rows[keeper], rows[others[0]]))


def _member(store, row, relation, symmetry, colour_distance, structure_distance, distance):
    image_id, stored, size, mtime_ns, _, width, height = row
    return DuplicateMember(store.disk_path(stored), stored, image_id, relation, symmetry, colour_distance,
                           structure_distance, distance, width, height, size, mtime_ns)
