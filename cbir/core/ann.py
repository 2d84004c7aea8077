"""Approximate candidates for the quadratic-form distance: a projection of the transformed vectors and a graph.

Because A = L L^T, the QFD between two histograms is the Euclidean distance between their transformed vectors
(:meth:`cbir.core.backends.QuadraticFormSearch.transform`), so a Euclidean nearest-neighbour index applies
(Skopal et al., EDBT 2011). Here the transformed vectors (1,280 values in the default layout) are projected on
their first ``PROJECTED`` principal axes, and the projections go into a navigable small-world graph (HNSW,
Malkov and Yashunin 2018) from usearch, as float16. A query takes ``candidates`` of its nearest projections from
the graph, and those are re-scored exactly (filter and refine, Seidl and Kriegel, VLDB 1997): the distances
reported are exact, only an image the graph misses can be missing from a ranking (recall, docs/scaling.md).

Why these choices (measured on synthetic collections made from real histograms, docs/scaling.md): with 128 axes,
100 candidates and a search width of 400, recall@10 is 0.9965 at 1M images, a query about 4 ms; faiss-cpu's HNSW
gave the same recall for the same width, and usearch views its graph straight from a part of one file (one file can
then be replaced atomically, and opening costs no copy), keys it by 64-bit image ids and removes entries in place,
which faiss's HNSW cannot.

Pure: arrays in and out; the graph is written to a file and viewed from a buffer the caller provides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import OnExactSearch

PROJECTED = 128  # principal axes kept
CONNECTIVITY = 16  # graph edges per node (usearch's default; 32 cost 1.5x the memory for little recall)
EXPANSION_ADD = 128  # breadth of the search that places a new node
CANDIDATES = 100  # projections re-scored exactly per query (at least; more when more results are asked)
# Breadth of a query's search through the graph (at least the candidates). At 10M (bench_scale.py, load < 1) 400 gave
# recall@10 0.986 with one query of 200 at 0 (the search stuck in a far region), 800 gave 0.994, worst 0.7, for
# 0.6 ms more (8.2 against 7.5 ms median); at 1M 0.9975 against 0.9965, 4.8 against 3.9 ms.
WIDTH = 800
SCALAR = "f16"


def fit_projection(sample: np.ndarray, dimension: int = PROJECTED) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes of transformed vectors.

    Parameters
    ----------
    sample : (n, D) float, transformed vectors (a sample of the collection)
    dimension : axes kept (at most D)

    Returns
    -------
    mean : (D,) float32
    axes : (D, d) float32, orthonormal columns, the largest variance first; d = min(dimension, D)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> mean, axes = fit_projection(rng.normal(size=(500, 6)) * [5, 1, 1, 1, 1, 0.1], 2)
    >>> axes.shape, round(abs(float(axes[0, 0])), 2)
    ((6, 2), 1.0)
    """
    sample = np.asarray(sample, np.float64)
    if sample.ndim != 2 or len(sample) < 2:
        raise ValueError(f"sample must be (n >= 2, D), got shape {sample.shape}")
    mean = sample.mean(0)
    centred = sample - mean
    values, vectors = np.linalg.eigh(centred.T @ centred)
    keep = np.argsort(values)[::-1][: min(dimension, sample.shape[1])]
    return mean.astype(np.float32), np.ascontiguousarray(vectors[:, keep], np.float32)


