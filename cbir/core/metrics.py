"""Ranking metrics of retrieval experiments: average precision and precision at k. Pure numpy.

Protocol (LIRE's TestWang and the usual CBIR papers): a query's average precision (AP) is taken over its full
ranking, the query itself excluded; MAP is the mean AP over all queries; P@k is the share of relevant images
among the first k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

PRECISION_AT = (10, 20)


def _relevance(relevant):
    relevant = np.asarray(relevant)
    if relevant.dtype != bool:
        if not np.isin(relevant, (0, 1)).all():
            raise ValueError("relevant must hold booleans (or 0/1): True where the ranked item is relevant")
        relevant = relevant.astype(bool)
    return relevant


def average_precision(relevant: ArrayLike, n_relevant: int | None = None) -> float:
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

    Examples
    --------
    >>> average_precision([True, False, True])  # precisions 1/1 and 2/3 at the two relevant ranks
    0.8333333333333333
    >>> average_precision([True, False, False], n_relevant=2)  # one relevant item never retrieved
    0.5
    """
    return float(average_precisions(np.atleast_2d(_relevance(relevant)),
                                    None if n_relevant is None else [n_relevant])[0])


def average_precisions(relevant: ArrayLike, n_relevant: ArrayLike | None = None) -> np.ndarray:
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


def precision_at(relevant: ArrayLike, k: int) -> float | np.ndarray:
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


def ranking_metrics(rankings: ArrayLike, labels: ArrayLike, query_rows: ArrayLike, ks: Sequence[int] = PRECISION_AT
                    ) -> dict[str, np.ndarray]:
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
