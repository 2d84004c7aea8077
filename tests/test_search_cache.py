"""The search cache (the transformed matrix of a large index, in a file beside the database): opening from it gives
the same engine as transforming the histograms, and any change to what the search reads outdates it."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import cbir.index.api
import cbir.index.search_cache as search_cache
from cbir import Index, Tuning
from cbir.index.engine import load_engine
from cbir.store import Store

LARGE = Tuning(raw_in_memory_bytes=0, search_cache_rows=0)  # every index streamed when opened, and given a cache


def open_large(path):
    return Index.open(path, create=True, tuning=LARGE)


def load(store, ranking=None, **options):
    return load_engine(store, ranking, tuning=LARGE, **options)


def assert_same_engine(a, b):
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.backend.transformed, b.backend.transformed)
    np.testing.assert_array_equal(a.backend._half_norms, b.backend._half_norms)
    queries = b.backend.vectors[[0, 5, 11]]
    for n in (4, 0):
        (rows_a, distances_a), (rows_b, distances_b) = a.backend.search(queries, n), b.backend.search(queries, n)
        for x, y in zip(rows_a + distances_a, rows_b + distances_b):
            np.testing.assert_array_equal(x, y)


def test_an_index_run_caches_the_transformed_matrix_and_opening_reads_it(many_photos, tmp_path, cli):
    with open_large(tmp_path / "i.db") as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global+2x2"})
        assert index.info()["search_cache_rows"] == 40
        assert "search cache: 40 transformed rows" in cli("info", "--db", tmp_path / "i.db")[1]
        cached = load(index._store)
        transformed = load(index._store, use_cache=False)
        assert cached.cached and not transformed.cached
        assert_same_engine(cached, transformed)
        assert not search_cache.refresh(index._store, LARGE)  # current: nothing to do
        results = index.search(many_photos / "p000.png", 5, skip_self=False)
        assert index._loaded().cached and results[0].stored_path == "photos/p000.png" and results[0].distance == 0


@pytest.mark.parametrize("raw_in_memory_bytes", [64 << 20, 0])  # in memory; or streamed, but quick to open
def test_a_small_index_has_no_cache(many_photos, tmp_path, raw_in_memory_bytes):
    with Index.open(tmp_path / "i.db", create=True, tuning=Tuning(raw_in_memory_bytes=raw_in_memory_bytes)) as index:
        index.add([many_photos], settings={"colors": 8})
        assert not index._loaded().cached and not os.path.exists(search_cache.path_of(index._store))
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


def quick_first(*cases):
    """The first case in the quick loop, the others in the full suite (each indexes 40 photos afresh)."""
    return [cases[0], *(pytest.param(case, marks=pytest.mark.slow) for case in cases[1:])]


@pytest.mark.parametrize("change", quick_first(change_a_histogram, add_an_image, forget_an_image,
                                               delete_an_image_row_by_hand, renumber_an_image, change_the_codebook))
def test_any_change_to_what_the_search_reads_drops_the_cache(many_photos, tmp_path, change):
    with open_large(tmp_path / "i.db") as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        store = index._store
        ids = load(store).ids
        with store.db.atomic():
            change(store, ids)
        assert search_cache.header(store) is None and os.path.exists(search_cache.path_of(store))  # there, not current
        after = load(store)
        assert not after.cached
        assert search_cache.refresh(store, LARGE)  # what the next index run does
        assert_same_engine(load(store), after)


def test_files_touched_but_unchanged_keep_the_cache(many_photos, tmp_path):
    with open_large(tmp_path / "i.db") as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        image_id = int(load(index._store).ids[0])
        index._store.write_batch(touched=[(image_id, 123, 456)])
        assert load(index._store).cached


def test_other_ranking_settings_transform_the_histograms(many_photos, tmp_path):
    with open_large(tmp_path / "i.db") as index:
        index.add([many_photos], settings={"colors": 8})
        ranking = {"power": 0.5, "sigma": 20.0}
        other = load(index._store, ranking)
        assert not other.cached
        assert_same_engine(other, load(index._store, ranking, use_cache=False))
        index.add([many_photos], settings=ranking)  # stored as the new defaults: the next run caches them
        assert load(index._store).cached
        assert_same_engine(load(index._store), other)


def test_a_cache_made_before_a_commit_it_did_not_see_is_not_used(many_photos, tmp_path):
    db = tmp_path / "i.db"
    with open_large(db) as index:
        index.add([many_photos / "sub"], settings={"colors": 8, "layout": "global"})
        store = index._store
        with store.snapshot():
            engine, state = load(store, use_cache=False), store.change_state()
        with Store.open(db) as writer:  # another process adds an image after the matrix was read
            writer.lock_for_writing()
            add_an_image(writer, None)
        search_cache.write(store, engine.backend.transform_key(), engine.ids, engine.backend.transformed, state)
        assert search_cache.header(store) is None
        assert not load(store).cached and len(load(store).ids) == len(engine.ids) + 1


def rewrite_header(path, **changes):
    """Change fields of a cache file's header (each a value, or a function of the old value); returns where the
    ids start."""
    data = path.read_bytes()
    magic = b"cbir search cache 1\n"
    length = int.from_bytes(data[len(magic) : len(magic) + 8], "little")
    header = json.loads(data[len(magic) + 8 : len(magic) + 8 + length])
    header.update({k: v(header[k]) if callable(v) else v for k, v in changes.items()})
    new = json.dumps(header).encode()
    path.write_bytes(magic + len(new).to_bytes(8, "little") + new + data[len(magic) + 8 + length :])
    return len(magic) + 8 + len(new)


def cut_short(path):
    path.write_bytes(path.read_bytes()[:-20])


def not_a_cache(path):
    path.write_bytes(b"PK\x03\x04" + path.read_bytes()[4:])


def fewer_rows(path):
    rewrite_header(path, rows=3)


def rows_not_a_number(path):
    rewrite_header(path, rows="many")


def an_older_generation(path):
    rewrite_header(path, generation="0" * 32)  # the state token of another moment


def another_database(path):
    rewrite_header(path, database_id="0" * 32)


def zero_ids(path):
    start = rewrite_header(path)
    data = bytearray(path.read_bytes())
    data[start : start + 40 * 8] = bytes(40 * 8)
    path.write_bytes(bytes(data))


def nan_values(path):
    start = rewrite_header(path) + 40 * 8
    data = bytearray(path.read_bytes())
    data[start:] = np.full(40 * 8, np.nan, "<f4").tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", quick_first(cut_short, not_a_cache, fewer_rows, rows_not_a_number,
                                               an_older_generation, another_database, zero_ids, nan_values))
def test_a_damaged_or_foreign_cache_is_ignored(many_photos, tmp_path, damage):
    with open_large(tmp_path / "i.db") as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        assert load(index._store).cached
        damage(Path(search_cache.path_of(index._store)))
        engine = load(index._store)
        assert not engine.cached
        assert_same_engine(engine, load(index._store, use_cache=False))


def test_ctrl_c_while_caching_keeps_the_index_and_leaves_no_cache(many_photos, tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    with open_large(tmp_path / "i.db") as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        add_an_image(index._store, None)  # the cache is out of date now
        with monkeypatch.context() as patch:
            patch.setattr(search_cache.os, "replace", interrupted)  # the file is written, not yet in place
            report = index.add([many_photos])
        assert report.interrupted and report.unchanged == 40
        assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
        assert not load(index._store).cached
        assert not index.add([many_photos]).interrupted and load(index._store).cached


def test_check_compares_the_cache_with_the_histograms(many_photos, tmp_path):
    from cbir.index.check import check_database

    db = tmp_path / "i.db"
    with open_large(db) as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
    report = check_database(db)
    assert report.ok and [f.ok for f in report.findings if f.name == "search_cache"] == [True]
    path = Path(str(db) + "-search-cache")  # same sizes, other values: only a comparison can tell
    start = rewrite_header(path) + 40 * 8
    path.write_bytes(path.read_bytes()[:start] + bytes(40 * 8 * 4))
    report = check_database(db)
    finding = [f for f in report.findings if f.name == "search_cache"]
    assert not report.ok and len(finding) == 1 and "differs from the histograms in 40 rows" in finding[0].detail


def test_check_of_an_index_without_cache_has_no_cache_finding(many_photos, tmp_path):
    from cbir.index.check import check_database

    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8})
    report = check_database(tmp_path / "i.db")
    assert report.ok and "search_cache" not in [f.name for f in report.findings]


def test_writing_the_cache_reports_progress(many_photos, tmp_path):
    with open_large(tmp_path / "i.db") as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"}, search_cache=False)
        assert not load(index._store).cached
        calls = []
        assert index.cache_for_search(lambda done, total: calls.append((done, total)))
        assert calls[-1] == (80, 80) and [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) >= 2
        assert load(index._store).cached


def test_cbir_index_writes_the_cache_and_ctrl_c_there_exits_130(many_photos, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(cbir.index.api, "DEFAULT_TUNING", LARGE)  # the command has no tuning option
    db = tmp_path / "i.db"
    code, out, err = cli("index", many_photos, "--db", db, "--codebook-size", "8", "--workers", "1")
    assert code == 3 and "added 40" in out  # 3: the two broken files
    with Store.open(db) as store:
        assert load(store).cached
        store.lock_for_writing()
        add_an_image(store, None)  # drops it

    def interrupted(self, progress=None, workers=1):
        raise KeyboardInterrupt

    monkeypatch.setattr(Index, "cache_for_search", interrupted)
    code, out, err = cli("index", many_photos, "--db", db, "--workers", "1")
    assert code == 130 and "unchanged 40" in out and "Interrupted: finished images are kept" in err


def test_an_index_that_no_longer_needs_a_cache_loses_its_file(many_photos, tmp_path, monkeypatch):
    with open_large(tmp_path / "i.db") as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        assert os.path.exists(search_cache.path_of(index._store))
        index._tuning = Tuning(raw_in_memory_bytes=0, search_cache_rows=1000)  # now quick enough to open without
        index.add([many_photos])
        assert not os.path.exists(search_cache.path_of(index._store)) and not load(index._store).cached


def test_a_fifo_at_the_cache_name_is_no_cache_and_never_blocks_a_query(many_photos, tmp_path):
    with open_large(tmp_path / "i.db") as index:
        index.add([many_photos], settings={"colors": 8, "layout": "global"})
        path = search_cache.path_of(index._store)
    os.unlink(path)
    os.mkfifo(path)  # with a plain open() every opening of the index waited here for a writer
    with open_large(tmp_path / "i.db") as index:
        assert search_cache.header(index._store) is None
        assert index.search(many_photos / "p000.png", 3, skip_self=False)[0].stored_path == "photos/p000.png"
        assert not index._loaded().cached
