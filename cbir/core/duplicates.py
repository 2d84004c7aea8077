"""Finding copies among indexed photos: pure numerics, arrays in and out.

Two kinds of evidence describe a photo here. Its *colour* is the histogram the index already holds (regions of a
layout, compared by the quadratic-form distance through the transformed vectors y, where the Euclidean distance is
the QFD). Its *structure* is a 16x16 grey thumbnail of the whole picture (aspect ignored), mean removed and scaled
to unit length: brightness, contrast and a colour cast hardly move it, a different photo taken of the same scene
does.

Rotating a photo by 90, 180 or 270 degrees or mirroring it (the 8 symmetries of the square) only moves the regions
of a symmetric layout (2x2, 3x3, center) among themselves, and moves the pixels of a square thumbnail among
themselves: both become permutations of the stored vectors, so a rotated or mirrored copy is found without decoding
anything again. Every distance here is the minimum over the 8 symmetries.

All pairs of a large collection are found by a blocked matrix product over a short *invariant* embedding, one
whose Euclidean distance never exceeds the symmetric distance it stands for (the symmetry-averaged parts of both
kinds of evidence, projected onto principal axes): pairs it puts farther apart than the threshold cannot qualify,
and the few that remain are measured exactly.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .blas import one_blas_thread
from .histogram import region_map

THUMBNAIL_SIDE = 16


class TooManyPairs(ValueError):
    """More pairs qualify than the caller's limit (a threshold far too loose for the collection)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} pairs")
        self.limit = limit
# np.rot90(x, k) after an optional left-right mirror: what each of the 8 symmetries does to a picture
SYMMETRIES = tuple((mirrored, k) for mirrored in (False, True) for k in range(4))


def symmetry_name(index: int) -> str:
    """Words for symmetry ``index`` of :data:`SYMMETRIES` as applied to a picture."""
    mirrored, k = SYMMETRIES[index]
    turn = ("", "rotated 90° anticlockwise", "rotated 180°", "rotated 90° clockwise")[k]
    if not mirrored:
        return turn or "as is"
    if k == 2:
        return "flipped upside down"  # a left-right mirror turned by 180° is a top-bottom mirror
    return "mirrored" + (f" and {turn}" if turn else "")


def inverse_symmetry(index: int) -> int:
    """The symmetry that undoes symmetry ``index``: rotations turn back, mirror images are their own inverse."""
    mirrored, k = SYMMETRIES[index]
    return SYMMETRIES.index((mirrored, k if mirrored else (-k) % 4))


def apply_symmetry(square: np.ndarray, index: int) -> np.ndarray:
    """Symmetry ``index`` applied to the first two axes of an array."""
    mirrored, k = SYMMETRIES[index]
    return np.rot90(square[:, ::-1] if mirrored else square, k)


def region_permutations(region_map: np.ndarray) -> np.ndarray:
    """How the 8 symmetries move the regions of a layout.

    Parameters
    ----------
    region_map : (S, S) int, the region of every cell of a square picture (regions 0 .. R-1)

    Returns
    -------
    perms : (8, R) int64; for symmetry g, region p of the transformed picture holds what region perms[g, p] of
        the original held

    Raises
    ------
    ValueError
        the layout is not symmetric under rotation and mirroring
    """
    base = np.asarray(region_map)
    if base.ndim != 2 or base.shape[0] != base.shape[1]:
        raise ValueError(f"region_map must be square, got shape {base.shape}")
    regions = int(base.max()) + 1
    perms = np.empty((8, regions), np.int64)
    for g in range(8):
        moved = apply_symmetry(base, g)
        for p in range(regions):
            sources = np.unique(moved[base == p])
            if len(sources) != 1:
                raise ValueError("the layout's regions do not map onto each other under rotation and mirroring")
            perms[g, p] = sources[0]
    return perms


