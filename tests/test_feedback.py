"""Several examples and relevance feedback: the feedback model against dense formulas, searches by a point and
blocked full rankings against the naive exact ranking, ties included."""

import numpy as np
import pytest

from cbir.core.backends import QuadraticFormSearch
from cbir.core.feedback import FeedbackModel
from cbir.core.qfd import similarity_matrix


def reference_order(distances):
    """Rows by exact distance, ties by row: what every ranking must equal."""
    return np.lexsort((np.arange(len(distances)), distances))


def histograms(rng, count, blocks=2, k=6):
    x = rng.gamma(0.6, size=(count, blocks, k))
    return (x / x.sum(2, keepdims=True)).reshape(count, blocks * k).astype(np.float32)


@pytest.fixture
def engine():
    rng = np.random.default_rng(3)
    colours = rng.uniform([0, -60, -60], [100, 60, 60], (6, 3))
    vectors = histograms(rng, 300)
    vectors[7] = vectors[3]  # exact duplicates tie
    vectors[150] = vectors[3]
    return QuadraticFormSearch.build(vectors, similarity_matrix(colours, "gaussian", 20.0), power=1 / 3, blocks=2,
                                     weights=[1.0, 0.5])


# --- the model ---------------------------------------------------------------------------------------------
def naive_model(points, k):
    """Mean and W from every point's k nearest others, by brute force in float64."""
    points = np.asarray(points, np.float64)
    differences = []
    for i, p in enumerate(points):
        d = ((points - p) ** 2).sum(1)
        d[i] = np.inf
        differences += [p - points[j] for j in np.argsort(d)[:k]]
    differences = np.array(differences)
    return points.mean(0), differences.T @ differences / (2 * len(differences))


def naive_point(mean, within, positives, negatives, reach, ridge, negative_weight, spread):
    """The module's formula with dense matrices and a plain inverse."""
    centre = positives.mean(0)
    away = mean if len(negatives) == 0 else negative_weight * negatives.mean(0) + (1 - negative_weight) * mean
    delta = centre - away
    spreads = (positives - centre) / np.sqrt(len(positives))
    scatter = spreads.T @ spreads
    if np.trace(scatter) > 0:
        scatter *= spread * np.trace(within) / np.trace(scatter)
    direction = np.linalg.inv(within + ridge * np.trace(within) / len(within) * np.eye(len(within)) + scatter) @ delta
    return centre + reach * direction * np.linalg.norm(delta) / np.linalg.norm(direction)


