"""Search back-ends over stored histograms. Every back-end has the same ``search(queries, n)`` signature.

``QuadraticFormSearch`` is the engine: vectors are transformed once (y = L^T x^p per block, A = L L^T), a query
is one matrix-vector product over all of them in float32, and the best candidates are then re-scored exactly in
float64, so the distances and the order reported equal the naive formula's. The others (naive QFD, L1,
chi-squared, histogram intersection) are references and comparisons over the same histograms.
"""

import numpy as np

from .qfd import factor


def _top(distances, n):
    """Indices of the n smallest distances, ordered by (distance, index): ``(n,) int64``."""
    n = min(n, len(distances)) if n else len(distances)
    if n < len(distances):
        candidates = np.argpartition(distances, n - 1)[:n]
    else:
        candidates = np.arange(len(distances))
    return candidates[np.lexsort((candidates, distances[candidates]))]


class _Search:
    """Shared plumbing: ``search`` ranks every query against the stored vectors with ``distances``."""

    def search(self, queries, n=10):
        """Rank the stored vectors for each query.

        Parameters
        ----------
        queries : (Q, D) float, raw histograms (shares per block)
        n : int, results per query; 0 for the full ranking

        Returns
        -------
        indices : list of Q ``(n,) int64`` arrays, rows of the stored matrix, best first
        distances : list of Q ``(n,) float64`` arrays
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        results = [self._search_one(q, n) for q in queries]
        return [r[0] for r in results], [r[1] for r in results]

    def _search_one(self, query, n):
        d = self.distances(query)
        order = _top(d, n)
        return order, d[order]


class QuadraticFormSearch(_Search):
    """Exact quadratic-form distance d = sqrt((f(x) - f(y))^T A_blocks (f(x) - f(y))), f = shares ** power."""

    def __init__(self, transformed, squared_norms, vectors, similarity, power, blocks):
        self.transformed = transformed
        self.squared_norms = squared_norms
        self.vectors = vectors
        self.similarity = similarity
        self.power = power
        self.blocks = blocks
        self.factor = factor(similarity).astype(np.float32)

    @classmethod
    def build(cls, vectors, similarity, *, power=1.0, blocks=1, chunk=1 << 16):
        """Transform ``vectors (N, B*K) float32`` once; ``similarity (K, K)`` is A, PSD."""
        vectors = np.asarray(vectors, dtype=np.float32)
        k = len(similarity)
        if vectors.ndim != 2 or vectors.shape[1] != blocks * k:
            raise ValueError(f"vectors must be (N, {blocks} * {k}), got {vectors.shape}")
        search = cls(None, None, vectors, np.asarray(similarity, np.float64), power, blocks)
        transformed = np.empty_like(vectors)
        for start in range(0, len(vectors), chunk):
            transformed[start : start + chunk] = search.transform(vectors[start : start + chunk])
        search.transformed = transformed
        search.squared_norms = np.einsum("nd,nd->n", transformed, transformed)
        return search

    def transform(self, x):
        """``(M, B*K)`` raw shares -> ``(M, B*K) float32`` vectors whose Euclidean distance is the QFD."""
        x = np.asarray(x, dtype=np.float32)
        f = x if self.power == 1 else np.power(x, np.float32(self.power))
        k = len(self.factor)
        return (f.reshape(len(x), self.blocks, k) @ self.factor).reshape(len(x), self.blocks * k)

    def exact(self, rows, query):
        """Naive float64 d for some stored rows against one query: ``(len(rows),) float64``."""
        f = lambda v: np.asarray(v, np.float64) ** self.power  # noqa: E731
        k = len(self.similarity)
        diff = (f(self.vectors[rows]) - f(query)).reshape(len(rows), self.blocks, k)
        return np.sqrt(np.maximum(np.einsum("nbk,kl,nbl->n", diff, self.similarity, diff), 0))

    def approximate_squared(self, query):
        y = self.transform(query[None])[0]
        return np.maximum(self.squared_norms - 2 * (self.transformed @ y) + y @ y, 0)

    def _search_one(self, query, n):
        total = len(self.vectors)
        n = min(n, total) if n else total
        if n == total:
            rows = np.arange(total)
        else:
            # Candidates from the float32 product, with room for rounding; then exact float64 scores.
            rows = _top(self.approximate_squared(query), min(total, max(2 * n, n + 32)))
        d = self.exact(rows, query)
        order = np.lexsort((rows, d))[:n]
        return rows[order], d[order]


class NaiveQuadraticFormSearch(_Search):
    """The formula as written, one pair at a time: the reference the fast search is tested against."""

    def __init__(self, vectors, similarity, *, power=1.0, blocks=1):
        self.vectors, self.similarity, self.power, self.blocks = vectors, similarity, power, blocks

    def distances(self, query):
        k = len(self.similarity)
        q = np.asarray(query, np.float64) ** self.power
        out = np.empty(len(self.vectors))
        for i, x in enumerate(self.vectors):
            diff = (np.asarray(x, np.float64) ** self.power - q).reshape(self.blocks, k)
            out[i] = np.sqrt(max(sum(d @ self.similarity @ d for d in diff), 0.0))
        return out


class L1Search(_Search):
    """Sum of absolute differences of the shares (over all blocks)."""

    def __init__(self, vectors):
        self.vectors = np.asarray(vectors, np.float32)

    def distances(self, query):
        return np.abs(self.vectors - query).sum(1, dtype=np.float64)


class ChiSquaredSearch(_Search):
    """Chi-squared distance 1/2 sum (x - y)^2 / (x + y), empty bins ignored."""

    def __init__(self, vectors):
        self.vectors = np.asarray(vectors, np.float32)

    def distances(self, query):
        total = self.vectors + query
        diff = (self.vectors - query) ** 2
        return 0.5 * np.divide(diff, total, out=np.zeros_like(diff), where=total > 0).sum(1, dtype=np.float64)


class IntersectionSearch(_Search):
    """Histogram intersection (Swain and Ballard 1991) as a distance: blocks - sum min(x, y)."""

    def __init__(self, vectors, blocks=1):
        self.vectors = np.asarray(vectors, np.float32)
        self.blocks = blocks

    def distances(self, query):
        return self.blocks - np.minimum(self.vectors, query).sum(1, dtype=np.float64)