@functools.lru_cache(maxsize=4)
def thumbnail_permutations(side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """(8, side*side) int64, read-only: how the 8 symmetries move the pixels of a flattened square thumbnail."""
    cells = np.arange(side * side).reshape(side, side)
    perms = np.array([apply_symmetry(cells, g).ravel() for g in range(8)])
    perms.flags.writeable = False
    return perms


def structure_thumbnail(image: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """The structure thumbnail of a picture: grey, squeezed to ``side`` x ``side`` (area averaging), its range
    stretched to 0..255 so that rounding to bytes costs the same precision for a misty photo as for a sharp one.

    Squeezing to a square ignores the aspect, so the thumbnail of a rotated photo is the rotated thumbnail.

    Parameters
    ----------
    image : (H, W, 3) uint8 sRGB

    Returns
    -------
    thumb : (side*side,) uint8; all zero for a flat picture (grey range under 2 levels at that size)
    """
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)
    low, high = float(small.min()), float(small.max())
    if high - low < 2:
        return np.zeros(side * side, np.uint8)
    return np.round((small - low) * (255 / (high - low))).astype(np.uint8).ravel()


def structure_vectors(thumbs: np.ndarray) -> np.ndarray:
    """Thumbnails ``(N, S*S) uint8`` -> ``(N, S*S) float32`` with the mean removed and unit length (zero rows for
    flat pictures, which have no structure to compare)."""
    t = np.asarray(thumbs, np.float32)
    t = t - t.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(t, axis=1, keepdims=True)
    return np.divide(t, norms, out=np.zeros_like(t), where=norms > 0)


@dataclass(frozen=True)
class Rule:
    """When two photos are copies, in the units of the distances (calibrated on the shipped photos,
    tests/benchmarks/bench_duplicates.py; colour distances for the default codebook, see :func:`colour_unit`).

    Tier 2, the same photo saved again (resized, recompressed, converted, rotated, mirrored): colour distance at
    most ``saved_colour`` and structure distance at most ``saved_structure``.

    Tier 3, near-duplicates, scored by the near-duplicate distance
    ``min(sqrt((c / colour_scale)^2 + (e / structure_scale)^2), e / edit_structure)`` of colour distance c and
    structure distance e: similar in both colour and layout (bursts, light crops), or the same structure whatever
    the colours (brightness, contrast or colour edits). The default threshold is 1.
    """

    saved_colour: float = 0.6
    saved_structure: float = 0.15
    colour_scale: float = 0.65
    structure_scale: float = 2.0
    edit_structure: float = 0.15

    def near_distance(self, colour: np.ndarray, structure: np.ndarray) -> np.ndarray:
        """The near-duplicate distance of pairs with these colour and structure distances (float64 arrays)."""
        colour, structure = np.asarray(colour, np.float64), np.asarray(structure, np.float64)
        return np.minimum(np.hypot(colour / self.colour_scale, structure / self.structure_scale),
                          structure / self.edit_structure)

    def saved_again(self, colour: np.ndarray, structure: np.ndarray) -> np.ndarray:
        return (np.asarray(colour) <= self.saved_colour) & (np.asarray(structure) <= self.saved_structure)

    def scaled(self, unit: float) -> Rule:
        """The rule with colour distances in ``unit`` times the calibrated ones."""
        return Rule(self.saved_colour * unit, self.saved_structure, self.colour_scale * unit, self.structure_scale,
                    self.edit_structure)


def colour_unit(n_colours: int, weights: np.ndarray) -> float:
    """How colour distances scale with the codebook size K and the block weights of a layout, relative to the
    default (K = 128, global+3x3, block weights summing to 2): sqrt(K / 128 * sum(weights) / 2). Measured: K = 64
    and 256 move the distances of copies by 0.72x and 1.42x."""
    return float(np.sqrt(n_colours / 128 * float(np.sum(weights)) / 2))


def block_permutations(layout: str) -> np.ndarray:
    """How the 8 symmetries move the histogram blocks of a layout: ``(8, B) int64`` (a "global+" layout's whole-
    picture block 0 stays where it is); see :func:`region_permutations`.

    Examples
    --------
    >>> block_permutations("global+2x2")[1]   # rotated 90° anticlockwise: the top-left region shows the top-right
    array([0, 2, 4, 1, 3])
    """
    regions = region_permutations(region_map(12, 12, layout)[0])
    if not layout.startswith("global+"):
        return regions
    return np.hstack([np.zeros((8, 1), np.int64), regions + 1])


def orbit_basis(perms: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the vectors that the coordinate permutations ``perms (8, D)`` leave unchanged:
    ``(D, O) float32``, one column per orbit of coordinates (1/sqrt(orbit size) on its members).

    Projecting onto it shrinks every symmetric distance: ``|P^T (a - g b)| = |P^T a - P^T b|`` for every symmetry
    g, and a projection never lengthens a vector, so the projected distance is a lower bound of the minimum over
    the symmetries.
    """
    perms = np.asarray(perms)
    d = perms.shape[1]
    label = np.full(d, -1)
    orbits = 0
    for p in range(d):
        if label[p] < 0:
            label[np.unique(perms[:, p])] = orbits
            orbits += 1
    basis = np.zeros((d, orbits), np.float32)
    basis[np.arange(d), label] = 1
    return basis / np.sqrt(basis.sum(0))


def invariant_colour(colour: np.ndarray, block_perms: np.ndarray) -> np.ndarray:
    """The symmetry-invariant part of transformed colour vectors: ``(N, B, K)`` -> ``(N, O*K) float32``, per orbit
    of blocks their sum divided by sqrt(orbit size) (the orbit basis applied block-wise)."""
    basis = orbit_basis(block_perms)
    parts = [colour[:, np.flatnonzero(column)].sum(axis=1) * column.max() for column in basis.T]
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


def principal_axes(x: np.ndarray, count: int, sample: int = 20_000, iterations: int = 6) -> np.ndarray:
    """Orthonormal axes spanning (about) the ``count`` leading principal directions of the rows of ``x`` (from an
    even sample of at most ``sample`` rows): ``(D, count) float32``.

    Subspace iteration on the covariance with matrix products and a small Cholesky factorisation: LAPACK's
    eigendecompositions took seconds on a loaded 2-core machine. Any orthonormal axes keep projected distances lower
    bounds; leading ones only make them tighter.
    """
    d = x.shape[1]
    count = min(count, d)
    if count == d:
        return np.eye(d, dtype=np.float32)
    rows = np.asarray(x[:: max(1, len(x) // sample)], np.float32)
    rows = rows - rows.mean(0)
    covariance = (rows.T @ rows).astype(np.float64)
    basis = np.random.default_rng(0).standard_normal((d, count))
    for _ in range(iterations):
        basis = covariance @ basis
        gram = basis.T @ basis  # orthonormal columns again: B R^-1 with R^T R = B^T B (jitter: a rank-deficient B)
        factor = np.linalg.cholesky(gram + np.eye(count) * (1e-12 * np.trace(gram) + 1e-300))
        basis = np.linalg.solve(factor, basis.T).T
    return np.ascontiguousarray(basis).astype(np.float32)


def close_pairs(x: np.ndarray, radius: float, block: int = 2048, *, limit: int | None = None,
                progress: Callable[[int, int], None] | None = None, threads: int = 1
                ) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of rows of ``x (N, D)`` at most ``radius`` apart (Euclidean), found by blocked matrix products.

    The rows are sorted along their first principal axis, and a block of rows is compared only with the rows whose
    position on that axis lies within ``radius`` of its own (a distance is never shorter than its projection), so
    only part of the N^2/2 pairs is computed. Rounding in float32 is allowed for with a small margin: the result
    may hold a few pairs slightly farther apart, never miss one. More than ``limit`` pairs raise
    :class:`TooManyPairs`; ``progress(done, total)`` is called as blocks of rows finish.

    Blocks of rows are shared among ``threads`` threads, each with one ``block`` x ``block`` float32 buffer and the
    BLAS library held to one thread: BLAS's own threads spin while they wait, and on a machine shared with other
    jobs they made these products 2 to 6 times slower (tests/benchmarks/bench_duplicates_scale.py).

    Returns
    -------
    i, j : (P,) int64 with i < j, in no particular order
    """
    x = np.asarray(x, np.float32)
    n = len(x)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    key = x @ principal_axes(x, 1)[:, 0] if x.shape[1] else np.zeros(n, np.float32)
    order = np.argsort(key, kind="stable")
    xs, keys = x[order], key[order]
    norms = np.einsum("nd,nd->n", xs, xs)
    # d^2 = |a|^2 + |b|^2 - 2 a.b as one product: [-2a, |a|^2, 1] . [b, 1, |b|^2]
    left = np.hstack([-2 * xs, norms[:, None], np.ones((n, 1), np.float32)])
    right = np.ascontiguousarray(np.hstack([xs, np.ones((n, 1), np.float32), norms[:, None]]).T)
    bound = np.float32(radius * radius + 1e-5 * (1 + 2 * float(norms.max())))
    buffers = threading.local()

    def row_block(i0):
        i1 = min(n, i0 + block)
        buffer = getattr(buffers, "array", None)
        if buffer is None:
            buffer = buffers.array = np.empty((block, block), np.float32)
        end = int(np.searchsorted(keys, keys[i1 - 1] + radius * 1.0001 + 1e-6, side="right"))
        found_a, found_b = [], []
        for j0 in range(i0, end, block):
            j1 = min(end, j0 + block)
            d2 = buffer[: i1 - i0, : j1 - j0]
            np.matmul(left[i0:i1], right[:, j0:j1], out=d2)
            rows = np.flatnonzero(d2.min(axis=1) <= bound)
            if len(rows):
                r, c = np.nonzero(d2[rows] <= bound)
                a, b = i0 + rows[r], j0 + c
                keep = a < b
                found_a.append(a[keep])
                found_b.append(b[keep])
        return i1, found_a, found_b

    found_i, found_j = [], []
    total = 0
    with one_blas_thread(), \
            concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        results = pool.map(row_block, range(0, n, block))
        try:
            for done, (i1, found_a, found_b) in enumerate(results):
                found_i += found_a
                found_j += found_b
                total += sum(len(a) for a in found_a)
                if limit is not None and total > limit:
                    raise TooManyPairs(limit)
                if progress:
                    progress(min(n, (done + 1) * block), n)
        finally:
            results.close()  # what has not started is cancelled
    if not found_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a, b = order[np.concatenate(found_i)], order[np.concatenate(found_j)]
    return np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)


def candidate_pairs(colour: np.ndarray, structure: np.ndarray, block_perms: np.ndarray, rule: Rule,
                    threshold: float = 1.0, *, axes: int = 64, block: int = 2048, limit: int | None = None,
                    progress: Callable[[int, int], None] | None = None, threads: int = 1
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs that may be copies under ``rule`` (tier 2, or tier 3 at ``threshold``), with no pair that is missed:
    every pair outside has a lower bound of its distances beyond what any tier accepts.

    Parameters
    ----------
    colour : (N, B, K) float32, transformed colour vectors (Euclidean distance = the colour distance)
    structure : (N, S*S) float32, from :func:`structure_vectors`
    block_perms : (8, B) int, from :func:`block_permutations`
    axes : principal axes kept of the colour-and-structure embedding (fewer: faster products, more candidates)
    block, limit, threads : see :func:`close_pairs`
    progress : callable(done, total) over both passes

    Returns
    -------
    i, j : (P,) int64 with i < j, sorted by i then j
    """
    n = len(colour)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    side = int(round(np.sqrt(structure.shape[1])))
    shape_basis = orbit_basis(thumbnail_permutations(side))
    shape = (np.asarray(structure, np.float32) @ shape_basis).astype(np.float32)
    # Both tiers' regions in the (colour, structure) plane lie within this radius of the joint embedding.
    radius = max(threshold, float(np.hypot(rule.saved_colour / rule.colour_scale,
                                            rule.saved_structure / rule.structure_scale)))
    joint = np.hstack([invariant_colour(colour, block_perms) / rule.colour_scale, shape / rule.structure_scale])
    if joint.shape[1] > axes:
        joint = joint @ principal_axes(joint, axes)
    textured = np.flatnonzero(np.abs(structure).sum(1) > 0)
    steps = n + len(textured)
    i, j = close_pairs(joint, radius, block, limit=limit, threads=threads,
                       progress=progress and (lambda done, _: progress(done, steps)))
    # Edited copies: the same structure whatever the colours (flat pictures have none to compare).
    ei, ej = close_pairs(shape[textured], rule.edit_structure * threshold, block, threads=threads,
                         limit=None if limit is None else max(0, limit - len(i)),
                         progress=progress and (lambda done, _: progress(n + done, steps)))
    if progress:
        progress(steps, steps)
    keys = np.unique(np.concatenate([i * n + j, textured[ei] * n + textured[ej]]))
    return keys // n, keys % n


def _nearest_symmetry(variants: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distance of each row of ``theirs (m, D)`` to the nearest of one picture's 8 ``variants (8, D)``, and
    which variant: ``(m,) float64``, ``(m,) int64``."""
    # The symmetry with the largest dot product g(a) . b is the nearest (|g(a)| = |a|); its distance is then taken
    # from the difference itself, not |a|^2 + |b|^2 - 2 a.b, which loses small distances to rounding.
    best = (variants @ theirs.T).argmax(0)
    diff = variants[best] - theirs
    return np.einsum("md,md->m", diff, diff, dtype=np.float64), best


def pair_distances(colour: np.ndarray, structure: np.ndarray, i: np.ndarray, j: np.ndarray,
                   block_perms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour and structure distances of pairs, each the minimum over the 8 symmetries.

    Parameters
    ----------
    colour : (N, B, K) float32, structure : (N, S*S) float32 (see :func:`candidate_pairs`)
    i, j : (P,) int, the pairs

    Returns
    -------
    colour_distance : (P,) float64
    structure_distance : (P,) float64; sqrt(2) (unrelated) when either picture is flat
    symmetry : (P,) int8, the symmetry g for which picture j looks most like picture i transformed by g (by
        structure; by colour when a picture is flat)
    """
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    n, blocks, k = colour.shape
    flat_colour = colour.reshape(n, -1)
    side = int(round(np.sqrt(structure.shape[1])))
    shape_perms = thumbnail_permutations(side)
    # the block permutations as permutations of the flattened vector's elements
    colour_perms = (np.asarray(block_perms)[:, :, None] * k + np.arange(k)).reshape(8, -1)
    c = np.empty(len(i))
    e = np.empty(len(i))
    c_arg = np.empty(len(i), np.int8)
    s_arg = np.empty(len(i), np.int8)
    order = np.argsort(i, kind="stable")
    rows = i[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.empty(0, np.int64)
    for start, end in zip(starts.tolist(), np.r_[starts[1:], len(rows)].tolist()):
        a = rows[start]
        where = order[start:end]
        others = j[where]
        c[where], c_arg[where] = _nearest_symmetry(flat_colour[a][colour_perms], flat_colour[others])
        e[where], s_arg[where] = _nearest_symmetry(structure[a][shape_perms], structure[others])
    c, e = np.sqrt(c), np.sqrt(e)
    no_structure = ~(np.abs(structure[i]).sum(1) > 0) | ~(np.abs(structure[j]).sum(1) > 0)  # flat pictures
    e[no_structure] = np.sqrt(2)
    return c, e, np.where(no_structure, c_arg, s_arg).astype(np.int8)


def connected_groups(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected components of the graph of ``n`` nodes with edges ``(i, j)``: ``(n,) int64`` labels, each the
    smallest node of its component (a node without edges is its own)."""
    label = np.arange(n)
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    while len(i):
        low = np.minimum(label[i], label[j])
        new = label.copy()
        np.minimum.at(new, label[i], low)
        np.minimum.at(new, label[j], low)
        while True:  # point every node at its root
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, label):
            break
        label = new
    return label