def test_model_and_point_equal_the_dense_formulas():
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(120, 5)) * [3, 1, 1, 0.5, 2]
    model = FeedbackModel.learn(cloud.astype(np.float32), neighbours=2)
    mean, within = naive_model(cloud.astype(np.float32), 2)
    np.testing.assert_allclose(model.mean, mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose((model.vectors * model.values) @ model.vectors.T, within, rtol=1e-6, atol=1e-6)
    for positives, negatives in [(cloud[:4], cloud[4:7]), (cloud[:1], cloud[4:6]), (cloud[:3], cloud[:0])]:
        for settings in [dict(reach=12.0, ridge=1.0, negative_weight=0.7, spread=1.0),
                         dict(reach=2.0, ridge=0.1, negative_weight=0.3, spread=3.0)]:
            expected = naive_point(mean, within, positives, negatives, **settings)
            np.testing.assert_allclose(model.point(positives, negatives, **settings), expected, rtol=1e-7, atol=1e-9)


def test_model_samples_large_collections_and_checks_its_input():
    rng = np.random.default_rng(1)
    cloud = rng.normal(size=(500, 3)).astype(np.float32)
    sampled = FeedbackModel.learn(cloud, sample=100, seed=4)
    rows = np.sort(np.random.default_rng(4).choice(500, 100, replace=False))
    _, within = naive_model(cloud[rows], 3)
    np.testing.assert_allclose((sampled.vectors * sampled.values) @ sampled.vectors.T, within, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sampled.mean, cloud.mean(0, dtype=np.float64))  # the mean is of everything
    single = FeedbackModel.learn(cloud[:1])  # nothing to learn W from: the direction is delta itself
    assert (single.values == 0).all()
    np.testing.assert_allclose(single.point(cloud[1:3], reach=1.0),
                               2 * cloud[1:3].mean(0) - cloud[0], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="positive example"):
        sampled.point(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        sampled.point(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        sampled.point([[np.nan, 0, 0]])
    with pytest.raises(ValueError, match="non-empty"):
        FeedbackModel.learn(np.zeros((0, 3)))


# --- searching by a point, full rankings -------------------------------------------------------------------
def test_search_points_equals_the_naive_ranking(engine):
    rng = np.random.default_rng(2)
    points = engine.transform64(histograms(rng, 3)) + rng.normal(0, 0.3, (3, engine.transformed.shape[1]))
    points[2] = engine.transform64(engine.vectors[3:4])[0]  # a stored point: three rows at distance 0
    stored = engine.transform64(engine.vectors)
    rows, distances = engine.search_points(points, n=15)
    for point, got, got_distances in zip(points, rows, distances):
        exact = np.sqrt(((stored - point) ** 2).sum(1))
        expected = reference_order(exact)[:15]
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_allclose(got_distances, exact[expected], rtol=1e-12, atol=1e-12)
    assert list(rows[2][:3]) == [3, 7, 150]


def test_a_histogram_as_a_point_has_its_quadratic_form_distances(engine):
    query = engine.vectors[10]
    by_point = engine.exact_to_point(np.arange(300), engine.transform64(query[None])[0])
    np.testing.assert_allclose(by_point, engine.exact(np.arange(300), query), rtol=1e-9, atol=1e-12)


def test_full_rankings_equal_the_exact_order_of_every_query(engine):
    queries = engine.vectors[[3, 10, 150, 299]]
    rows = np.arange(0, 300, 2)  # a subset: the labelled images of an experiment
    for query, ranked in zip(queries, engine.full_rankings(queries, rows=rows, block=3)):
        np.testing.assert_array_equal(ranked, rows[reference_order(engine.exact(rows, query))])
    points = engine.transform64(queries) * 1.1
    for point, ranked in zip(points, engine.full_rankings(points=points, block=2)):
        np.testing.assert_array_equal(ranked, reference_order(engine.exact_to_point(np.arange(300), point)))
    with pytest.raises(ValueError, match="either"):
        next(engine.full_rankings())


def test_full_rankings_follow_the_exact_values_where_float_rounding_decides():
    """Bins permuted: with A = I and a flat query every row is at the same distance in exact arithmetic. The
    exact formula rounds them all to one value (so the order is by row); the product ||y||^2 + ||q||^2 - 2 y.q
    rounds them apart, and sorted alone would scramble them. The order must be the exact formula's."""
    rng = np.random.default_rng(8)
    base = rng.gamma(0.5, size=16)
    base /= base.sum()
    vectors = np.array([rng.permutation(base) for _ in range(400)], np.float32)
    search = QuadraticFormSearch.build(vectors, np.eye(16), power=1.0)
    flat = np.full((1, 16), 1 / 16, np.float32)
    exact = search.exact(np.arange(400), flat[0])
    stored, query = search.transform64(vectors), search.transform64(flat)[0]
    product = (stored**2).sum(1) + query @ query - 2 * stored @ query
    assert not np.array_equal(np.argsort(product, kind="stable"), reference_order(exact))  # the trap is set
    ranked = next(search.full_rankings(flat))
    np.testing.assert_array_equal(ranked, reference_order(exact))


# --- through Index -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from helpers import write_photos

    from cbir import Index

    folder = write_photos(tmp_path_factory.mktemp("feedback") / "photos", 24)
    db = folder.parent / "f.db"
    with Index.open(db, create=True) as index:
        index.add(folder, settings={"colors": 8})
        ids, paths = index.image_paths()
    return db, ids, paths


def ranked_by_point(index, histograms, liked):
    """The naive ranking for examples given as histograms (the first ``liked`` positive): every image's exact
    distance to the feedback point, sorted (ties by row)."""
    engine = index._loaded()
    points = engine.backend.transform64(np.asarray(histograms, np.float32))
    point = engine.feedback.point(points[:liked], points[liked:])
    exact = engine.backend.exact_to_point(np.arange(len(engine.ids)), point)
    order = reference_order(exact)
    return [int(i) for i in engine.ids[order]], exact[order]


def test_search_by_several_examples_of_every_kind_equals_the_naive_ranking(indexed):
    from cbir import Index, parse_target, read_image

    db, ids, paths = indexed
    red = parse_target(["#d03020:60"])
    with Index.open(db) as index:
        examples = [paths[0], read_image(paths[1]), int(ids[2]), red]
        histograms = [index.query_vector(paths[0]), index.query_vector(paths[1]), index.histograms([ids[2]])[0],
                      index.colour_vector(red)]
        for liked, disliked in [([0, 1], []), ([0, 1, 2, 3], []), ([0], [3]), ([2, 3], [0]), ([3], [1, 2])]:
            results = index.search([examples[i] for i in liked], n=0, negative=[examples[i] for i in disliked])
            expected_ids, expected_distances = ranked_by_point(index, [histograms[i] for i in liked + disliked],
                                                               len(liked))
            assert [r.image_id for r in results] == expected_ids, (liked, disliked)
            np.testing.assert_allclose([r.distance for r in results], expected_distances, rtol=1e-12)
            assert [r.rank for r in results] == list(range(1, len(ids) + 1))


def test_one_example_alone_is_the_plain_search(indexed):
    from cbir import Index

    db, ids, paths = indexed
    with Index.open(db) as index:
        plain = index.search_vectors([index.query_vector(paths[5])], n=5)[0]
        assert index.search(paths[5], n=5, skip_self=False) == plain
        assert index.search([paths[5]], n=5, skip_self=False) == plain
        skipped = [(r.image_id, r.distance) for r in index.search(paths[5], n=5)]  # the query file left out
        assert skipped == [(r.image_id, r.distance) for r in index.search_vectors([index.query_vector(paths[5])], n=6)[0]
                           if r.image_id != ids[5]]
        by_id = index.search(int(ids[5]), n=5)
        assert [r.image_id for r in by_id] == [r.image_id for r in plain] and by_id[0].distance == 0.0
        # the same files by id and by path: the same histograms, the same ranking
        together = index.search([paths[5], paths[6]], n=5)
        assert index.search([ids[5], ids[6]], n=5) == together


def test_negative_examples_push_their_likes_down(indexed):
    from cbir import Index

    db, _ids, paths = indexed
    with Index.open(db) as index:
        before = [r.image_id for r in index.search([paths[0], paths[1]], n=0)]
        disliked = before[2]
        after = [r.image_id for r in index.search([paths[0], paths[1]], n=0, negative=[disliked])]
        assert after.index(disliked) > before.index(disliked)


def test_bad_examples_are_refused_with_the_fix(indexed):
    from cbir import Index

    db, ids, paths = indexed
    with Index.open(db) as index:
        for query, negative, message in [([], (), "at least one example"), (True, (), "not an example"),
                                         ([paths[0], 2.5], (), "not an example"),
                                         (int(ids.max()) + 7, (), "no indexed image has id"),
                                         (paths[0], [int(ids.max()) + 7], "no indexed image has id")]:
            with pytest.raises(ValueError, match=message):
                index.search(query, negative=negative)


def test_full_rankings_with_feedback_equal_the_search(indexed):
    from cbir import Index

    db, ids, _paths = indexed
    with Index.open(db) as index:
        queries = [int(ids[0]), int(ids[3]), int(ids[9])]
        relevant = [[int(ids[1]), int(ids[2])], [], []]
        not_relevant = [[int(ids[4])], [int(ids[5])], []]
        ranked = list(index.full_rankings(queries, relevant=relevant, not_relevant=not_relevant))
        for query, liked, disliked, got in zip(queries, relevant, not_relevant, ranked):
            expected = [r.image_id for r in index.search([query, *liked], negative=disliked, n=0)]
            assert list(got) == expected
        among = ids[::2]
        got = next(index.full_rankings([int(ids[0])], among=among, relevant=[[int(ids[2])]], not_relevant=[[]]))
        full = [r.image_id for r in index.search([int(ids[0]), int(ids[2])], n=0)]
        assert list(got) == [i for i in full if i in set(among.tolist())]
        with pytest.raises(ValueError, match="quadratic form only"):
            index.full_rankings(queries, distance="l1", relevant=relevant)


# --- the command line --------------------------------------------------------------------------------------
def test_query_together_and_not_on_the_command_line(cli, indexed):
    import json

    from cbir import Index

    db, _ids, paths = indexed
    code, out, err = cli("query", paths[0], paths[1], "--together", "--not", paths[2], "--db", db, "-n", 4, "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1  # one ranking for the set
    assert lines[0]["examples"] == [paths[0], paths[1]] and lines[0]["not"] == [paths[2]]
    with Index.open(db) as index:
        expected = index.search([paths[0], paths[1]], n=4, negative=[paths[2]])
    assert [r["path"] for r in lines[0]["results"]] == [r.path for r in expected]
    assert [r["distance"] for r in lines[0]["results"]] == [round(r.distance, 6) for r in expected]
    # without --together: one ranking per image, each ranked unlike the --not-color colours
    code, out, err = cli("query", paths[0], paths[1], "--not-color", "red:40", "--db", db, "-n", 3, "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and lines[1]["not"] == ["red 40%, any colour 60%"]
    with Index.open(db) as index:
        from cbir import parse_target

        expected = index.search(paths[1], n=3, negative=[parse_target(["red:40"])])
    assert [r["path"] for r in lines[1]["results"]] == [r.path for r in expected]
    # an image and a colour query together, as a table
    code, out, err = cli("query", paths[3], "--color", "blue:30", "--together", "--db", db, "-n", 2)
    assert code == 0, err
    assert f"blue 30%, any colour 70% + {paths[3].rsplit('/', 1)[-1]}" in out
    code, _, err = cli("query", paths[3], "--not", "/no/such.jpg", "--db", db)
    assert code == 1 and err.startswith("Error:")
