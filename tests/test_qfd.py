import numpy as np
import pytest

from cbir.core.backends import (
    ChiSquaredSearch,
    IntersectionSearch,
    L1Search,
    NaiveQuadraticFormSearch,
    QuadraticFormSearch,
)
from cbir.core.qfd import (
    distance_terms,
    factor,
    nearest_psd,
    quadratic_form_distances,
    similarity_matrix,
    square_root,
)


def random_lab(k, seed):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0, 100, k), rng.uniform(-80, 80, k), rng.uniform(-80, 80, k)])


def random_histograms(n, d, seed, blocks=1):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d)) ** 3  # skewed, like real colour histograms
    x[rng.random((n, d)) < 0.3] = 0
    x = x.reshape(n, blocks, d // blocks)
    return (x / np.maximum(x.sum(-1, keepdims=True), 1e-12)).reshape(n, d).astype(np.float32)


@pytest.mark.parametrize("k", [2, 8, 16, 32, 64, 128, 256])
@pytest.mark.parametrize("kernel", ["qbic", "gaussian"])
def test_similarity_matrix_is_symmetric_psd_for_every_codebook_size(k, kernel):
    a = similarity_matrix(random_lab(k, k), kernel, sigma=5.0)
    assert a.shape == (k, k)
    np.testing.assert_allclose(a, a.T)
    assert np.linalg.eigvalsh(a).min() >= -1e-9
    lower = factor(a)
    np.testing.assert_allclose(lower @ lower.T, a, atol=1e-9)


def test_qbic_matrix_follows_the_formula_where_already_psd():
    lab = np.array([[50.0, 0, 0], [60.0, 0, 0], [80.0, 0, 0]])  # collinear: 1 - d/dmax is PSD here
    a = similarity_matrix(lab, "qbic")
    d = np.abs(lab[:, None, 0] - lab[None, :, 0])
    np.testing.assert_allclose(a, 1 - d / d.max(), atol=1e-12)


def test_nearest_psd_clips_only_negative_eigenvalues():
    a = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    clipped = nearest_psd(a)
    np.testing.assert_allclose(np.linalg.eigvalsh(clipped), [0.0, 3.0], atol=1e-12)


@pytest.mark.parametrize("power,blocks", [(1.0, 1), (0.5, 1), (0.5, 3)])
def test_factorised_search_equals_naive_formula(power, blocks):
    k = 16
    vectors = random_histograms(300, k * blocks, 1, blocks)
    a = similarity_matrix(random_lab(k, 2), "gaussian", sigma=8.0)
    fast = QuadraticFormSearch.build(vectors, a, power=power, blocks=blocks)
    naive = NaiveQuadraticFormSearch(vectors, a, power=power, blocks=blocks)
    queries = np.vstack([random_histograms(4, k * blocks, 3, blocks), vectors[17]])
    for n in (1, 10, 0):
        fast_rows, fast_d = fast.search(queries, n)
        naive_rows, naive_d = naive.search(queries, n)
        for fr, fd, nr, nd in zip(fast_rows, fast_d, naive_rows, naive_d):
            np.testing.assert_array_equal(fr, nr)
            np.testing.assert_allclose(fd, nd, rtol=1e-9, atol=1e-12)
    rows, d = fast.search(vectors[17], 1)
    assert rows[0][0] == 17 and d[0][0] == 0.0


def test_naive_search_matches_the_textbook_formula():
    k = 8
    vectors = random_histograms(20, k, 4)
    a = similarity_matrix(random_lab(k, 5), "qbic")
    q = vectors[3]
    expected = np.sqrt(quadratic_form_distances(vectors, q, a))
    np.testing.assert_allclose(NaiveQuadraticFormSearch(vectors, a).distances(q), expected, atol=1e-12)


def test_full_ranking_returns_everything_in_order():
    vectors = random_histograms(50, 8, 6)
    a = similarity_matrix(random_lab(8, 7), "gaussian")
    rows, d = QuadraticFormSearch.build(vectors, a).search(vectors[0], 0)
    assert sorted(rows[0]) == list(range(50))
    assert np.all(np.diff(d[0]) >= 0)


def test_comparison_distances_on_a_hand_example():
    x = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], np.float32)
    q = np.array([0.5, 0.25, 0.25], np.float32)
    np.testing.assert_allclose(L1Search(x).distances(q), [0.5, 1.5])
    np.testing.assert_allclose(IntersectionSearch(x).distances(q), [0.25, 0.75])
    # chi2: 1/2 * (0 + 0.0625/0.75 + 0.0625/0.25) and 1/2 * (1 + 0.25/0.25 * (1/1) ... written out:
    expected = [0.5 * (0.0625 / 0.75 + 0.0625 / 0.25), 0.5 * (0.25 / 0.5 + 0.0625 / 0.25 + 0.5625 / 1.25)]
    np.testing.assert_allclose(ChiSquaredSearch(x).distances(q), expected, rtol=1e-6)


