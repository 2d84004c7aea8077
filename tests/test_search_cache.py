"""The search cache (the transformed matrix of a large index, kept in the database): opening from it gives the same
engine as transforming the histograms, and any change to what the search reads drops it."""

import numpy as np
import pytest

import cbir.index
from cbir import Index
from cbir.index import load_engine, refresh_search_cache
from cbir.storage import Store

from test_performance_paths import many_photos  # noqa: F401  (a fixture)


@pytest.fixture
def large(monkeypatch):
    """Every index counts as large: streamed when opened, and given a search cache."""
    monkeypatch.setattr(cbir.index, "RAW_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(cbir.index, "SEARCH_CACHE_ROWS", 0)


def assert_same_engine(a, b):
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.backend.transformed, b.backend.transformed)
    np.testing.assert_array_equal(a.backend._half_norms, b.backend._half_norms)
    queries = b.backend.vectors[[0, 5, 11]]
    for n in (4, 0):
        (rows_a, distances_a), (rows_b, distances_b) = a.backend.search(queries, n), b.backend.search(queries, n)
        for x, y in zip(rows_a + distances_a, rows_b + distances_b):
            np.testing.assert_array_equal(x, y)


def test_an_index_run_caches_the_transformed_matrix_and_opening_reads_it(many_photos, tmp_path, large, cli):
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global+2x2"})
        assert index.info()["search_cache_rows"] == 40
        assert "search cache: 40 transformed rows" in cli("info", "--db", tmp_path / "i.db")[1]
        cached = load_engine(index.store)
        transformed = load_engine(index.store, use_cache=False)
        assert cached.cached and not transformed.cached
        assert_same_engine(cached, transformed)
        assert not refresh_search_cache(index.store)  # current: nothing to do
        results = index.search(many_photos / "p000.png", 5)
        assert index.engine.cached and results[0].path == "photos/p000.png" and results[0].distance == 0


@pytest.mark.parametrize("raw_in_memory_bytes", [64 << 20, 0])  # in memory; or streamed, but quick to open
def test_a_small_index_has_no_cache(many_photos, tmp_path, monkeypatch, raw_in_memory_bytes):
    monkeypatch.setattr(cbir.index, "RAW_IN_MEMORY_BYTES", raw_in_memory_bytes)
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8})
        assert not index.engine.cached and "search_cache" not in index.store.db.table_names()
        assert index.info()["search_cache_rows"] is None


def change_a_histogram(store, ids):
    store.db.execute("UPDATE histograms SET vector = vector WHERE image_id = ?", [int(ids[0])])


def add_an_image(store, ids):
    store.write_batch([("new.jpg", 1, 2, "sha", 3, 4, np.full(8, 0.125, np.float32))])


def forget_an_image(store, ids):
    store.write_batch(removed=[store.paths_of(ids[:1])[0]])


def delete_an_image_row_by_hand(store, ids):
    store.db.execute("DELETE FROM images WHERE id = ?", [int(ids[1])])


def renumber_an_image(store, ids):
    store.db.execute("UPDATE images SET id = 100000 WHERE id = ?", [int(ids[1])])


def change_the_codebook(store, ids):
    store.db.execute("UPDATE codebook SET c0 = c0 + 1 WHERE id = 0")


@pytest.mark.parametrize("change", [change_a_histogram, add_an_image, forget_an_image, delete_an_image_row_by_hand,
                                    renumber_an_image, change_the_codebook])
def test_any_change_to_what_the_search_reads_drops_the_cache(many_photos, tmp_path, large, change):
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        store = index.store
        ids = load_engine(store).ids
        with store.db.atomic():
            change(store, ids)
        assert "search_cache" not in store.meta()
        assert store.db.execute("SELECT count(*) FROM search_cache").fetchone()[0] == 0
        after = load_engine(store)
        assert not after.cached
        assert refresh_search_cache(store)  # what the next index run does
        assert_same_engine(load_engine(store), after)


def test_files_touched_but_unchanged_keep_the_cache(many_photos, tmp_path, large):
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        image_id = int(load_engine(index.store).ids[0])
        index.store.write_batch(touched=[(image_id, 123, 456)])
        assert load_engine(index.store).cached


def test_other_ranking_settings_transform_the_histograms(many_photos, tmp_path, large):
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8})
        ranking = {"power": 0.5, "sigma": 20.0}
        other = load_engine(index.store, ranking)
        assert not other.cached
        assert_same_engine(other, load_engine(index.store, ranking, use_cache=False))
        index.add([many_photos], settings=ranking)  # stored as the new defaults: the next run caches them
        assert load_engine(index.store).cached
        assert_same_engine(load_engine(index.store), other)


