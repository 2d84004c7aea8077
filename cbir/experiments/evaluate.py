"""The runner behind ``cbir evaluate``: index a labelled folder and measure its retrieval.

Protocol: every labelled image is a query against all the other labelled images (itself excluded); the relevant
images are those with the same label; AP over the full ranking, MAP, P@10, P@20 (:mod:`cbir.core.metrics`). The
rankings come from the index's own search back-ends (the quadratic-form engine, or L1 / chi-squared /
intersection over the very same stored histograms), through :class:`cbir.Index`, so what is measured is what
``cbir query`` returns.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.backends import DISTANCES
from ..core.metrics import PRECISION_AT, average_precisions, precision_at
from ..errors import DecodeError, EvaluationError
from ..imageio import open_regular
from ..index import Index, IndexReport

Progress = Callable[[int, int], None]
JUDGED = 20  # results the simulated user judges per round of relevance feedback
Ranker = Callable[..., Iterator[np.ndarray]]


# --- the labelled collection ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Collection:
    """A labelled folder: absolute image paths and their labels, in the labels file's order."""

    directory: str
    paths: list[str]
    labels: list[str]


def read_labels(directory: str | os.PathLike[str], labels_csv: str | os.PathLike[str]) -> Collection:
    """Read a labels file with columns ``path,label`` (paths relative to ``directory``) into a Collection."""
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise EvaluationError(f"{directory}: not a folder; pass the folder of the labelled images")
    try:
        raw = open_regular(labels_csv, "a labels file")  # a FIFO or a device is refused, never waited on
    except DecodeError as error:
        raise EvaluationError(error.problem) from None
    try:
        with io.TextIOWrapper(io.BufferedReader(raw), newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise EvaluationError(f"{labels_csv}: needs a header with columns path,label "
                                      f"(found {', '.join(reader.fieldnames or []) or 'none'})")
            rows = [(row["path"], row["label"]) for row in reader]
    except OSError as error:
        raise EvaluationError(f"{labels_csv}: cannot read ({error.strerror})") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise EvaluationError(f"{labels_csv}: not a CSV file with columns path,label ({error})") from None
    paths, labels, seen, missing = [], [], set(), []
    for path, label in rows:
        if not path or label is None or label == "":
            raise EvaluationError(f"{labels_csv}: every row needs a path and a label (row {len(paths) + 2})")
        full = os.path.normpath(os.path.join(directory, path))
        if full in seen:
            raise EvaluationError(f"{labels_csv}: {path} is listed twice; give each image one label")
        seen.add(full)
        if not os.path.isfile(full):
            missing.append(path)
        paths.append(full)
        labels.append(label)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise EvaluationError(f"{len(missing)} labelled images are not in {directory}: {shown}")
    if len(paths) < 2 or len(set(labels)) == len(labels):
        raise EvaluationError(f"{labels_csv}: needs at least two images with the same label to measure retrieval")
    return Collection(directory, paths, labels)


# --- running experiments --------------------------------------------------------------------------------------
def evaluate_index(index: Index, collection: Collection, distances: Sequence[str] = ("qfd",),
                   progress: Progress | None = None, *, feedback: int = 0, judged: int = JUDGED
                   ) -> list[dict[str, Any]]:
    """Evaluate an index that holds ``collection`` with each of ``distances`` (the index's ranking settings
    apply; nothing is re-indexed). Images of the index that are not labelled are left out of the rankings;
    labelled images that are not in the index (they failed to index) are neither queries nor results.

    feedback : rounds of simulated relevance feedback (``qfd`` only; see :func:`simulate_feedback`)
    judged : results the simulated user judges per round

    Returns
    -------
    one dict per distance: distance, queries, map, "p@10", "p@20", ns (the N-S score: the query's own label in
    its top 4, itself included), ap_per_label {label: MAP of its queries}, query_seconds (time of one query's full
    ranking, ranked in blocks); with ``feedback``, "feedback": one dict per round (see :func:`summarise`)
    """
    for distance in distances:
        if distance not in DISTANCES:
            raise EvaluationError(f"unknown distance {distance!r}; choose from {', '.join(DISTANCES)}")
    if feedback and any(d != "qfd" for d in distances):
        raise EvaluationError("relevance feedback ranks by the quadratic form only: use it with --distance qfd")
    labelled, labels = labelled_images(index, collection)
    results = []
    for distance in distances:
        rounds = simulate_feedback(ranker(index, labelled, distance), labels, feedback, judged, progress)
        result = {"distance": distance, **summarise(rounds[0])}
        per_label = {str(label): float(rounds[0]["ap"][labels == label].mean()) for label in sorted(set(labels))}
        result.update(ap_per_label=per_label, query_seconds=rounds[0]["seconds"] / len(labelled))
        if feedback:
            result["judged"] = judged
            result["feedback"] = [summarise(r) for r in rounds[1:]]
        results.append(result)
    return results


def labelled_images(index: Index, collection: Collection) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``collection`` that are in ``index``: their ids ``(Q,) int64`` (ascending) and labels
    ``(Q,)``; labelled images that failed to index are left out, and so are indexed images without a label."""
    label_of = dict(zip(collection.paths, collection.labels))
    ids, paths = index.image_paths()
    rows = np.array([i for i, p in enumerate(paths) if os.path.normpath(p) in label_of], dtype=np.int64)
    if len(rows) < 2:
        raise EvaluationError("fewer than two labelled images are in the index; nothing to rank")
    return ids[rows], np.array([label_of[os.path.normpath(paths[i])] for i in rows])


def ranker(index: Index, labelled: np.ndarray, distance: str = "qfd") -> Ranker:
    """What :func:`simulate_feedback` ranks with: ``rank(liked=None, disliked=None)`` gives, for each of the images
    ``labelled`` (ids, ascending) in turn, its full ranking among them by ``distance`` as positions in
    ``labelled`` (itself included), ranked with the feedback ``liked[q]`` and ``disliked[q]`` (positions) when
    given (:meth:`cbir.Index.full_rankings`)."""
    def rank(liked=None, disliked=None):
        def ids(positions):
            return None if positions is None else [labelled[p] for p in positions]

        ranked = index.full_rankings(labelled, distance=distance, among=labelled, relevant=ids(liked),
                                     not_relevant=ids(disliked))
        return (np.searchsorted(labelled, r) for r in ranked)

    return rank


def simulate_feedback(rank: Ranker, labels: Sequence[Any], rounds: int = 0,
                      judged: int = JUDGED, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Every labelled image queries the others, then a simulated user gives relevance feedback for ``rounds``
    rounds: each round they judge the first ``judged`` results of the current ranking (the query excluded), every
    one relevant (same label) or not, and the query is ranked again with all their judgements so far.

    Parameters
    ----------
    rank : callable(liked=None, disliked=None) -> iterator of rankings, one per query in label order: query q's
        ranking as positions 0..Q-1 best first, q itself included; ``liked[q]`` and ``disliked[q]`` are the
        positions judged relevant and not relevant so far (None: no feedback)
    labels : (Q,) the label of each position
    rounds, judged : feedback rounds and results judged per round

    Returns
    -------
    one dict per round (0: no feedback yet), each of per-query arrays: "ap", "p@10", "p@20", "ns" over the full
    ranking (query excluded; N-S counts the query's label in the top 4, itself included), the same prefixed
    "residual " over the residual collection (the images judged in earlier rounds removed too; NaN for a query
    with no relevant image left), and "seconds" spent ranking
    """
    if rounds < 0 or judged < 1:
        raise ValueError(f"rounds must be >= 0 and judged >= 1, got {rounds} and {judged}")
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    total = len(codes)
    others = np.bincount(codes)[codes] - 1  # relevant images of each query
    shown = [np.zeros(0, np.int64) for _ in range(total)]
    liked = disliked = None
    measured = []
    for round_ in range(rounds + 1):
        result = {name: np.full(total, np.nan) for name in _MEASURES}
        started, seconds = time.perf_counter(), 0.0
        rankings = rank(liked, disliked)
        for q in range(total):
            ranking = next(rankings)
            seconds += time.perf_counter() - started
            hits = codes[ranking] == codes[q]
            result["ns"][q] = hits[:4].sum()
            others_ranked = ranking[ranking != q]
            _measure(result, "", q, codes[others_ranked] == codes[q], others[q])
            if round_:
                left = others_ranked[~np.isin(others_ranked, shown[q])]
                relevant_left = codes[left] == codes[q]
                if relevant_left.any():
                    _measure(result, "residual ", q, relevant_left, relevant_left.sum())
            if round_ < rounds:
                shown[q] = np.union1d(shown[q], others_ranked[:judged])
            if progress:
                progress(round_ * total + q + 1, (rounds + 1) * total)
            started = time.perf_counter()
        result["seconds"] = seconds
        measured.append(result)
        liked = [s[codes[s] == codes[q]] for q, s in enumerate(shown)]
        disliked = [s[codes[s] != codes[q]] for q, s in enumerate(shown)]
    return measured


_MEASURES = ("ap", "p@10", "p@20", "ns", "residual ap", "residual p@10", "residual p@20")


def _measure(result, prefix, q, relevant, n_relevant):
    result[prefix + "ap"][q] = average_precisions(relevant[None], [n_relevant])[0]
    for k in PRECISION_AT:
        result[f"{prefix}p@{k}"][q] = precision_at(relevant, k)


def summarise(measured: dict[str, Any], queries: np.ndarray | None = None) -> dict[str, Any]:
    """Means of one round of :func:`simulate_feedback` over all queries (or the positions ``queries``): queries,
    map, "p@10", "p@20", ns over the full ranking, and after feedback "residual": map, "p@10", "p@20" over the
    residual collection, and the queries that still had a relevant image left there."""
    pick = slice(None) if queries is None else np.asarray(queries)
    summary = {"queries": int(len(measured["ap"][pick])), "map": float(measured["ap"][pick].mean())}
    summary.update({f"p@{k}": float(measured[f"p@{k}"][pick].mean()) for k in PRECISION_AT})
    summary["ns"] = float(measured["ns"][pick].mean())
    residual = measured["residual ap"][pick]
    if not np.isnan(residual).all():
        left = ~np.isnan(residual)
        summary["residual"] = {"queries": int(left.sum()), "map": float(residual[left].mean()),
                               **{f"p@{k}": float(measured[f"residual p@{k}"][pick][left].mean())
                                  for k in PRECISION_AT}}
    return summary


def index_collection(index: Index, collection: Collection, settings: dict[str, Any] | None = None, *,
                     rebuild: bool = False, progress: Progress | None = None) -> IndexReport:
    """Index the labelled images of ``collection`` (and only those) into ``index``; returns the IndexReport."""
    return index.add(collection.paths, settings=settings, rebuild=rebuild, progress=progress)


def _refuse_to_drop_other_images(index, collection):
    """A rebuild keeps only the labelled images: refuse it on a database that holds others (before, ``evaluate
    --db X --rebuild`` silently deleted every image of X that was not in the labels file)."""
    if not index.info()["images"]:
        return
    labelled = set(collection.paths)
    others = sum(os.path.normpath(p) not in labelled for p in index.image_paths()[1])
    if others:
        raise EvaluationError(f"{index.path} holds {others} images that are not in the labels file, and --rebuild "
                              "would drop them; evaluate with a database of its own (another --db, or none)")


def run_experiment(directory: str | os.PathLike[str], labels_csv: str | os.PathLike[str], *,
                   db: str | os.PathLike[str] | None = None, settings: dict[str, Any] | None = None,
                   distances: Sequence[str] = ("qfd",), rebuild: bool = False, feedback: int = 0,
                   judged: int = JUDGED, index_progress: Progress | None = None,
                   query_progress: Progress | None = None
                   ) -> dict[str, Any]:
    """Index a labelled folder and measure retrieval: what ``cbir evaluate`` prints.

    Parameters
    ----------
    directory : folder of the images; labels_csv : file with columns path,label (paths relative to directory)
    db : index database to use or create (kept); None indexes into a temporary database that is then deleted
    settings : dict of Settings fields (None values are ignored); histogram settings need ``rebuild`` on an
        existing db
    distances : back-ends to rank with, from ``cbir.core.backends.DISTANCES``
    feedback, judged : rounds of simulated relevance feedback, results judged per round (:func:`evaluate_index`)
    index_progress, query_progress : callable(done, total) or None

    Returns
    -------
    dict: directory, labels_file, database, images (labelled), labels (distinct), failed (path, reason of images
    that could not be indexed), indexed (images indexed by this run), index_seconds (per indexed image, codebook
    learning included; None when nothing needed indexing), settings, results (one per distance, see
    :func:`evaluate_index`)
    """
    unknown = [d for d in distances if d not in DISTANCES]
    if unknown:
        raise EvaluationError(f"unknown distance {', '.join(map(repr, unknown))}; choose from {', '.join(DISTANCES)}")
    if feedback and any(d != "qfd" for d in distances):
        raise EvaluationError("relevance feedback ranks by the quadratic form only: use it with --distance qfd")
    collection = read_labels(directory, labels_csv)
    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    ranking = {k: v for k, v in settings.items() if k in ("power", "kernel", "sigma")}
    with tempfile.TemporaryDirectory(prefix="cbir-evaluate-") as scratch:
        path = db if db is not None else os.path.join(scratch, "evaluate.db")
        with Index.open(path, create=True, ranking=ranking) as index:
            if rebuild:
                _refuse_to_drop_other_images(index, collection)
            report = index_collection(index, collection, settings, rebuild=rebuild, progress=index_progress)
            results = evaluate_index(index, collection, distances, query_progress, feedback=feedback, judged=judged)
            stored = index.info()["settings"]
    indexed = report.added + report.updated
    return {
        "directory": collection.directory,
        "labels_file": os.fspath(labels_csv),
        "database": None if db is None else os.fspath(db),
        "images": len(collection.paths),
        "labels": len(set(collection.labels)),
        "failed": [{"path": p, "reason": r} for p, r in report.failures],
        "indexed": indexed,
        "index_seconds": report.seconds / indexed if indexed else None,
        "settings": {**stored, **ranking},
        "results": results,
    }
