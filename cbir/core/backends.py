"""Search back-ends over stored histograms. Every back-end has the same ``search(queries, n)`` signature.

``QuadraticFormSearch`` is the engine: vectors are transformed once (y = L^T x^p per block, A = L L^T), a query
is one matrix-vector product over all of them in float32, and the best candidates are then re-scored exactly in
float64, so the distances and the order reported equal the naive formula's. A query can also be any point of the
transformed space (several examples, relevance feedback: :mod:`cbir.core.feedback`): the same product, re-scored
exactly as the Euclidean distance there. Full rankings of many queries at once (retrieval experiments) are one
blocked float64 product, with near-ties re-scored exactly. The others (naive QFD, L1, chi-squared, histogram
intersection) are references and comparisons over the same histograms.
"""

import hashlib

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


def row_chunks(matrix, rows=1 << 16):
    """``matrix`` as consecutive views of at most ``rows`` rows (transforming a chunk at a time bounds the
    temporaries)."""
    return (matrix[start : start + rows] for start in range(0, len(matrix), rows))


def _smallest(values, m):
    """Indices of the ``m`` smallest of ``values (N,)``, in no particular order: ``(min(m, N),) int64``.

    A strided sample of at least 64 m values gives a threshold first: the m-th smallest of a subset is never below
    the m-th smallest of the whole, so the values at or below it include the m smallest, and only those few
    (about 64 m) are partitioned: over a million values, far faster than one argpartition.
    """
    total = len(values)
    if m >= total:
        return np.arange(total)
    stride = total // (64 * m)
    if stride > 1:
        threshold = np.partition(values[::stride], m - 1)[m - 1]
        candidates = np.flatnonzero(values <= threshold)
    else:
        candidates = np.arange(total)
    if len(candidates) > m:
        candidates = candidates[np.argpartition(values[candidates], m - 1)[:m]]
    return candidates


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


def _weights(weights, blocks):
    """Block weights as a ``(blocks,) float64`` array (all ones when None)."""
    if weights is None:
        return np.ones(blocks)
    weights = np.asarray(weights, np.float64).ravel()
    if len(weights) != blocks or not (weights > 0).all():
        raise ValueError(f"weights must be {blocks} positive numbers (one per block), got {weights.tolist()}")
    return weights