def test_a_cache_is_not_written_over_a_commit_it_did_not_see(many_photos, tmp_path, large):
    db = tmp_path / "i.db"
    with Index.open(db, create=True) as index:
        index.add([many_photos / "sub"], settings={"colors": 8, "layout": "global"})
        store = index.store
        with store.snapshot():
            engine = load_engine(store, use_cache=False)
        with Store.open(db) as writer:  # another process adds an image after the matrix was read
            add_an_image(writer, None)
        assert not store.write_search_cache(engine.backend.transform_key(), engine.ids,
                                            engine.backend.transformed, engine.version)
        assert not load_engine(store).cached and len(load_engine(store).ids) == len(engine.ids) + 1


@pytest.mark.parametrize("damage", [
    "UPDATE search_cache SET vectors = substr(vectors, 1, 12) WHERE chunk = 0",
    "UPDATE search_cache SET ids = NULL",
    "DELETE FROM search_cache",
    "UPDATE meta SET value = json_set(value, '$.rows', 3) WHERE key = 'search_cache'",
    "UPDATE meta SET value = json_set(value, '$.rows', 'many') WHERE key = 'search_cache'",
    "UPDATE search_cache SET ids = zeroblob(length(ids))",
    ("UPDATE search_cache SET vectors = ?", [np.full(40 * 8, np.nan, "<f4").tobytes()]),  # right size, NaN
])
def test_a_damaged_cache_is_ignored(many_photos, tmp_path, large, damage):
    sql, parameters = (damage, []) if isinstance(damage, str) else damage
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        with index.store.db.atomic():
            index.store.db.execute(sql, parameters)
        engine = load_engine(index.store)
        assert not engine.cached
        assert_same_engine(engine, load_engine(index.store, use_cache=False))


def test_ctrl_c_while_caching_keeps_the_index_and_leaves_no_cache(many_photos, tmp_path, large, monkeypatch):
    def interrupted(store, values):
        raise KeyboardInterrupt

    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        add_an_image(index.store, None)  # drops the cache
        with monkeypatch.context() as patch:
            patch.setattr(Store, "_set_meta", interrupted)  # the cache's last write: its rows are in by then
            report = index.add([many_photos])
        assert report.interrupted and report.unchanged == 40
        assert index.store.db.execute("SELECT count(*) FROM search_cache").fetchone()[0] == 0
        assert not load_engine(index.store).cached
        assert not index.add([many_photos]).interrupted and load_engine(index.store).cached


def test_check_compares_the_cache_with_the_histograms(many_photos, tmp_path, large):
    from cbir.check import check_database

    db = tmp_path / "i.db"
    with Index.open(db, create=True) as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
    report = check_database(db)
    assert report.ok and [f.ok for f in report.findings if f.name == "search_cache"] == [True]
    with Store.open(db) as store, store.db.atomic():  # same sizes, other values: only a comparison can tell
        store.db.execute("UPDATE search_cache SET vectors = zeroblob(length(vectors))")
    report = check_database(db)
    finding = [f for f in report.findings if f.name == "search_cache"]
    assert not report.ok and len(finding) == 1 and "differs from the histograms in 40 rows" in finding[0].detail


def test_check_of_an_index_without_cache_has_no_cache_finding(many_photos, tmp_path):
    from cbir.check import check_database

    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8})
    report = check_database(tmp_path / "i.db")
    assert report.ok and "search_cache" not in [f.name for f in report.findings]


def test_writing_the_cache_reports_progress(many_photos, tmp_path, large):
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"}, search_cache=False)
        assert not load_engine(index.store).cached
        calls = []
        assert index.cache_for_search(lambda done, total: calls.append((done, total)))
        assert calls[-1] == (80, 80) and [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) >= 2
        assert load_engine(index.store).cached


def test_cbir_index_writes_the_cache_and_ctrl_c_there_exits_130(many_photos, tmp_path, large, cli, monkeypatch):
    db = tmp_path / "i.db"
    code, out, err = cli("index", many_photos, "--db", db, "--colors", "8", "--workers", "1")
    assert code == 3 and "added 40" in out  # 3: the two broken files
    with Store.open(db) as store:
        assert load_engine(store).cached
        add_an_image(store, None)  # drops it

    def interrupted(self, progress=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(Index, "cache_for_search", interrupted)
    code, out, err = cli("index", many_photos, "--db", db, "--workers", "1")
    assert code == 130 and "unchanged 40" in out and "Interrupted: finished images are kept" in err
