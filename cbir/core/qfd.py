"""The QBIC quadratic-form distance d^2 = (x - y)^T A (x - y): similarity matrices and their factorisation.

Pure numeric functions. ``A`` is built from the CIELAB distances between codebook colours; it is made positive
semi-definite by clipping negative eigenvalues, so that ``A = L L^T`` and ``d^2 = ||L^T x - L^T y||^2``: ranking
N histograms is then one matrix-vector product over vectors transformed once at load time.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .blas import one_blas_thread

KERNELS = ("qbic", "gaussian")


def _eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh`` on one BLAS thread: for a K x K matrix (K <= a few hundred) the threads only cost, most on a
    busy machine, where waking them made a fresh index's two calls 0.23 s of its 3.4 s
    (tests/benchmarks/profile_first_index.py beside another job)."""
    with one_blas_thread():
        return np.linalg.eigh(a)


def colour_distances(colours: ArrayLike) -> np.ndarray:
    """Pairwise Euclidean distances of ``(K, 3)`` colours: ``(K, K) float64``."""
    colours = np.asarray(colours, dtype=np.float64)
    if colours.ndim != 2 or colours.shape[1] != 3 or len(colours) == 0:
        raise ValueError(f"colours must be a non-empty (K, 3) array, got shape {colours.shape}")
    return np.sqrt(np.maximum(((colours[:, None, :] - colours[None, :, :]) ** 2).sum(-1), 0))


def similarity_matrix(colours: ArrayLike, kernel: str = "qbic", sigma: float = 1.0) -> np.ndarray:
    """Colour similarity matrix A of the quadratic-form distance, made positive semi-definite.

    Parameters
    ----------
    colours : (K, 3) float, codebook colours (CIELAB)
    kernel : {"qbic", "gaussian"}
        "qbic": A_ij = 1 - d_ij / d_max (Hafner et al. 1995); "gaussian": A_ij = exp(-sigma * (d_ij / d_max)^2)
    sigma : float > 0, width of the gaussian kernel (larger: colours must be closer to count as similar)

    Returns
    -------
    A : (K, K) float64, symmetric positive semi-definite, ones on the diagonal before clipping

    Examples
    --------
    >>> import numpy as np
    >>> lab = [[0, 0, 0], [50, 0, 0], [100, 0, 0]]
    >>> similarity_matrix(lab).tolist()  # QBIC: 1 - d / d_max
    [[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]]
    >>> float(np.round(similarity_matrix(lab, "gaussian", 4.0)[0, 1], 4))  # exp(-4 * 0.5^2)
    0.3679
    """
    d = colour_distances(colours)
    d_max = d.max() or 1.0
    if kernel == "qbic":
        a = 1.0 - d / d_max
    elif kernel == "gaussian":
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        a = np.exp(-sigma * (d / d_max) ** 2)
    else:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    return nearest_psd(a)


def nearest_psd(a: ArrayLike) -> np.ndarray:
    """Symmetric ``(K, K)`` matrix with negative eigenvalues clipped to zero (nearest PSD in Frobenius norm)."""
    a = (np.asarray(a, dtype=np.float64) + np.asarray(a, dtype=np.float64).T) / 2
    values, vectors = _eigh(a)
    if values.min() >= 0:
        return a
    return (vectors * np.maximum(values, 0)) @ vectors.T


def factor(a: ArrayLike) -> np.ndarray:
    """A factor L with ``A = L L^T`` for a symmetric PSD ``A``: ``(K, K) float64`` (eigendecomposition)."""
    values, vectors = _eigh(np.asarray(a, dtype=np.float64))
    return vectors * np.sqrt(np.maximum(values, 0))


def quadratic_form_distances(x: ArrayLike, y: ArrayLike, a: ArrayLike) -> np.ndarray:
    """Naive d^2 = (x - y)^T A (x - y) for every row of ``x`` against one ``y``, in float64.

    Parameters
    ----------
    x : (N, K) float
    y : (K,) float
    a : (K, K) float

    Returns
    -------
    d2 : (N,) float64, clamped at 0
    """
    diff = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return np.maximum(np.einsum("nk,kl,nl->n", diff, np.asarray(a, dtype=np.float64), diff), 0)


def square_root(a: ArrayLike) -> np.ndarray:
    """The symmetric square root S of a symmetric PSD ``A`` (``S S = A``, ``S = S^T``): ``(K, K) float64``.

    Unlike :func:`factor`, whose columns are eigen-directions, row k of S belongs to codebook colour k, so
    ``||S x||^2 = x^T A x`` splits into one non-negative term per colour (see :func:`distance_terms`).
    """
    values, vectors = _eigh(np.asarray(a, dtype=np.float64))
    return (vectors * np.sqrt(np.maximum(values, 0))) @ vectors.T


def distance_terms(x: ArrayLike, y: ArrayLike, root: ArrayLike, *, power: float = 1.0,
                   weights: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The squared quadratic-form distance of each ``x`` to ``y``, split exactly by block and by colour.

    With ``delta_b = x_b^p - y_b^p`` for each block b, ``d^2 = sum_b w_b ||S delta_b||^2`` (S = ``root``, S S = A);
    the term of block b and colour k is ``w_b (S delta_b)_k^2``: non-negative, and the terms add up to d^2. Its
    sign ``(S delta_b)_k`` says whether x holds more (> 0) or less (< 0) than y of colour k and the colours like it.

    Parameters
    ----------
    x : (N, B*K) float, shares per block
    y : (B*K,) float
    root : (K, K) float, :func:`square_root` of the similarity matrix A
    power : float, shares are compared raised to this power
    weights : (B,) float, the blocks' weights, or None for all 1

    Returns
    -------
    terms : (N, B, K) float64, each image's terms summing to its d^2
    signed : (N, B, K) float64, ``(S delta_b)_k``

    Examples
    --------
    >>> a = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> terms, signed = distance_terms([[1.0, 0.0]], [0.0, 1.0], square_root(a))
    >>> round(float(terms.sum()), 12), float(quadratic_form_distances([[1.0, 0.0]], [0.0, 1.0], a)[0])
    (1.0, 1.0)
    >>> bool(signed[0, 0, 0] > 0), bool(signed[0, 0, 1] < 0)  # x holds more of colour 0, less of colour 1
    (True, True)
    """
    root = np.asarray(root, dtype=np.float64)
    k = len(root)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64).ravel()
    if root.shape != (k, k) or x.shape[1] != len(y) or len(y) % k:
        raise ValueError(f"x must be (N, B*{k}) and y (B*{k},) with root (K, K), got {x.shape}, {y.shape} and "
                         f"{root.shape}")
    blocks = len(y) // k
    weights = np.ones(blocks) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if weights.shape != (blocks,):
        raise ValueError(f"weights must hold {blocks} numbers, one per block, got shape {weights.shape}")
    signed = (x ** power - y ** power).reshape(len(x), blocks, k) @ root  # S symmetric: (S d)^T = d^T S
    return weights[:, None] * signed ** 2, signed