class QuadraticFormSearch(_Search):
    """Exact quadratic-form distance over blocks b with weights w_b:
    d = sqrt(sum_b w_b (f(x_b) - f(y_b))^T A (f(x_b) - f(y_b))), f = shares ** power."""

    def __init__(self, vectors, similarity, factor_l, power, blocks, weights=None):
        """Keeps what it is given; use :meth:`build` or :meth:`from_chunks`, which factorise A and transform."""
        self.vectors = vectors
        self.similarity = similarity
        # float32 for the candidate products; float64 for exact distances in the transformed space
        self.factor = np.asarray(factor_l, np.float32)
        self.factor64 = np.asarray(factor_l, np.float64)
        self.power = power
        self.blocks = blocks
        self.weights = _weights(weights, blocks)
        # sqrt(w_b) per block, applied to the transformed vectors; None when every weight is 1
        self._block_scale = None if (self.weights == 1).all() else np.sqrt(self.weights).astype(np.float32)[:, None]
        self.transformed = None
        self._half_norms = None

    @classmethod
    def build(cls, vectors, similarity, *, power=1.0, blocks=1, weights=None, chunk=1 << 16):
        """Transform ``vectors (N, B*K) float32`` once; ``similarity (K, K)`` is A, PSD; ``weights (B,)`` or None."""
        vectors = np.asarray(vectors, dtype=np.float32)
        k = len(similarity)
        if vectors.ndim != 2 or vectors.shape[1] != blocks * k:
            raise ValueError(f"vectors must be (N, {blocks} * {k}), got {vectors.shape}")
        return cls.from_chunks(row_chunks(vectors, chunk), len(vectors), vectors, similarity, power=power,
                               blocks=blocks, weights=weights)

    @classmethod
    def from_chunks(cls, chunks, capacity, vectors, similarity, *, power=1.0, blocks=1, weights=None):
        """Like :meth:`build`, with the raw vectors read as an iterable of ``(n, B*K)`` row chunks (at most
        ``capacity`` rows in all), so the raw matrix never needs to be in memory at once.

        ``vectors`` gives the same rows again on demand: it needs ``len()`` (once the chunks are consumed) and row
        indexing, ``vectors[rows]``. The exact re-scoring reads a few candidate rows per query from it, so it can
        be a view of the database instead of a matrix in memory.
        """
        search = cls.factorised(vectors, similarity, power=power, blocks=blocks, weights=weights)
        search.transform_chunks(chunks, capacity)
        return search

    @classmethod
    def factorised(cls, vectors, similarity, *, power=1.0, blocks=1, weights=None):
        """A = L L^T factorised, nothing transformed yet: :meth:`use_transformed` completes it (from a cache)."""
        similarity = np.asarray(similarity, np.float64)
        return cls(vectors, similarity, factor(similarity), power, blocks, weights)

    def transform_chunks(self, chunks, capacity):
        """Transform every stored vector, given as row chunks (at most ``capacity`` rows), and search them."""
        transformed = np.empty((capacity, self.blocks * len(self.factor)), np.float32)
        filled = 0
        for part in chunks:
            if filled + len(part) > capacity:
                raise ValueError(f"the chunks hold more than capacity={capacity} rows")
            self.transform(part, out=transformed[filled : filled + len(part)])
            filled += len(part)
        self.use_transformed(transformed[:filled])

    def use_transformed(self, transformed):
        """Search ``transformed (N, B*K) float32``, what :meth:`transform` gives for the N stored vectors (kept
        from an earlier :meth:`from_chunks` with the same :meth:`transform_key`)."""
        if transformed.dtype != np.float32 or transformed.shape[1:] != (self.blocks * len(self.factor),):
            raise ValueError(f"transformed must be (N, {self.blocks * len(self.factor)}) float32, got "
                             f"{transformed.shape} {transformed.dtype}")
        half_norms = 0.5 * np.einsum("nd,nd->n", transformed, transformed)
        if not np.isfinite(half_norms).all():  # NaN or infinity would silently break the candidate selection
            raise ValueError("transformed vectors must be finite")
        self.transformed, self._half_norms = transformed, half_norms

    def transform_key(self):
        """Names the transform: equal keys transform the same histograms to the same float32 values (str)."""
        digest = hashlib.sha256(b"cbir-qfd-transform-1")
        for part in (self.factor, np.float64(self.power), np.int64(self.blocks), self.weights):
            digest.update(np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()

    QUERY_GROUP = 16  # queries ranked together: one pass over the matrix (a GEMM) serves all of them

    def search(self, queries, n=10):
        """Rank the stored vectors for each query; see :meth:`_Search.search`. Queries are ranked in groups, each
        group one matrix product over the stored vectors (memory traffic is the cost, not arithmetic)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        total = len(self.vectors)
        n = min(n, total) if n else total
        results = []
        for start in range(0, len(queries), self.QUERY_GROUP):
            group = queries[start : start + self.QUERY_GROUP]
            # ||y_i - q||^2 / 2 - ||q||^2 / 2 = ||y_i||^2 / 2 - y_i . q orders the rows as the distance does.
            scores = self.transform(group) @ self.transformed.T if n < total else None
            for j, query in enumerate(group):
                if n == total:
                    rows = np.arange(total)
                else:
                    # Candidates from the float32 product, with room for rounding; then exact float64 scores.
                    rows = _smallest(np.subtract(self._half_norms, scores[j], out=scores[j]), max(2 * n, n + 32))
                d = self.exact(rows, query)
                order = np.lexsort((rows, d))[:n]
                results.append((rows[order], d[order]))
        return [r[0] for r in results], [r[1] for r in results]

    def search_points(self, points, n=10):
        """Rank the stored vectors by their Euclidean distance to each of ``points (Q, B*K)``, points of the
        transformed space (what :meth:`transform64` gives for histograms), best first; see :meth:`_Search.search`.

        This is the quadratic-form distance to a query that need not be a histogram (a blend of several examples,
        moved by relevance feedback): the same one matrix product as :meth:`search`, the candidates re-scored
        exactly in float64 (:meth:`exact_to_point`).
        """
        points = np.atleast_2d(np.asarray(points, np.float64))
        total = len(self.vectors)
        n = min(n, total) if n else total
        results = []
        for start in range(0, len(points), self.QUERY_GROUP):
            group = points[start : start + self.QUERY_GROUP]
            scores = group.astype(np.float32) @ self.transformed.T if n < total else None
            for j, point in enumerate(group):
                if n == total:
                    rows = np.arange(total)
                else:
                    rows = _smallest(np.subtract(self._half_norms, scores[j], out=scores[j]), max(2 * n, n + 32))
                d = self.exact_to_point(rows, point)
                order = np.lexsort((rows, d))[:n]
                results.append((rows[order], d[order]))
        return [r[0] for r in results], [r[1] for r in results]

    def full_rankings(self, queries=None, *, points=None, rows=None, block=256):
        """Full rankings of many queries at once, as :meth:`search` (``n=0``) or :meth:`search_points` would
        give them one by one, but as one blocked float64 matrix product: what retrieval experiments need.

        Parameters
        ----------
        queries : (Q, B*K) raw histograms, or None when ``points`` are given
        points : (Q, B*K) points of the transformed space (see :meth:`search_points`)
        rows : (M,) int, the stored rows to rank (default all)
        block : queries per matrix product (bounds the memory: block x M float64)

        Yields
        ------
        (M,) int64 for each query, rows ranked best first, in exactly the order of the exact float64 distances
        (ties by row). The product ||y||^2 + ||q||^2 - 2 y.q differs from the exact distance by at most a few
        ulps of ||y|| + ||q|| squared; wherever neighbouring values lie closer than a generous bound on that, the
        rows between are re-scored exactly and ordered by the exact value, so the order is the exact one.
        """
        if (queries is None) == (points is None):
            raise ValueError("give either queries (raw histograms) or points (of the transformed space)")
        rows = np.arange(len(self.vectors)) if rows is None else np.asarray(rows, np.int64)
        stored = self.transform64(self.vectors[rows])
        stored_sq = np.einsum("nd,nd->n", stored, stored)
        if points is None:  # as search() takes them: float32 histograms
            queries = np.atleast_2d(np.asarray(queries, np.float32))
        targets = self.transform64(queries) if points is None else np.atleast_2d(np.asarray(points, np.float64))
        # |rounding| of the product and of the exact float64 formulas, bounded generously (measured 1e-15 relative)
        tolerance = 8 * stored.shape[1] * np.finfo(np.float64).eps
        largest = np.sqrt(stored_sq.max(initial=0.0))
        for start in range(0, len(targets), block):
            group = targets[start : start + block]
            group_sq = np.einsum("nd,nd->n", group, group)
            d2 = stored_sq[None, :] - 2 * (group @ stored.T)
            d2 += group_sq[:, None]
            order = np.argsort(d2, axis=1, kind="stable")
            gaps = np.diff(np.take_along_axis(d2, order, 1), axis=1)
            bound = 2 * tolerance * (np.sqrt(group_sq) + largest) ** 2
            for j in range(len(group)):
                close = np.flatnonzero(gaps[j] <= bound[j])
                if len(close):
                    target = group[j] if points is not None else queries[start + j]
                    self._order_exactly(order[j], close, rows, target, points is not None)
                yield rows[order[j]]

    def _order_exactly(self, order, close, rows, target, is_point):
        """Re-order in place each run of ``order`` whose neighbouring gaps (indices ``close``) are too small to
        trust, by the exact distance, ties by row."""
        breaks = np.flatnonzero(np.diff(close) > 1)
        for first, last in zip(np.r_[close[0], close[breaks + 1]], np.r_[close[breaks], close[-1]] + 1):
            run = order[first : last + 1]
            stored_rows = rows[run]
            exact = (self.exact_to_point(stored_rows, target) if is_point else self.exact(stored_rows, target))
            order[first : last + 1] = run[np.lexsort((stored_rows, exact))]

    def transform64(self, x):
        """``(M, B*K)`` raw shares -> ``(M, B*K) float64`` points of the transformed space, where the Euclidean
        distance is the QFD (the exact counterpart of :meth:`transform`)."""
        x = np.atleast_2d(x)
        k = len(self.factor64)
        y = (self._shares(x, np.float64).reshape(len(x) * self.blocks, k) @ self.factor64)
        y = y.reshape(len(x), self.blocks, k)
        y *= np.sqrt(self.weights)[:, None]
        return y.reshape(len(x), self.blocks * k)

    def exact_to_point(self, rows, point):
        """Exact float64 Euclidean distance, in the transformed space, from some stored rows to ``point``:
        ``(len(rows),) float64``."""
        diff = self.transform64(self.vectors[rows]) - np.asarray(point, np.float64)
        return np.sqrt(np.einsum("nd,nd->n", diff, diff))

    def transform(self, x, out=None):
        """``(M, B*K)`` raw shares -> ``(M, B*K) float32`` vectors whose Euclidean distance is the QFD (written into
        ``out`` when given)."""
        # Only candidates come from these float32 values; the distances reported are re-scored in float64.
        f = self._shares(x, np.float32)
        k = len(self.factor)
        y = np.empty((len(x), self.blocks * k), np.float32) if out is None else out
        # One (M*B, K) x (K, K) product: a stack of M (B, K) products is no single GEMM, and much slower
        # (docs/benchmarks.md, profile_open.py).
        np.matmul(f.reshape(len(x) * self.blocks, k), self.factor, out=y.reshape(len(x) * self.blocks, k))
        if self._block_scale is not None:
            y.reshape(len(x), self.blocks, k)[:] *= self._block_scale
        return y

    def exact(self, rows, query):
        """Naive float64 d for some stored rows against one query: ``(len(rows),) float64``."""
        k = len(self.similarity)
        diff = (self._shares(self.vectors[rows], np.float64) - self._shares(query, np.float64))
        # One 2-D product over every (row, block): numpy's stacked (n, B, K) @ (K, K) is one small product per row,
        # slower (docs/benchmarks.md, profile_open.py item 5). Two einsum operands: no generic loop.
        diff = diff.reshape(len(rows) * self.blocks, k)
        per_block = np.einsum("ik,ik->i", diff @ self.similarity, diff).reshape(len(rows), self.blocks)
        return np.sqrt(np.maximum(per_block @ self.weights, 0))

    def _shares(self, v, dtype):
        """Shares raised to the power, as ``dtype``. cbrt for the default 1/3: within 1 ulp of ``** (1/3)`` and
        faster (docs/benchmarks.md, profile_open.py)."""
        v = np.asarray(v, dtype)
        return v if self.power == 1 else np.cbrt(v) if self.power == 1 / 3 else v ** dtype(self.power)


class NaiveQuadraticFormSearch(_Search):
    """The formula as written, one pair at a time: the reference the fast search is tested against."""

    def __init__(self, vectors, similarity, *, power=1.0, blocks=1, weights=None):
        self.vectors, self.similarity, self.power, self.blocks = vectors, similarity, power, blocks
        self.weights = _weights(weights, blocks)

    def distances(self, query):
        k = len(self.similarity)
        q = np.asarray(query, np.float64) ** self.power
        out = np.empty(len(self.vectors))
        for i, x in enumerate(self.vectors):
            diff = (np.asarray(x, np.float64) ** self.power - q).reshape(self.blocks, k)
            out[i] = np.sqrt(max(sum(w * (d @ self.similarity @ d) for w, d in zip(self.weights, diff)), 0.0))
        return out


def _column_weights(weights, blocks, dimension):
    """Block weights repeated over each block's K columns: ``(D,) float64`` (sums are taken in float64)."""
    return np.repeat(_weights(weights, blocks), dimension // blocks)


class L1Search(_Search):
    """Sum of absolute differences of the shares (over all blocks, each block's sum times its weight)."""

    def __init__(self, vectors, blocks=1, weights=None):
        self.vectors = np.asarray(vectors, np.float32)
        self.columns = _column_weights(weights, blocks, self.vectors.shape[1])

    def distances(self, query):
        return np.abs(self.vectors - query) @ self.columns


class ChiSquaredSearch(_Search):
    """Chi-squared distance 1/2 sum (x - y)^2 / (x + y), empty bins ignored (each block's sum times its weight)."""

    def __init__(self, vectors, blocks=1, weights=None):
        self.vectors = np.asarray(vectors, np.float32)
        self.columns = _column_weights(weights, blocks, self.vectors.shape[1])

    def distances(self, query):
        total = self.vectors + query
        diff = (self.vectors - query) ** 2
        terms = np.divide(diff, total, out=np.zeros_like(diff), where=total > 0)
        return 0.5 * (terms @ self.columns)


class IntersectionSearch(_Search):
    """Histogram intersection (Swain and Ballard 1991) as a distance: sum_b w_b (1 - sum min(x_b, y_b))."""

    def __init__(self, vectors, blocks=1, weights=None):
        self.vectors = np.asarray(vectors, np.float32)
        self.total = float(_weights(weights, blocks).sum())
        self.columns = _column_weights(weights, blocks, self.vectors.shape[1])

    def distances(self, query):
        return self.total - np.minimum(self.vectors, query) @ self.columns


# The distances an index can rank by: the quadratic form (the engine) and the comparisons over the same histograms.
COMPARISONS = {"l1": L1Search, "chi2": ChiSquaredSearch, "intersection": IntersectionSearch}
DISTANCES = ("qfd", *COMPARISONS)
