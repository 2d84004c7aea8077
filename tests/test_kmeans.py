import cv2
import numpy as np
import pytest

from cbir.core.colour import bin_centres, to_space
from cbir.core.kmeans import PRODUCTS_FROM, nearest_centre, weighted_kmeans


def naive_lloyd(points, weights, centres, iterations=200):
    """Plain weighted Lloyd, one point at a time: the reference for the vectorised, bounded version."""
    centres = centres.astype(np.float64).copy()
    for _ in range(iterations):
        labels = np.array([np.argmin(((centres - p) ** 2).sum(1)) for p in points])
        new = centres.copy()
        for j in range(len(centres)):
            if weights[labels == j].sum() > 0:
                new[j] = np.average(points[labels == j], axis=0, weights=weights[labels == j])
        if np.allclose(new, centres):
            break
        centres = new
    return centres


def test_lloyd_from_given_centres_matches_naive_implementation():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(c, 1.0, (60, 3)) for c in ([0, 0, 0], [8, 0, 0], [0, 9, 3], [5, 5, 5])])
    weights = rng.integers(1, 20, len(points)).astype(float)
    init = points[[0, 1, 2, 3]]
    ours = weighted_kmeans(points, weights, 4, init=init, tol=0, max_iter=200)
    naive = naive_lloyd(points, weights, init)
    order_ours = np.lexsort(ours.centres.T)
    order_naive = np.lexsort(naive.T)
    np.testing.assert_allclose(ours.centres[order_ours], naive[order_naive], atol=1e-4)


def test_weights_act_as_repeated_points():
    rng = np.random.default_rng(1)
    points = rng.normal(0, 5, (40, 2))
    weights = rng.integers(1, 4, 40)
    repeated = np.repeat(points, weights, axis=0)
    init = points[:3]
    a = weighted_kmeans(points, weights, 3, init=init, tol=0)
    b = weighted_kmeans(repeated, np.ones(len(repeated)), 3, init=init, tol=0)
    np.testing.assert_allclose(a.centres, b.centres, atol=1e-5)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-5)


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(2)
    points, weights = rng.normal(0, 1, (500, 3)), rng.random(500)
    a = weighted_kmeans(points, weights, 7, seed=3)
    b = weighted_kmeans(points, weights, 7, seed=3)
    np.testing.assert_array_equal(a.centres, b.centres)


def test_more_clusters_than_points_gives_one_per_distinct_point():
    points = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    result = weighted_kmeans(points, np.ones(4), 10)
    assert len(result.centres) == 3
    assert np.isfinite(result.centres).all()
    assert result.inertia == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_invalid_k_is_a_value_error(k):
    with pytest.raises(ValueError, match="k must be"):
        weighted_kmeans(np.zeros((3, 2)), np.ones(3), k)


def test_invalid_weights_are_a_value_error():
    with pytest.raises(ValueError, match="weights"):
        weighted_kmeans(np.zeros((3, 2)), np.zeros(3), 2)


def test_nearest_centre_matches_brute_force():
    rng = np.random.default_rng(4)
    points, centres = rng.normal(0, 10, (3000, 3)), rng.normal(0, 10, (17, 3))
    brute = ((points[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(nearest_centre(points, centres), brute)


def batch_distance_labels(points, centres):
    """What OpenCV's brute-force matcher gives, in one call: the labels nearest_centre promises."""
    return cv2.batchDistance(np.float32(points), np.float32(centres), cv2.CV_32F, normType=cv2.NORM_L2SQR,
                             K=1)[1].ravel()


@pytest.mark.parametrize("case", ["lab grid", "uniform", "centres on points", "twin centres", "near twins", "rgb grid"])
def test_nearest_centre_by_products_gives_batch_distance_labels_even_at_ties(case):
    """The products path (many points) checks the points whose two nearest centres are too close to tell apart at
    float32 precision: exact ties (twin centres, points equidistant on a grid) must come out as batchDistance has
    them, not as the product's rounding happens to order them."""
    rng = np.random.default_rng(len(case))
    grid = to_space(bin_centres(5), "rgb" if case == "rgb grid" else "lab")
    points = np.concatenate([grid, rng.uniform(-100, 100, (PRODUCTS_FROM, 3))]).astype(np.float32)
    k = 150
    if case == "uniform":
        centres = rng.uniform(-100, 100, (k, 3))
    elif case == "twin centres":  # every centre twice: each point has two nearest at exactly the same distance
        centres = np.repeat(rng.uniform(-60, 60, (k // 2, 3)), 2, axis=0)
    elif case == "near twins":  # 1e-4 apart: float32 products order thousands of the points wrongly
        centres = np.repeat(rng.uniform(-60, 60, (k // 2, 3)), 2, axis=0) + rng.uniform(0, 1e-4, (k // 2 * 2, 3))
    else:  # on grid points, some points exactly half-way between two of them
        centres = grid[rng.choice(len(grid), k, replace=False)]
    assert len(points) >= PRODUCTS_FROM  # the products path is the one under test
    np.testing.assert_array_equal(nearest_centre(points, centres), batch_distance_labels(points, centres))


@pytest.mark.parametrize("k", [40, 200])
def test_matrix_product_distances_give_the_same_clustering(k):
    from cbir.core.kmeans import weighted_kmeans

    rng = np.random.default_rng(k)
    points = rng.random((3000, 6)) * 100
    weights = rng.integers(1, 20, 3000)
    start = points[rng.choice(3000, k, replace=False)]
    a = weighted_kmeans(points, weights, k, init=start, max_iter=20)
    b = weighted_kmeans(points, weights, k, init=start, max_iter=20, matmul=True)
    assert b.inertia == pytest.approx(a.inertia, rel=1e-6)
    assert (a.labels == b.labels).mean() > 0.999
    # Hamerly's labels after the last step are each point's nearest centre
    d2 = ((points[:, None, :] - b.centres[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(d2[np.arange(3000), b.labels], d2.min(1), rtol=1e-4)


@pytest.mark.parametrize("matmul, k", [(False, 5), (True, 40), (True, 300)])
def test_two_nearest_matches_sorted_distances(matmul, k):
    from cbir.core.kmeans import _two_nearest

    rng = np.random.default_rng(k)
    points = (rng.random((700, 6)) * 100).astype(np.float32)  # 700: more than one block of rows
    centres = (rng.random((k, 6)) * 100).astype(np.float32)
    labels, first, second = _two_nearest(points, centres, matmul)
    d = np.sqrt(((points[:, None, :].astype(np.float64) - centres[None]) ** 2).sum(-1))
    ordered = np.sort(d, axis=1)
    np.testing.assert_array_equal(labels, d.argmin(1))
    np.testing.assert_allclose(first, ordered[:, 0], rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(second, ordered[:, 1], rtol=1e-3, atol=1e-2)