def project(transformed: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """``(n, D)`` transformed vectors -> ``(n, d) float32`` projections (Euclidean distances shrink, never grow)."""
    return np.ascontiguousarray((np.asarray(transformed, np.float32) - mean) @ axes, np.float32)


def available() -> bool:
    """Whether the graph library (usearch, the ``cbir[scale]`` extra) is installed."""
    try:
        import usearch.index  # noqa: F401
    except ImportError:
        return False
    return True


def _usearch():
    try:
        from usearch.index import Index
    except ImportError:
        raise ImportError("the vector index needs usearch: pip install 'cbir[scale]'") from None
    return Index


@dataclass
class Graph:
    """The graph of projected vectors, keyed by image id (int64). Make one with :meth:`new`, :meth:`view` or
    :meth:`load`."""

    index: object

    @classmethod
    def new(cls, dimension: int) -> Graph:
        return cls(_usearch()(ndim=dimension, metric="l2sq", dtype=SCALAR, connectivity=CONNECTIVITY,
                              expansion_add=EXPANSION_ADD))

    @classmethod
    def view(cls, buffer: memoryview) -> Graph:
        """The graph serialised in ``buffer``, used in place (read-only: the buffer must outlive it)."""
        return cls(_usearch().restore(buffer, view=True, enable_key_lookups=False))

    @classmethod
    def load(cls, buffer: memoryview) -> Graph:
        """The graph serialised in ``buffer``, copied into memory so it can change."""
        return cls(_usearch().restore(buffer, view=False))

    def __len__(self) -> int:
        return len(self.index)

    @property
    def dimension(self) -> int:
        return self.index.ndim

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int = 1) -> None:
        """Add ``vectors (n, d)`` under ``keys (n,) int64`` (keys not already in the graph)."""
        if len(keys):
            self.index.add(np.asarray(keys, np.uint64), np.asarray(vectors, np.float32), threads=threads)

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self.index.remove(np.asarray(keys, np.uint64))

    def search(self, vector: np.ndarray, count: int, width: int = WIDTH) -> np.ndarray:
        """Keys of about the ``count`` nearest entries to ``vector (d,)``, nearest first: ``(<= count,) int64``."""
        self.index.expansion_search = max(width, count)
        return self.index.search(np.asarray(vector, np.float32), count, threads=1).keys.astype(np.int64)

    def save(self, path: str) -> None:
        """Write the graph to ``path`` (usearch's format)."""
        self.index.save(path)


class ApproximateQuadraticFormSearch(OnExactSearch):
    """The quadratic-form search with candidates from a graph over projections, re-scored exactly.

    ``exact`` is a factorised :class:`cbir.core.backends.QuadraticFormSearch` whose ``vectors[rows]`` gives raw
    histograms by row of ``ids``; ``ids (N,) int64`` (ascending) are the keys of ``graph``. :meth:`search` and
    :meth:`search_points` have the signatures of the exact search's and return the same kind of result: rows of
    ``ids`` and exact float64 distances.
    """

    def __init__(self, exact, ids: np.ndarray, mean: np.ndarray, axes: np.ndarray, graph: Graph,
                 candidates: int = CANDIDATES, width: int = WIDTH) -> None:
        super().__init__(exact)
        self.ids, self.mean, self.axes, self.graph = ids, mean, axes, graph
        self.candidates, self.width = candidates, width

    def search(self, queries: np.ndarray, n: int = 10) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Rank for each query (``(Q, D)`` raw histograms) its ``n`` best: lists of Q ``(<= n,) int64`` rows of
        ``ids`` and ``(<= n,) float64`` exact distances. ``n`` must be positive (a full ranking is the exact
        search's)."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        return self._refine(queries, self.exact.transform(queries), self.exact.exact_of, n)

    def search_points(self, points: np.ndarray, n: int = 10) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """As :meth:`search` for ``points (Q, D)`` of the transformed space (a query point of several examples or
        of relevance feedback, :meth:`cbir.core.backends.QuadraticFormSearch.search_points`)."""
        points = np.atleast_2d(np.asarray(points, np.float64))
        return self._refine(points, points.astype(np.float32), self.exact.exact_to_point_of, n)

    def _refine(self, queries, targets, exact_distances, n):
        """Candidates of each ``targets`` row (float32, transformed space) from the graph, the best ``2n`` of them
        by float32 distance re-scored by ``exact_distances(histograms, query)``."""
        if n < 1:
            raise ValueError("an approximate search ranks the n best (n >= 1); use the exact search for all")
        count = max(self.candidates, 2 * n)
        keep = max(2 * n, n + 32)  # re-scored in float64: the best by float32 distance, with room for rounding
        projected = project(targets, self.mean, self.axes)
        results_rows, results_distances = [], []
        for query, target, vector in zip(queries, targets, projected):
            keys = self.graph.search(vector, count, self.width)
            rows = np.searchsorted(self.ids, keys)
            rows = np.unique(rows[(rows < len(self.ids)) & (self.ids[np.minimum(rows, len(self.ids) - 1)] == keys)])
            histograms = self.exact.vectors[rows]
            if len(rows) > keep:
                differences = self.exact.transform(histograms) - target
                best = np.argpartition(np.einsum("nd,nd->n", differences, differences), keep - 1)[:keep]
                rows, histograms = rows[best], histograms[best]
            distances = exact_distances(histograms, query)
            order = np.lexsort((rows, distances))[:n]
            results_rows.append(rows[order])
            results_distances.append(distances[order])
        return results_rows, results_distances
