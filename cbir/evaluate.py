"""Retrieval experiments: ranking metrics, and the runner behind ``cbir evaluate``.

Protocol: every labelled image is a query against all the other labelled images (itself excluded); the relevant
images are those with the same label. A query's average precision (AP) is taken over its full ranking; MAP is the
mean AP over all queries; P@k is the share of relevant images among the first k. The rankings come from the
index's own search back-ends (the quadratic-form engine, or L1 / chi-squared / intersection over the very same
stored histograms), so what is measured is what ``cbir query`` returns.

The metric functions are pure numpy; the runner indexes a folder (a temporary database unless one is given) with
:class:`cbir.Index` and ranks with its engine.
"""

import csv
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from .errors import CbirError
from .features import block_weights, n_blocks
from .index import Index, load_engine
from .search import ChiSquaredSearch, IntersectionSearch, L1Search

DISTANCES = ("qfd", "l1", "chi2", "intersection")
PRECISION_AT = (10, 20)


class EvaluationError(CbirError):
    """A labelled collection that cannot be evaluated (bad labels file, missing images...)."""


# --- metrics ---------------------------------------------------------------------------------------------------
def _relevance(relevant):
    relevant = np.asarray(relevant)
    if relevant.dtype != bool:
        if not np.isin(relevant, (0, 1)).all():
            raise ValueError("relevant must hold booleans (or 0/1): True where the ranked item is relevant")
        relevant = relevant.astype(bool)
    return relevant


def average_precision(relevant, n_relevant=None):
    """Average precision of one ranking.

    Parameters
    ----------
    relevant : (M,) bool (or 0/1)
        Relevance of the ranked items, best first.
    n_relevant : int or None
        Number of relevant items in the collection (default: ``relevant.sum()``, i.e. the ranking is complete).
        Relevant items missing from a truncated ranking count as retrieved at no rank (precision 0).

    Returns
    -------
    ap : float, mean over the relevant items of the precision at each one's rank; 0.0 when there is none.
    """
    return float(average_precisions(np.atleast_2d(_relevance(relevant)),
                                    None if n_relevant is None else [n_relevant])[0])


def average_precisions(relevant, n_relevant=None):
    """Average precision of each of several rankings of equal length.

    Parameters
    ----------
    relevant : (Q, M) bool (or 0/1), relevance of each query's ranked items, best first
    n_relevant : (Q,) int or None, relevant items per query in the collection (default: the row sums)

    Returns
    -------
    ap : (Q,) float64, 0.0 for a query with no relevant item
    """
    relevant = _relevance(relevant)
    if relevant.ndim != 2:
        raise ValueError(f"relevant must be a (Q, M) array of rankings, got shape {relevant.shape}")
    found = relevant.sum(1)
    if n_relevant is None:
        n_relevant = found
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    if n_relevant.shape != found.shape:
        raise ValueError(f"n_relevant must hold one count per ranking ({len(found)}), got shape {n_relevant.shape}")
    if (n_relevant < found).any():
        raise ValueError("n_relevant is smaller than the relevant items in a ranking: count every relevant item "
                         "of the collection")
    ranks = np.arange(1, relevant.shape[1] + 1)
    precision_at_hits = np.where(relevant, np.cumsum(relevant, 1) / ranks, 0.0).sum(1)
    return np.divide(precision_at_hits, n_relevant, out=np.zeros(len(found)), where=n_relevant > 0)


def precision_at(relevant, k):
    """Precision at rank k of each ranking.

    Parameters
    ----------
    relevant : (M,) or (Q, M) bool (or 0/1), relevance of the ranked items, best first
    k : int >= 1; a ranking shorter than k counts its missing places as not relevant

    Returns
    -------
    precision : float for one ranking, (Q,) float64 for several
    """
    relevant = _relevance(relevant)
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    result = relevant[..., : int(k)].sum(-1) / int(k)
    return float(result) if relevant.ndim == 1 else result.astype(np.float64)


def ranking_metrics(rankings, labels, query_rows, ks=PRECISION_AT):
    """AP and P@k of full rankings against labels.

    Parameters
    ----------
    rankings : (Q, M) int, row numbers ranked best first for each query (the query itself excluded)
    labels : (N,) array of labels, one per row
    query_rows : (Q,) int, row of each query
    ks : precision cut-offs

    Returns
    -------
    dict with "ap" (Q,) float64 and "p@k" (Q,) float64 for each k; queries whose label no other row has get AP 0
    and are listed in "no_relevant" (Q,) bool.
    """
    labels = np.asarray(labels)
    rankings = np.asarray(rankings, dtype=np.int64)
    query_rows = np.asarray(query_rows, dtype=np.int64)
    if rankings.ndim != 2 or len(rankings) != len(query_rows):
        raise ValueError(f"rankings must be (Q, M) with one row per query ({len(query_rows)}), "
                         f"got shape {rankings.shape}")
    query_labels = labels[query_rows]
    relevant = labels[rankings] == query_labels[:, None]
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_relevant = counts[inverse[query_rows]] - 1
    result = {"ap": average_precisions(relevant, n_relevant), "no_relevant": n_relevant == 0}
    for k in ks:
        result[f"p@{k}"] = precision_at(relevant, k)
    return result


# --- the labelled collection ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Collection:
    """A labelled folder: absolute image paths and their labels, in the labels file's order."""

    directory: str
    paths: list
    labels: list


