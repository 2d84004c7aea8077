"""Weighted k-means (Lloyd) with deterministic greedy k-means++ seeding: a pure numeric function.

Running k-means over a few thousand weighted colour bins instead of every pixel is what makes the quantization
core far faster than ``cv2.kmeans`` over all pixels (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike

from .blas import one_blas_thread


@dataclass(frozen=True)
class KMeansResult:
    """centres : (k, D) float32; labels : (N,) int32; inertia : float (weighted sum of squared distances);
    iterations : int (Lloyd iterations run)."""

    centres: np.ndarray
    labels: np.ndarray
    inertia: float
    iterations: int


def squared_distances(points: ArrayLike, centres: ArrayLike) -> np.ndarray:
    """Squared Euclidean distances.

    Parameters
    ----------
    points : (N, D) float
    centres : (K, D) float

    Returns
    -------
    d2 : (N, K) same float dtype as ``points``, clamped at 0
    """
    points = np.asarray(points)
    centres = np.asarray(centres, dtype=points.dtype)
    d2 = (points * points).sum(1)[:, None] - 2 * points @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d2, 0, out=d2)


def nearest_centre(points: ArrayLike, centres: ArrayLike, chunk: int = 1 << 18, return_distance: bool = False
                   ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre for every point, in chunks to bound memory.

    Parameters
    ----------
    points : (N, D) float
    centres : (K, D) float
    return_distance : bool, also return the squared distance to that centre

    Returns
    -------
    labels : (N,) int32, those of OpenCV's ``cv2.batchDistance`` (float32), however they are found
    d2 : (N,) float32, only if ``return_distance``
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    centres = np.ascontiguousarray(centres, dtype=np.float32)
    if (not return_distance and len(points) >= PRODUCTS_FROM and len(centres) >= 2
            and points.shape[1] <= PRODUCTS_MAX_DIM):
        return _nearest_by_products(points, centres)
    labels = np.empty(len(points), dtype=np.int32)
    d2 = np.empty(len(points), dtype=np.float32)
    for start in range(0, len(points), chunk):
        # OpenCV's brute-force matcher: about twice as fast as numpy's matmul + argmin here.
        dist, nearest = cv2.batchDistance(points[start : start + chunk], centres, cv2.CV_32F,
                                          normType=cv2.NORM_L2SQR, K=1)
        labels[start : start + chunk] = nearest.ravel()
        d2[start : start + chunk] = dist.ravel()
    return (labels, d2) if return_distance else labels


PRODUCTS_FROM = 1 << 14  # points from which products and a check beat cv2.batchDistance (a codebook's lookup
# table has 262,144; tests/benchmarks/bench_first_index.py prints its time)
PRODUCTS_MAX_DIM = 8  # colour spaces; the check's tolerance grows with the dimension
_PRODUCT_ROWS = 1024  # rows per product


def _two_smallest(points, centres, rows):
    """For each block of ``rows`` float32 points: ``(start, nearest, first, second)``, the nearest of the float32
    ``centres`` and the two smallest of ``|c|^2 - 2 p.c`` (the squared distance less ``|p|^2``), from one matrix
    product per block: ``|p - c|^2 = |p|^2 + [p, 1] @ [-2 c; |c|^2]``."""
    k = len(centres)
    product = np.concatenate([-2 * centres.T, (centres * centres).sum(1)[None, :]]).astype(np.float32)
    padded = np.ones((min(len(points), rows), points.shape[1] + 1), np.float32)
    offsets = np.arange(len(padded)) * k  # of each row in a flattened block
    for start in range(0, len(points), len(padded)):
        n = min(len(padded), len(points) - start)
        padded[:n, :-1] = points[start : start + n]
        scores = padded[:n] @ product
        nearest = scores.argmin(1)
        flat = scores.ravel()
        at = offsets[:n] + nearest
        first = flat[at]
        flat[at] = np.inf
        # The second smallest by argmin and a gather: numpy's argmin along rows is ~4x faster than its min.
        yield start, nearest, first, flat[offsets[:n] + scores.argmin(1)]


def _nearest_by_products(points, centres):
    """:func:`nearest_centre`'s labels from ``|c|^2 - 2 p.c`` (one matrix product per block of rows) and the two
    smallest of each row. A point whose two nearest centres are too close to tell apart at float32 precision is
    given ``cv2.batchDistance``'s answer, so every label is the one batchDistance gives.

    Why the check is enough (u = 2**-24, D dimensions, R = |p|^2 + max |c|^2): the product's rounding moves each
    ``|c|^2 - 2 p.c`` by at most (D + 1) u (|p|^2 + 3 max |c|^2), and batchDistance's float32 sums move each squared
    distance by at most (D + 3) u times itself, itself at most 2 R. A gap between the two smallest above
    10 (D + 3) u R therefore leaves batchDistance no other choice; the tolerance is twice that.
    """
    dims = centres.shape[1]
    largest = float((centres.astype(np.float64) ** 2).sum(1).max())
    tolerance = 20 * (dims + 3) * 2.0**-24
    labels = np.empty(len(points), np.int32)
    unsure = []
    with one_blas_thread():
        for start, nearest, first, second in _two_smallest(points, centres, _PRODUCT_ROWS):
            block = points[start : start + len(nearest)]
            bound = tolerance * (np.einsum("ij,ij->i", block, block, dtype=np.float64) + largest)
            labels[start : start + len(nearest)] = nearest
            unsure.append(start + np.flatnonzero(~(second - first > bound)))  # NaN gaps too
    unsure = np.concatenate(unsure)
    if len(unsure):
        labels[unsure] = cv2.batchDistance(points[unsure], centres, cv2.CV_32F, normType=cv2.NORM_L2SQR,
                                           K=1)[1].ravel()
    return labels


def kmeans_plusplus(points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator,
                    n_local_trials: int | None = None) -> np.ndarray:
    """Greedy weighted k-means++ seeding (Arthur & Vassilvitskii 2007, with the greedy local trials of
    scikit-learn): each new centre is the best of several candidates drawn with probability ~ weight * D^2.

    Parameters
    ----------
    points : (N, D) float
    weights : (N,) float, positive
    k : int, 1 <= k <= N
    rng : numpy.random.Generator

    Returns
    -------
    centre_index : (k,) int64, indices into ``points``
    """
    n_local_trials = n_local_trials or 2 + int(np.log(k))
    first = rng.choice(len(points), p=weights / weights.sum())
    chosen = [first]
    # Distances in float32 (half the memory traffic of float64; the draws only need them roughly), sums in float64.
    points = np.asarray(points, np.float32)
    weights = np.asarray(weights, np.float32)
    norms = (points * points).sum(1)  # squared_distances' terms, computed once instead of once per centre
    closest = np.maximum(norms - 2 * points @ points[first] + norms[first], 0)
    for _ in range(1, k):
        cumulative = np.cumsum(weights * closest, dtype=np.float64)
        total = cumulative[-1]
        if total <= 0:  # every remaining point coincides with a centre
            break
        candidates = np.searchsorted(cumulative, rng.random(n_local_trials) * total)
        candidates = np.minimum(candidates, len(points) - 1)
        d2 = norms[:, None] - 2 * points @ points[candidates].T + norms[candidates][None, :]
        cand_d2 = np.minimum(closest[:, None], np.maximum(d2, 0, out=d2))
        best = int(np.argmin((weights[:, None] * cand_d2).sum(0)))
        chosen.append(int(candidates[best]))
        closest = cand_d2[:, best]
    return np.asarray(chosen)


def weighted_kmeans(points: ArrayLike, weights: ArrayLike, k: int, *, seed: int = 0, n_init: int = 1,
                    init: ArrayLike | None = None, max_iter: int = 100, tol: float = 1e-4, matmul: bool = False
                    ) -> KMeansResult:
    """Weighted k-means: minimise sum_i w_i ||x_i - c(i)||^2 by Lloyd iterations.

    Parameters
    ----------
    points : (N, D) float
    weights : (N,) float or int, non-negative, positive sum
    k : int >= 1; more clusters than distinct points gives one cluster per distinct point
    seed : int, seeds the k-means++ draws; equal inputs and seed give equal results
    n_init : int, k-means++ restarts (seeds ``seed .. seed + n_init - 1``); the lowest inertia wins
    init : (k, D) float, starting centres instead of k-means++ (then ``n_init`` is ignored)
    max_iter : int, Lloyd iterations at most
    tol : float, stop when less than this fraction of the weight changes cluster
    matmul : bool, find nearest centres by matrix products (4x faster than ``cv2.batchDistance`` at 256 centres)
        from ``MATMUL_FROM`` centres on; the rounding differs, so a result can differ in its last digits

    Returns
    -------
    KMeansResult with ``centres : (k', D) float32``, k' <= min(k, distinct points); clusters that end up empty
    are dropped

    Examples
    --------
    >>> result = weighted_kmeans([[0.0], [1.0], [10.0], [11.0]], [1, 1, 1, 3], 2)
    >>> sorted(result.centres.ravel().tolist()), result.inertia
    ([0.5, 10.75], 1.25)
    """
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"points must be a non-empty (N, D) array, got shape {points.shape}")
    if weights.shape != (len(points),) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("weights must be (N,) non-negative with a positive sum")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if init is not None:
        return _lloyd(points, weights, np.asarray(init, dtype=np.float64), max_iter, tol, matmul)
    runs = []
    for run in range(max(1, n_init)):
        rng = np.random.default_rng(seed + run)
        seeds = kmeans_plusplus(points, weights, int(min(k, len(points))), rng)
        runs.append(_lloyd(points, weights, points[seeds], max_iter, tol, matmul))
    return min(runs, key=lambda result: result.inertia)


MATMUL_FROM = 32  # centres from which a matrix product beats cv2.batchDistance (4x at 256 centres)
_ROWS = 256  # rows per product: small enough that OpenBLAS keeps to one thread (its idle threads spin)


def _two_nearest(points, centres, matmul=False):
    """Labels, distance to the nearest and distance to the second nearest centre (float32, K >= 2)."""
    if not matmul or len(centres) < MATMUL_FROM:
        dist, nearest = cv2.batchDistance(points, centres, cv2.CV_32F, normType=cv2.NORM_L2, K=2)
        return nearest[:, 0].copy(), dist[:, 0].copy(), dist[:, 1].copy()
    labels = np.empty(len(points), np.int32)
    first = np.empty(len(points), np.float32)
    second = np.empty(len(points), np.float32)
    for start, nearest, low, next_low in _two_smallest(points, centres, _ROWS):
        end = start + len(nearest)
        labels[start:end], first[start:end], second[start:end] = nearest, low, next_low
    norms = np.einsum("ij,ij->i", points, points)
    return labels, np.sqrt(np.maximum(first + norms, 0)), np.sqrt(np.maximum(second + norms, 0))


def _lloyd(points, weights, centres, max_iter, tol, matmul=False):
    """Weighted Lloyd iterations from given centres; see :func:`weighted_kmeans`.

    Hamerly's bounds (SDM 2010) skip the distance computations for points that cannot change cluster: an upper
    bound of the distance to the own centre and a lower bound of the distance to any other, both moved by how far
    the centres moved. The result is the same as plain Lloyd's.
    """
    points32 = np.ascontiguousarray(points, dtype=np.float32)
    centres = np.asarray(centres, dtype=np.float64)
    iterations = 0
    total = weights.sum()
    if len(centres) == 1:  # the optimum is the weighted mean
        centres = (weights @ points / total)[None, :]
    else:
        labels, upper, lower = _two_nearest(points32, centres.astype(np.float32), matmul)
        for iterations in range(1, max_iter + 1):
            mass = np.bincount(labels, weights=weights, minlength=len(centres))
            sums = np.stack([np.bincount(labels, weights=weights * points[:, d], minlength=len(centres))
                             for d in range(points.shape[1])], axis=1)
            alive = mass > 0  # an empty cluster keeps its centre; it is dropped at the end if still empty
            new_centres = centres.copy()
            new_centres[alive] = sums[alive] / mass[alive, None]
            moved = np.linalg.norm(new_centres - centres, axis=1)
            centres = new_centres
            upper += moved[labels]
            lower -= moved.max()
            check = np.flatnonzero(upper > lower)
            if len(check):
                upper[check] = np.linalg.norm(points[check] - centres[labels[check]], axis=1)
                check = check[upper[check] > lower[check]]
            changed = 0.0
            if len(check):
                old = labels[check]
                labels[check], upper[check], lower[check] = _two_nearest(points32[check],
                                                                         centres.astype(np.float32), matmul)
                changed = weights[check][labels[check] != old].sum()
            # Converged when (almost) no weight changes cluster: a fixed point of Lloyd's map when it is none.
            if changed <= tol * total:
                break
    if len(centres) == 1:
        labels = np.zeros(len(points), np.int32)
    # Hamerly's invariant: after the last check every label is its point's nearest centre; no final pass needed.
    d2 = ((points - centres[labels]) ** 2).sum(1)
    alive = np.bincount(labels, weights=weights, minlength=len(centres)) > 0
    if not alive.all():
        centres = centres[alive]
        labels, d2 = nearest_centre(points32, centres, return_distance=True)
    return KMeansResult(centres.astype(np.float32), labels, float(np.dot(weights, d2)), iterations)
