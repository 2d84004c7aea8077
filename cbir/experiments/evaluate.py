"""The runner behind ``cbir evaluate``: index a labelled folder and measure its retrieval.

Protocol: every labelled image is a query against all the other labelled images (itself excluded); the relevant
images are those with the same label; AP over the full ranking, MAP, P@10, P@20 (:mod:`cbir.core.metrics`). The
rankings come from the index's own search back-ends (the quadratic-form engine, or L1 / chi-squared /
intersection over the very same stored histograms), through :class:`cbir.Index`, so what is measured is what
``cbir query`` returns.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.backends import DISTANCES
from ..core.metrics import PRECISION_AT, ranking_metrics
from ..errors import EvaluationError
from ..index import Index, IndexReport

Progress = Callable[[int, int], None]


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
        with open(labels_csv, newline="", encoding="utf-8-sig") as handle:
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
                   progress: Progress | None = None) -> list[dict[str, Any]]:
    """Evaluate an index that holds ``collection`` with each of ``distances`` (the index's ranking settings
    apply; nothing is re-indexed). Images of the index that are not labelled are left out of the rankings;
    labelled images that are not in the index (they failed to index) are neither queries nor results.

    Returns
    -------
    one dict per distance: distance, queries, map, "p@10", "p@20", ap_per_label {label: MAP of its queries},
    query_seconds (mean time of one query's full ranking)
    """
    for distance in distances:
        if distance not in DISTANCES:
            raise EvaluationError(f"unknown distance {distance!r}; choose from {', '.join(DISTANCES)}")
    label_of = dict(zip(collection.paths, collection.labels))
    ids, paths = index.image_paths()
    rows = np.array([i for i, p in enumerate(paths) if os.path.normpath(p) in label_of], dtype=np.int64)
    if len(rows) < 2:
        raise EvaluationError("fewer than two labelled images are in the index; nothing to rank")
    labels = np.array([label_of[os.path.normpath(paths[i])] for i in rows])
    position = np.full(len(ids), -1, np.int64)
    position[rows] = np.arange(len(rows))
    return [_evaluate(index, ids, rows, labels, position, distance, progress) for distance in distances]


def _evaluate(index, ids, rows, labels, position, distance, progress):
    rankings = np.empty((len(rows), len(rows) - 1), np.int64)
    seconds = 0.0
    ranked_ids = index.full_rankings(ids[rows], distance=distance)
    for q in range(len(rows)):
        start = time.perf_counter()
        ranked = next(ranked_ids)
        seconds += time.perf_counter() - start
        ranked = position[np.searchsorted(ids, ranked)]
        ranked = ranked[ranked >= 0]
        rankings[q] = ranked[ranked != q]
        if progress:
            progress(q + 1, len(rows))
    measured = ranking_metrics(rankings, labels, np.arange(len(rows)))
    per_label = {str(label): float(measured["ap"][labels == label].mean()) for label in sorted(set(labels))}
    result = {"distance": distance, "queries": int(len(rows)), "map": float(measured["ap"].mean())}
    result.update({f"p@{k}": float(measured[f"p@{k}"].mean()) for k in PRECISION_AT})
    result.update(ap_per_label=per_label, query_seconds=seconds / len(rows))
    return result


def index_collection(index: Index, collection: Collection, settings: dict[str, Any] | None = None, *,
                     rebuild: bool = False, progress: Progress | None = None) -> IndexReport:
    """Index the labelled images of ``collection`` (and only those) into ``index``; returns the IndexReport."""
    return index.add(collection.paths, settings=settings, rebuild=rebuild, progress=progress)


def run_experiment(directory: str | os.PathLike[str], labels_csv: str | os.PathLike[str], *,
                   db: str | os.PathLike[str] | None = None, settings: dict[str, Any] | None = None,
                   distances: Sequence[str] = ("qfd",), rebuild: bool = False,
                   index_progress: Progress | None = None, query_progress: Progress | None = None
                   ) -> dict[str, Any]:
    """Index a labelled folder and measure retrieval: what ``cbir evaluate`` prints.

    Parameters
    ----------
    directory : folder of the images; labels_csv : file with columns path,label (paths relative to directory)
    db : index database to use or create (kept); None indexes into a temporary database that is then deleted
    settings : dict of Settings fields (None values are ignored); histogram settings need ``rebuild`` on an
        existing db
    distances : back-ends to rank with, from ``cbir.core.backends.DISTANCES``
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
    collection = read_labels(directory, labels_csv)
    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    ranking = {k: v for k, v in settings.items() if k in ("power", "kernel", "sigma")}
    with tempfile.TemporaryDirectory(prefix="cbir-evaluate-") as scratch:
        path = db if db is not None else os.path.join(scratch, "evaluate.db")
        with Index.open(path, create=True, ranking=ranking) as index:
            report = index_collection(index, collection, settings, rebuild=rebuild, progress=index_progress)
            results = evaluate_index(index, collection, distances, query_progress)
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