def read_labels(directory, labels_csv):
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
def backend(engine, distance):
    """The search back-end ranking ``engine``'s stored histograms by ``distance`` (one of DISTANCES)."""
    if distance == "qfd":
        return engine.backend
    blocks, weights = n_blocks(engine.settings.layout), block_weights(engine.settings.layout)
    vectors = engine.backend.vectors
    if distance == "l1":
        return L1Search(vectors, blocks, weights)
    if distance == "chi2":
        return ChiSquaredSearch(vectors, blocks, weights)
    if distance == "intersection":
        return IntersectionSearch(vectors, blocks, weights)
    raise ValueError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")


def evaluate_engine(engine, collection, distance="qfd", *, root=".", progress=None):
    """Rank every labelled image of ``collection`` against the others with one back-end and measure.

    ``root`` is the folder that the engine's relative stored paths are relative to (the database's folder).
    Images of the index that are not labelled are left out of the rankings; labelled images that are not in the
    index (they failed to index) are neither queries nor results.

    Returns
    -------
    dict: distance, queries, map, "p@10", "p@20", ap_per_label {label: MAP of its queries}, query_seconds (mean
    time of one query's full ranking)
    """
    label_of = dict(zip(collection.paths, collection.labels))
    stored = engine.paths()
    disk = [os.path.normpath(p if os.path.isabs(p) else os.path.join(root, p)) for p in stored]
    rows = np.array([i for i, p in enumerate(disk) if p in label_of], dtype=np.int64)
    if len(rows) < 2:
        raise EvaluationError("fewer than two labelled images are in the index; nothing to rank")
    labels = np.array([label_of[disk[i]] for i in rows])
    search = backend(engine, distance)
    vectors = engine.backend.vectors[rows]
    is_labelled = np.zeros(len(stored), bool)
    is_labelled[rows] = True
    position = np.full(len(stored), -1, np.int64)
    position[rows] = np.arange(len(rows))
    rankings = np.empty((len(rows), len(rows) - 1), np.int64)
    seconds = 0.0
    for q, vector in enumerate(vectors):
        start = time.perf_counter()
        ranked, _ = search.search(vector[None], 0)
        seconds += time.perf_counter() - start
        ranked = position[ranked[0][is_labelled[ranked[0]]]]
        rankings[q] = ranked[ranked != q]
        if progress:
            progress(q + 1, len(rows))
    measured = ranking_metrics(rankings, labels, np.arange(len(rows)))
    per_label = {str(label): float(measured["ap"][labels == label].mean()) for label in sorted(set(labels))}
    result = {"distance": distance, "queries": int(len(rows)), "map": float(measured["ap"].mean())}
    result.update({f"p@{k}": float(measured[f"p@{k}"].mean()) for k in PRECISION_AT})
    result.update(ap_per_label=per_label, query_seconds=seconds / len(rows))
    return result


def evaluate_index(index, collection, distances=("qfd",), ranking=None, progress=None):
    """Evaluate an index that holds ``collection`` with several distances; ``ranking`` overrides power, kernel,
    sigma (the stored histograms are reused, nothing is re-indexed). Returns a list of :func:`evaluate_engine`
    results."""
    for distance in distances:
        if distance not in DISTANCES:
            raise EvaluationError(f"unknown distance {distance!r}; choose from {', '.join(DISTANCES)}")
    engine = load_engine(index.store, ranking, in_memory=True)
    return [evaluate_engine(engine, collection, d, root=index.store.root, progress=progress) for d in distances]


def index_collection(index, collection, settings=None, *, rebuild=False, progress=None):
    """Index the labelled images of ``collection`` (and only those) into ``index``; returns the IndexReport."""
    return index.add(collection.paths, settings=settings, rebuild=rebuild, progress=progress)


def run_experiment(directory, labels_csv, *, db=None, settings=None, distances=("qfd",), rebuild=False,
                   index_progress=None, query_progress=None):
    """Index a labelled folder and measure retrieval: what ``cbir evaluate`` prints.

    Parameters
    ----------
    directory : folder of the images; labels_csv : file with columns path,label (paths relative to directory)
    db : index database to use or create (kept); None indexes into a temporary database that is then deleted
    settings : dict of Settings fields (None values are ignored); histogram settings need ``rebuild`` on an
        existing db
    distances : back-ends to rank with, from DISTANCES
    index_progress, query_progress : callable(done, total) or None

    Returns
    -------
    dict: directory, labels_file, database, images (labelled), labels (distinct), failed (path, reason of images
    that could not be indexed), indexed (images indexed by this run), index_seconds (per indexed image, codebook
    learning included; None when nothing needed indexing), settings, results (one per distance, see
    :func:`evaluate_engine`)
    """
    unknown = [d for d in distances if d not in DISTANCES]
    if unknown:
        raise EvaluationError(f"unknown distance {', '.join(map(repr, unknown))}; choose from {', '.join(DISTANCES)}")
    collection = read_labels(directory, labels_csv)
    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    ranking = {k: v for k, v in settings.items() if k in ("power", "kernel", "sigma")}
    with tempfile.TemporaryDirectory(prefix="cbir-evaluate-") as scratch:
        path = db if db is not None else os.path.join(scratch, "evaluate.db")
        with Index.open(path, create=True) as index:
            report = index_collection(index, collection, settings, rebuild=rebuild, progress=index_progress)
            results = evaluate_index(index, collection, distances, ranking, query_progress)
            stored = index.store.meta()["settings"]
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
