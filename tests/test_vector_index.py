"""The vector index of a very large index, reached here with a few photos through Tuning(vector_index_bytes=1):
exact distances, never used out of date, incremental, removed images never returned, crashes leave old or none."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import write_photos

from cbir import Index, Tuning
from cbir.core.backends import NaiveQuadraticFormSearch, QuadraticFormSearch
from cbir.core.qfd import similarity_matrix

pytest.importorskip("usearch")
from cbir.core import ann  # noqa: E402
from cbir.index import vector_index  # noqa: E402

VERY_LARGE = Tuning(vector_index_bytes=1)  # every index gets a vector index
SETTINGS = {"colors": 16}  # 10 x 16 = 160 values per histogram: projected on 128 axes


@pytest.fixture
def photos(tmp_path):
    return write_photos(tmp_path / "photos", 40)


def open_index(db, **kwargs):
    return Index.open(db, create=True, tuning=VERY_LARGE, **kwargs)


def naive_ranking(index, query_vector, n):
    """The formula, pair by pair, over the stored histograms: [(image id, distance)] best first."""
    engine = index._loaded(exact=True)
    ids = index._store.image_ids()
    vectors = index.histograms(ids)
    settings = engine.settings
    from cbir.core.histogram import block_weights, n_blocks
    naive = NaiveQuadraticFormSearch(vectors, similarity_matrix(engine.codebook, settings.kernel, settings.sigma),
                                     power=settings.power, blocks=n_blocks(settings.layout),
                                     weights=block_weights(settings.layout))
    rows, distances = naive.search(query_vector[None], n)
    return [(int(ids[r]), float(d)) for r, d in zip(rows[0], distances[0])]


def ranking(results):
    return [(r.image_id, r.distance) for r in results]


def assert_same(found, expected):
    assert [i for i, _ in found] == [i for i, _ in expected]
    np.testing.assert_allclose([d for _, d in found], [d for _, d in expected], rtol=1e-12, atol=1e-12)


def test_candidates_from_the_vector_index_are_reported_with_exact_distances(photos, tmp_path):
    with open_index(tmp_path / "i.db") as index:
        index.add([photos], settings=SETTINGS)
        assert index.vector_index_state() == "current" and index.info()["vector_index_rows"] == 40
        assert os.path.exists(vector_index.path_of(index._store))
        assert not os.path.exists(index._store.path + "-search-cache")  # no transformed matrix kept
        for name in ("p0.png", "p7.png", "p31.png"):
            query = index.query_vector(photos / name)
            found = ranking(index.search(photos / name, n=8, skip_self=False))
            assert_same(found, naive_ranking(index, query, 8))
            assert_same(ranking(index.search(photos / name, n=8, skip_self=False, exact=True)), found)
            assert found[0][1] == 0.0


def test_an_out_of_date_vector_index_is_never_used(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        before = vector_index.header(index._store)
    more = write_photos(tmp_path / "more", 5, size=(36, 60))
    shutil.copy(more / "p1.png", photos / "new.png")
    with open_index(db) as index:
        index.add([photos], search_cache=False)  # a run that stops before the vector index (as if killed there)
        assert vector_index.header(index._store) == before  # the file is there, for an older state
        assert index.vector_index_state() == "outdated"
        results = index.search(photos / "new.png", n=3, skip_self=False)
        assert results[0].path.endswith("new.png") and results[0].distance == 0.0  # read from the histograms
        assert_same(ranking(results), naive_ranking(index, index.query_vector(photos / "new.png"), 3))


def test_added_and_removed_images_update_it_incrementally(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        first = vector_index.header(index._store)
    extra = write_photos(tmp_path / "extra", 6, size=(50, 30))
    for i in range(6):
        shutil.copy(extra / f"p{i}.png", photos / f"x{i}.png")
    removed = ["p3.png", "p4.png", "p20.png"]
    for name in removed:
        os.unlink(photos / name)
    with open_index(db) as index:
        report = index.add([photos])
        assert (report.added, report.removed) == (6, 3)
        after = vector_index.header(index._store)
        assert after["rows"] == 43 and after["fitted_rows"] == first["fitted_rows"] == 40  # not built again
        assert after["changed_since_fit"] == 9 and after["log_seq"] > first["log_seq"]
        found = vector_index.read(index._store, after["key"], after["dimension"])
        assert sorted(found.ids.tolist()) == sorted(index._store.image_ids().tolist())
        stored = {r.stored_path for r in index.search(photos / "p5.png", n=43, skip_self=False)}
        assert not {f"photos/{name}" for name in removed} & stored and len(stored) == 43
        assert index._store.change_log()[0] == after["log_seq"]  # what the file took in is pruned from the log
        for name in ("x2.png", "p5.png"):
            assert_same(ranking(index.search(photos / name, n=6, skip_self=False)),
                        naive_ranking(index, index.query_vector(photos / name), 6))


def test_removed_images_are_never_returned_even_before_it_is_updated(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
    with sqlite3.connect(db) as conn:  # another program removes images, leaving the vector index behind
        conn.execute("DELETE FROM histograms WHERE image_id IN (SELECT id FROM images WHERE path = 'photos/p2.png')")
        conn.execute("DELETE FROM images WHERE path = 'photos/p2.png'")
    with open_index(db) as index:
        assert index.vector_index_state() == "outdated"
        assert "photos/p2.png" not in {r.stored_path for r in index.search(photos / "p2.png", n=39, skip_self=False)}
        index.cache_for_search()
        assert index.vector_index_state() == "current"
        assert "photos/p2.png" not in {r.stored_path for r in index.search(photos / "p2.png", n=39, skip_self=False)}


def test_a_histogram_changed_in_place_is_taken_in(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        image_id = index.search(photos / "p9.png", n=1, skip_self=False)[0].image_id
        replacement = index._store._blob(index.query_vector(photos / "p1.png"))
    with sqlite3.connect(db) as conn:  # another program rewrites one histogram
        conn.execute("UPDATE histograms SET vector = ? WHERE image_id = ?", [replacement, image_id])
    with open_index(db) as index:
        index.cache_for_search()
        assert vector_index.header(index._store)["fitted_rows"] == 40  # updated, not rebuilt
        best = index.search(photos / "p1.png", n=2, skip_self=False)
        assert {r.stored_path for r in best} == {"photos/p1.png", "photos/p9.png"} and best[1].distance == 0.0


def test_new_ranking_settings_or_codebook_build_it_again(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        first = vector_index.header(index._store)
        index.add([photos], settings={"sigma": 100.0})  # a ranking setting: another transform
        second = vector_index.header(index._store)
        assert second["key"] != first["key"] and index.vector_index_state() == "current"
        assert_same(ranking(index.search(photos / "p6.png", n=5, skip_self=False)),
                    naive_ranking(index, index.query_vector(photos / "p6.png"), 5))
        index.add([photos], rebuild=True)  # a new codebook
        assert vector_index.header(index._store)["generation"] != second["generation"]
        assert index.vector_index_state() == "current"


def test_ranking_overrides_at_query_time_search_exactly(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
    with Index.open(db, ranking={"power": 0.5}, tuning=VERY_LARGE) as index:
        assert index.vector_index_state() == "outdated"  # made for the stored settings: not for these
        assert_same(ranking(index.search(photos / "p6.png", n=5, skip_self=False)),
                    naive_ranking(index, index.query_vector(photos / "p6.png"), 5))


@pytest.mark.parametrize("damage", ["cut short", *(pytest.param(d, marks=pytest.mark.slow)  # the first one quick
                                                    for d in ("not one", "trailer lies", "other database"))])
def test_a_damaged_or_foreign_vector_index_is_ignored(photos, tmp_path, damage):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        path = vector_index.path_of(index._store)
    data = open(path, "rb").read()
    if damage == "cut short":
        data = data[: len(data) // 2] + data[-36:]
    elif damage == "not one":
        data = b"hello" * 100
    elif damage == "trailer lies":
        data = data[:-36] + (10**6).to_bytes(8, "little") + data[-28:]
    if damage == "other database":
        other = tmp_path / "other.db"
        with open_index(other) as index:
            index.add([photos], settings=SETTINGS)  # the same images and settings: only the database differs
        shutil.copy(vector_index.path_of(index._store), path)
    else:
        open(path, "wb").write(data)
    with open_index(db) as index:
        assert index.vector_index_state() == "outdated"
        assert_same(ranking(index.search(photos / "p6.png", n=5, skip_self=False)),
                    naive_ranking(index, index.query_vector(photos / "p6.png"), 5))
        assert index.cache_for_search() and index.vector_index_state() == "current"


def test_interrupted_while_writing_leaves_the_old_file_or_none(photos, tmp_path, monkeypatch):
    db = tmp_path / "i.db"
    calls = []

    def interrupted_replace(source, target):
        calls.append(target)
        raise KeyboardInterrupt

    monkeypatch.setattr(vector_index.os, "replace", interrupted_replace)
    with open_index(db) as index:
        report = index.add([photos], settings=SETTINGS)
        assert report.interrupted and calls
        assert not os.path.exists(vector_index.path_of(index._store))  # none
        assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
    monkeypatch.undo()
    with open_index(db) as index:
        index.cache_for_search()
        old = open(vector_index.path_of(index._store), "rb").read()
    shutil.copy(photos / "p1.png", photos / "again.png")
    monkeypatch.setattr(vector_index.os, "replace", interrupted_replace)
    with open_index(db) as index:
        assert index.add([photos]).interrupted
        assert open(vector_index.path_of(index._store), "rb").read() == old  # the old one, out of date now
        assert index.vector_index_state() == "outdated"


@pytest.mark.slow
def test_killed_while_building_leaves_the_old_file_or_none(photos, tmp_path):
    db = tmp_path / "i.db"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from cbir import Index, Tuning
        from cbir.core import ann
        added = ann.Graph.add
        def dying_add(self, keys, vectors, threads=1):
            added(self, keys, vectors, threads)
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-build, the graph half made
        ann.Graph.add = dying_add
        with Index.open({str(db)!r}, create=True, tuning=Tuning(vector_index_bytes=1)) as index:
            index.add([{str(photos)!r}], settings={{"colors": 16}})
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    with open_index(db) as index:
        assert index.vector_index_state() == "outdated"  # none: the histograms are searched exactly
        assert len(index.search(photos / "p1.png", n=3, skip_self=False)) == 3
        assert index.cache_for_search() and index.vector_index_state() == "current"
        old = open(vector_index.path_of(index._store), "rb").read()
    shutil.copy(photos / "p1.png", photos / "again.png")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    with open_index(db) as index:
        assert open(vector_index.path_of(index._store), "rb").read() == old  # the old one, unused
        assert index.vector_index_state() == "outdated"
        assert index.search(photos / "again.png", n=1, skip_self=False)[0].distance == 0.0


def test_an_index_that_no_longer_needs_one_drops_it_and_its_log(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        assert index._store.change_log() is not None
    with Index.open(db) as index:  # default tuning: 40 images are searched exactly
        index.cache_for_search()
        assert index.vector_index_state() == "none" and index.info()["vector_index_rows"] is None
        assert index._store.change_log() is None
        assert not {"histogram_changes"} & set(index._store.db.table_names())


def test_cli_query_exact_and_the_out_of_date_note(photos, tmp_path, cli, monkeypatch):
    import cbir.index.api

    monkeypatch.setattr(cbir.index.api, "DEFAULT_TUNING", VERY_LARGE)
    db = tmp_path / "i.db"
    code, _, err = cli("index", photos, "--db", db, "--codebook-size", "16")
    assert code == 0, err
    code, approximate, err = cli("query", photos / "p4.png", "--db", db, "--json")
    assert code == 0 and err == ""
    code, exact, err = cli("query", photos / "p4.png", "--db", db, "--json", "--exact")
    assert code == 0 and err == "" and exact == approximate
    code, out, err = cli("info", "--db", db)
    assert "vector index: 40 images (queries take candidates from it)" in out
    shutil.copy(photos / "p1.png", photos / "again.png")
    with Index.open(db, tuning=VERY_LARGE) as index:
        index.add([photos], search_cache=False)
    code, out, err = cli("query", photos / "p4.png", "--db", db)
    assert code == 0 and "vector index is out of date" in err
    code, out, err = cli("info", "--db", db)
    assert code == 0 and "vector index: 40 images (out of date: queries read every histogram" in out


def test_its_header_is_read_without_the_graph(photos, tmp_path, monkeypatch):
    """What `cbir info` reports costs a few hundred bytes of the file: viewing the graph took over a second at ten
    million images. A file whose trailer does not match its length is no vector index."""
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        monkeypatch.setattr(ann.Graph, "view", lambda *a: pytest.fail("the graph was viewed"))
        info = index.info()
        assert info["vector_index_rows"] == 40 and info["vector_index_current"]
        path = vector_index.path_of(index._store)
        with open(path, "r+b") as handle:  # one byte more: the trailer no longer ends the file
            handle.seek(0, os.SEEK_END)
            handle.write(b"\0")
        assert vector_index.header(index._store) is None
        info = index.info()
        assert info["vector_index_rows"] is None and not info["vector_index_current"]


def test_approximate_search_equals_brute_force_on_random_vectors():
    rng = np.random.default_rng(3)
    k, blocks = 12, 2
    colours = rng.uniform(0, 100, (k, 3))
    histograms = rng.dirichlet(np.ones(k) * 0.3, (500, blocks)).reshape(500, blocks * k).astype(np.float32)
    exact = QuadraticFormSearch.build(histograms, similarity_matrix(colours, "gaussian", 50.0), power=1 / 3,
                                      blocks=blocks)
    ids = np.arange(500, dtype=np.int64) * 7 + 3
    mean, axes = ann.fit_projection(exact.transform(histograms), 16)
    graph = ann.Graph.new(16)
    graph.add(ids, ann.project(exact.transform(histograms), mean, axes))
    search = ann.ApproximateQuadraticFormSearch(exact, ids, mean, axes, graph, candidates=100)
    queries = rng.dirichlet(np.ones(k) * 0.3, (10, blocks)).reshape(10, blocks * k)
    rows, distances = search.search(queries, 5)
    truth_rows, truth_distances = exact.search(queries, 5)
    for r, d, tr, td in zip(rows, distances, truth_rows, truth_distances):
        assert r.tolist() == tr.tolist()
        np.testing.assert_array_equal(d, td)  # the same exact float64 re-scoring
    with pytest.raises(ValueError, match="n >= 1"):
        search.search(queries, 0)


def test_streamed_search_equals_the_search_in_memory():
    rng = np.random.default_rng(4)
    k = 10
    histograms = rng.dirichlet(np.ones(k) * 0.5, 300).astype(np.float32)
    exact = QuadraticFormSearch.build(histograms, similarity_matrix(rng.uniform(0, 100, (k, 3))), power=0.5)
    ids = np.arange(300, dtype=np.int64) + 1000
    chunks = [(ids[s : s + 37], histograms[s : s + 37]) for s in range(0, 300, 37)]
    queries = rng.dirichlet(np.ones(k) * 0.5, 4)
    found, distances = exact.search_stream(iter(chunks), queries, 7)
    rows, truth = exact.search(queries, 7)
    for f, d, r, t in zip(found, distances, rows, truth):
        assert f.tolist() == (r + 1000).tolist()
        np.testing.assert_array_equal(d, t)


def test_check_compares_a_current_vector_index_with_the_database(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
    assert {f.name: f.ok for f in Index.check(db).findings}["vector_index"] is True
    with open_index(db) as index:  # a file claiming the current state, holding one image too few
        store = index._store
        found = vector_index.read(store, vector_index.header(store)["key"], 160)
        graph = found.editable_graph()
        graph.remove(found.ids[:1])
        vector_index.write(store, found.header, found.ids[1:], found.mean, found.axes, graph)
        assert index.vector_index_state() == "current"
    report = Index.check(db)
    assert {f.name: f.ok for f in report.findings}["vector_index"] is False and not report.ok


def test_without_usearch_a_very_large_index_is_searched_exactly(photos, tmp_path, monkeypatch, cli):
    import cbir.index.api

    monkeypatch.setattr(ann, "available", lambda: False)
    monkeypatch.setattr(cbir.index.api, "DEFAULT_TUNING", VERY_LARGE)
    db = tmp_path / "i.db"
    code, _, err = cli("index", photos, "--db", db, "--codebook-size", "16")
    assert code == 0 and err == "" and not os.path.exists(str(db) + "-vector-index")
    code, out, err = cli("query", photos / "p4.png", "--db", db, "-n", "3")
    assert code == 0 and "pip install 'cbir[scale]'" in err and "p4.png" in out


def test_remove_and_prune_take_images_out_of_it(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        first = vector_index.header(index._store)
        index.remove(photos / "p3.png")
        os.unlink(photos / "p4.png")
        index.prune()
        after = vector_index.header(index._store)
        assert index.vector_index_state() == "current"
        assert after["rows"] == 38 and after["fitted_rows"] == first["fitted_rows"]  # updated, not built again
        found = {r.stored_path for r in index.search(photos / "p3.png", n=40, skip_self=False)}
        assert len(found) == 38 and not {"photos/p3.png", "photos/p4.png"} & found


def test_feedback_and_several_examples_search_through_it(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        ids = [r.image_id for r in index.search(photos / "p0.png", n=6, skip_self=False)]
        assert index.vector_index_state() == "current"
        query = dict(query=[photos / "p0.png", ids[2], ids[4]], negative=[ids[1]], n=8)
        through_it = ranking(index.search(**query))
        assert_same(through_it, ranking(index.search(**query, exact=True)))
    with Index.open(db) as index:  # the index in memory, as a smaller one is searched: the same ranking
        assert_same(through_it, ranking(index.search(**query)))


@pytest.mark.slow  # an app and its test client: over a second
def test_read_only_opening_and_the_web_app_search_through_it(photos, tmp_path, monkeypatch):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        expected = ranking(index.search([photos / "p7.png", 3], n=5, negative=[9]))
    with Index.open(db, read_only=True, tuning=VERY_LARGE) as index:
        assert index.vector_index_state() == "current"
        assert_same(ranking(index.search([photos / "p7.png", 3], n=5, negative=[9])), expected)
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    import cbir.index.api
    from cbir.web.app import create_app

    monkeypatch.setattr(cbir.index.api, "DEFAULT_TUNING", VERY_LARGE)
    with TestClient(create_app(str(db)), base_url="http://127.0.0.1") as client:
        got = client.get("/api/search?like=3&like=7&unlike=11&n=5").json()["results"]
        with Index.open(db, read_only=True, tuning=VERY_LARGE) as index:
            assert index._loaded().approximate
            exact = index.search([3, 7], n=5 + 3, negative=[11], exact=True)
        assert [r["id"] for r in got] == [r.image_id for r in exact if r.image_id not in (3, 7, 11)][:5]


def test_a_rebuild_written_aside_brings_a_new_vector_index(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        before = vector_index.header(index._store)
        index.add([photos], rebuild=True, settings={"colors": 12})
        after = vector_index.header(index._store)
        assert after["key"] != before["key"] and index.vector_index_state() == "current"
        assert_same(ranking(index.search(photos / "p5.png", n=6, skip_self=False)),
                    naive_ranking(index, index.query_vector(photos / "p5.png"), 6))
    assert Index.check(db).ok


def test_a_fifo_or_a_planted_link_at_its_name_is_never_followed(photos, tmp_path):
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
        path = vector_index.path_of(index._store)
    os.unlink(path)
    os.mkfifo(path)  # a query must not block on it
    with open_index(db) as index:
        assert index.vector_index_state() == "outdated"
        assert len(index.search(photos / "p1.png", n=3)) == 3
    os.unlink(path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    for name in range(3):  # links planted where a fixed temporary name would be
        os.symlink(victim, f"{path}.partial" if name == 0 else f"{path}.{name}.partial")
    with open_index(db) as index:
        assert index.cache_for_search() and index.vector_index_state() == "current"
    assert victim.read_bytes() == b"keep me"


def test_opening_through_a_current_vector_index_reads_no_whole_table(photos, tmp_path):
    """At ten million images counting the rows (or reading every id) takes seconds: a search through a current
    vector index reads neither; an out-of-date one is searched exactly, and that needs them."""
    db = tmp_path / "i.db"
    with open_index(db) as index:
        index.add([photos], settings=SETTINGS)
    statements = []
    with Index.open(db, tuning=VERY_LARGE) as index:
        index._store.db.conn.set_trace_callback(statements.append)
        assert index.vector_index_state() == "current"
        assert index.search(photos / "p3.png", n=3, skip_self=False)[0].distance == 0.0
    whole = [s for s in statements if "count(" in s.lower() or s.strip().upper() == "SELECT ID FROM IMAGES"]
    assert statements and not whole, whole
    with sqlite3.connect(db) as conn:  # a change the vector index has not seen
        conn.execute("DELETE FROM images WHERE id = (SELECT max(id) FROM images)")
    statements.clear()
    with Index.open(db, tuning=VERY_LARGE) as index:
        index._store.db.conn.set_trace_callback(statements.append)
        assert index.vector_index_state() == "outdated"
    assert any("count(" in s.lower() for s in statements)