def test_weighted_blocks_fast_search_equals_naive_formula():
    k, blocks = 12, 4
    weights = [1.0, 1 / 3, 1 / 3, 1 / 3]
    vectors = random_histograms(200, k * blocks, 11, blocks)
    a = similarity_matrix(random_lab(k, 12), "gaussian", sigma=50.0)
    fast = QuadraticFormSearch.build(vectors, a, power=1 / 3, blocks=blocks, weights=weights)
    naive = NaiveQuadraticFormSearch(vectors, a, power=1 / 3, blocks=blocks, weights=weights)
    query = random_histograms(1, k * blocks, 13, blocks)
    for n in (5, 0):
        (fr,), (fd,) = fast.search(query, n)
        (nr,), (nd,) = naive.search(query, n)
        np.testing.assert_array_equal(fr, nr)
        np.testing.assert_allclose(fd, nd, rtol=1e-9, atol=1e-12)
    # the weights really count: per-block distances summed by hand
    x, q = vectors[5].astype(np.float64) ** (1 / 3), query[0].astype(np.float64) ** (1 / 3)
    diff = (x - q).reshape(blocks, k)
    by_hand = np.sqrt(sum(w * d @ a @ d for w, d in zip(weights, diff)))
    np.testing.assert_allclose(naive.distances(query[0])[5], by_hand, rtol=1e-12)
    unweighted = NaiveQuadraticFormSearch(vectors, a, power=1 / 3, blocks=blocks).distances(query[0])[5]
    assert abs(unweighted - by_hand) > 1e-3


def test_comparison_distances_weigh_blocks():
    x = np.array([[0.5, 0.5, 1.0, 0.0]], np.float32)  # two blocks of two colours
    q = np.array([0.5, 0.5, 0.0, 1.0], np.float32)
    np.testing.assert_allclose(L1Search(x, 2, [1.0, 0.25]).distances(q), [0.5])
    np.testing.assert_allclose(IntersectionSearch(x, 2, [1.0, 0.25]).distances(q), [0.25])
    np.testing.assert_allclose(ChiSquaredSearch(x, 2, [1.0, 0.25]).distances(q), [0.25])


def test_block_weights_must_match_the_blocks():
    vectors = random_histograms(5, 8, 1, 2)
    a = similarity_matrix(random_lab(4, 1), "gaussian")
    with pytest.raises(ValueError, match="one per block"):
        QuadraticFormSearch.build(vectors, a, blocks=2, weights=[1.0])
    with pytest.raises(ValueError, match="positive"):
        L1Search(vectors, 2, [1.0, 0.0])


@pytest.mark.parametrize("kernel", ["qbic", "gaussian"])
def test_distance_terms_split_the_naive_distance_exactly(kernel):
    """The terms by block and colour are non-negative and add up to the naive formula's d^2; each block's terms add
    up to that block's weighted quadratic form."""
    k, blocks, weights = 16, 3, [1.0, 0.5, 0.5]
    a = similarity_matrix(random_lab(k, 3), kernel, sigma=40.0)
    root = square_root(a)
    np.testing.assert_allclose(root, root.T, atol=1e-12)
    np.testing.assert_allclose(root @ root, a, atol=1e-10)
    vectors = random_histograms(30, k * blocks, 4, blocks)
    query = random_histograms(1, k * blocks, 5, blocks)[0]
    terms, signed = distance_terms(vectors, query, root, power=1 / 3, weights=weights)
    assert terms.shape == signed.shape == (30, blocks, k) and (terms >= 0).all()
    naive = NaiveQuadraticFormSearch(vectors, a, power=1 / 3, blocks=blocks, weights=weights).distances(query)
    np.testing.assert_allclose(np.sqrt(terms.sum(axis=(1, 2))), naive, rtol=1e-9)
    x, q = vectors[7].astype(np.float64) ** (1 / 3), query.astype(np.float64) ** (1 / 3)
    for b, w in enumerate(weights):
        d = (x - q)[b * k : (b + 1) * k]
        np.testing.assert_allclose(terms[7, b].sum(), w * d @ a @ d, rtol=1e-9)


def test_distance_terms_say_which_colour_there_is_more_of():
    """Two far-apart colours (A nearly the identity): an image with more of colour 0 than the query gets a positive
    sign on colour 0 and a negative one on colour 1, and nearly all of d^2 on those two."""
    a = similarity_matrix(np.array([[20.0, 0, 0], [80.0, 60, 60], [50.0, -60, 40]]), "gaussian", sigma=400.0)
    terms, signed = distance_terms([[0.7, 0.1, 0.2]], [0.2, 0.6, 0.2], square_root(a))
    assert signed[0, 0, 0] > 0 > signed[0, 0, 1]
    assert terms[0, 0, :2].sum() > 0.99 * terms.sum()
    with pytest.raises(ValueError, match="weights"):
        distance_terms([[0.5, 0.5, 0.0]], [0.2, 0.6, 0.2], square_root(a), weights=[1.0, 1.0])
