"""The fast paths added for speed give the same results as the plain ones: JPEG decoding straight to RGB, the
truncation check, parallel indexing, chunked loading, grouped queries and the candidate selection."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from helpers import KODAK, WANG, index_rows, make_photo, naive_shares
from helpers.corpus import cmyk_jpeg, encoded, exif_jpeg

import cbir.imageio as decode
import cbir.index.api
import cbir.index.run as indexer
from cbir import CbirError, Tuning
from cbir.core.backends import NaiveQuadraticFormSearch, QuadraticFormSearch, _smallest
from cbir.core.qfd import similarity_matrix
from cbir.imageio import decode_image, write_image
from cbir.store import Store


def jpeg_variants():
    """JPEGs of every kind the decoder treats differently: colour, grayscale, CMYK, EXIF-rotated, progressive,
    restart markers, 4:2:0 and 4:4:4 chroma, and shared-data photos when present."""
    bgr = cv2.cvtColor(make_photo(5, size=(120, 176)), cv2.COLOR_RGB2BGR)
    variants = {
        "colour": encoded(bgr, ".jpg"),
        "grayscale": encoded(bgr[..., 1], ".jpg"),
        "cmyk": cmyk_jpeg((0.2, 1, 0.5, 0.1), size=(40, 56)),
        "exif": exif_jpeg(make_photo(6, size=(48, 80)), 6),
        "progressive": encoded(bgr, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "restart markers": encoded(bgr, ".jpg", [cv2.IMWRITE_JPEG_RST_INTERVAL, 1]),
        "4:4:4": encoded(bgr, ".jpg", [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
    }
    for folder, name in ((WANG, "7.jpg"), (KODAK, "kodim05.png")):
        if (folder / name).exists():
            data = (folder / name).read_bytes()
            variants[name] = data if name.endswith(".jpg") else encoded(cv2.imread(str(folder / name)), ".jpg")
    return variants


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_jpeg_decoded_to_rgb_equals_bgr_decode_reversed(factor):
    plain = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    for name, data in jpeg_variants().items():
        width, height = decode.header_size(data)
        image = decode_image(data, min_side=min(width, height) // factor)
        reference = cv2.imdecode(np.frombuffer(data, np.uint8), plain)[..., ::-1]
        assert image.dtype == np.uint8 and image.flags.c_contiguous, name
        np.testing.assert_array_equal(image, reference, err_msg=name)


def test_jpeg_decode_without_the_rgb_flag_gives_the_same_image(monkeypatch):
    variants = jpeg_variants()
    fast = {name: decode_image(data, min_side=16) for name, data in variants.items()}
    monkeypatch.setattr(decode, "_COLOR_RGB", None)  # what OpenCV < 4.11 does: decode BGR, then convert
    for name, data in variants.items():
        np.testing.assert_array_equal(decode_image(data, min_side=16), fast[name], err_msg=name)


def truncated_reference(data):
    """The truncation rule as first written: no FF D9 anywhere after the first start-of-scan marker."""
    sos = data.find(b"\xff\xda")
    return sos < 0 or data.find(b"\xff\xd9", sos) < 0


def test_truncation_check_follows_the_rule_on_every_cut_and_ending():
    data = jpeg_variants()["progressive"]  # several scans: EOI comes only after the last one
    comment = b"\xff\xfe\x00\x06\xff\xd9ab"  # a COM segment holding FF D9 before the scan: not an end marker
    candidates = [data, data + b"\x00" * 100, data + b"trailing junk", data[:2] + comment + data[2:]]
    candidates += [data[:cut] for cut in range(0, len(data), 37)] + [data[:-1], data[:-2], data[:-3]]
    candidates += [(data[:2] + comment + data[2:])[:cut] for cut in (10, 40, len(data) // 2)]
    for candidate in candidates:
        if candidate[:2] == b"\xff\xd8" and len(candidate) > 12:
            assert decode._jpeg_truncated(candidate) == truncated_reference(candidate), len(candidate)
    assert not decode._jpeg_truncated(data) and decode._jpeg_truncated(data[:-2])


@pytest.mark.slow
def test_parallel_index_writes_the_same_database(many_photos, tmp_path, monkeypatch, cli):
    monkeypatch.setattr(cbir.index.api, "DEFAULT_TUNING", Tuning(parallel_min_files=0))  # the command has no option
    results = []
    for workers in (1, 2, 3):
        db = tmp_path / f"w{workers}.db"
        code, out, err = cli("index", many_photos, "--db", db, "--codebook-size", 16, "--layout", "global+2x2",
                             "--workers", workers)
        assert code == 3 and "failed 2" in out and "Traceback" not in err
        results.append(index_rows(db))
    assert results[0]["images"] and len(results[0]["failures"]) == 2
    assert results[1] == results[0] and results[2] == results[0]


@pytest.mark.slow
def test_parallel_index_is_incremental_like_one_process(many_photos, tmp_path):
    tuning = Tuning(parallel_min_files=0)
    with Store.open(tmp_path / "i.db", create=True) as store:
        report = indexer.index_paths(store, [many_photos], {"colors": 8}, workers=2, tuning=tuning)
        assert (report.added, report.failed) == (40, 2)
        write_image(many_photos / "p000.png", make_photo(99))
        os.utime(many_photos / "sub" / "p001.jpg", ns=(5, 5))  # touched: hashed again in a worker, unchanged
        report = indexer.index_paths(store, [many_photos], workers=2, tuning=tuning)
        assert (report.added, report.updated, report.unchanged, report.failed) == (0, 1, 39, 2)


@pytest.mark.slow
def test_workers_killed_mid_run_cost_no_file(tmp_path):
    """Before issue 14 a dead worker ended the run; now the files it was on are done again alone, so a kill that
    was not their fault (the OOM killer, a stray kill) loses nothing."""
    import multiprocessing

    # Enough decoding work (200 links to one large JPEG) that the workers cannot finish before one is killed.
    folder = tmp_path / "photos"
    folder.mkdir()
    big = np.clip(np.random.default_rng(0).normal(128, 60, (900, 1200, 3)), 0, 255).astype(np.uint8)
    write_image(tmp_path / "big.jpg", big)
    for i in range(200):
        os.symlink(tmp_path / "big.jpg", folder / f"p{i:03d}.jpg")
    tuning = Tuning(parallel_min_files=0, batch_size=4, worker_chunk=1)

    def kill_the_workers(done, total):
        if done == 8:  # what a decoder crash or the OOM killer does
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)

    with Store.open(tmp_path / "i.db", create=True) as store:
        report = indexer.index_paths(store, [folder], {"colors": 8, "min_side": 0}, workers=2,
                                     progress=kill_the_workers, tuning=tuning)
        assert (report.added, report.failed) == (200, 0)
        assert store.counts()["images"] == 200


def _process_state(pid):
    """The state letter of a process (R, S, Z...), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between the open and the read
        return None


@pytest.mark.slow
def test_what_a_broken_pool_left_alive_is_killed_so_shutdown_cannot_wait_forever():
    """The private names of CPython's pool that the work-around reads: if they change, this fails rather than the
    work-around silently doing nothing."""
    import concurrent.futures
    import multiprocessing
    import time

    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    pool.submit(time.sleep, 60)
    while not pool._processes:
        time.sleep(0.01)
    (worker,) = pool._processes.values()
    indexer._kill_what_a_broken_pool_left(pool)  # not broken: left alone
    assert worker.is_alive()
    pool._broken = "as the manager thread marks it"
    indexer._kill_what_a_broken_pool_left(pool)
    deadline = time.monotonic() + 10  # gone, or a zombie: the pool's own thread may be the one that reaps it
    while time.monotonic() < deadline and _process_state(worker.pid) not in (None, "Z"):
        time.sleep(0.05)
    assert _process_state(worker.pid) in (None, "Z")
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
def test_workers_that_die_before_any_file_end_the_run_after_three_pools(many_photos, monkeypatch):
    """Workers that cannot work (here: they watch a run pid no process has, so each exits in its initializer) end the
    run with a clear error; a pool that breaks once between two files, as a stray kill can make it, does not."""
    import concurrent.futures

    from cbir.core.histogram import lookup_table
    from cbir.settings import Settings

    with open("/proc/sys/kernel/pid_max") as handle:
        no_such_pid = int(handle.read())  # pids stay below it; a pid of a process that ended could be reused

    class RunOs:  # run.py's os, but the run's pid is one that no process has
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def getpid():
            return no_such_pid

    pools = []

    class CountedPool(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(indexer, "os", RunOs())
    monkeypatch.setattr(indexer.concurrent.futures, "ProcessPoolExecutor", CountedPool)
    settings = Settings(colors=2)
    lut = lookup_table(np.array([[0, 0, 0], [100, 0, 0]], np.float32), settings.space)
    jobs = [(str(path), None) for path in sorted(many_photos.rglob("p*.png"))]
    with pytest.raises(indexer._WorkersFailing):
        # One chunk a pool: a second submit could start a worker while the pool breaks, a race inside CPython 3.11
        # that can end its fork server (noted in _in_workers); this test is about what cbir does with the breaks.
        list(indexer._in_workers("describe", jobs, settings, lut, 2, 2, Tuning(worker_chunk=len(jobs))))
    assert len(pools) == indexer._IDLE_BREAKS
    with Store.open(many_photos.parent / "i.db", create=True) as store:  # the first workers of a run: its sample
        with pytest.raises(CbirError, match="keep dying .* while the codebook's sample was read; the index is unch"):
            indexer.index_paths(store, [many_photos], {"colors": 8}, workers=2,
                                tuning=Tuning(parallel_min_files=0, worker_chunk=1000))
        assert store.counts()["images"] == 0


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups")
def test_ctrl_c_with_workers_keeps_finished_batches_without_traceback(many_photos, tmp_path):
    db = tmp_path / "i.db"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import cbir.cli, cbir.cli.progress, cbir.index.api
        from cbir.index.tuning import Tuning
        cbir.index.api.DEFAULT_TUNING = Tuning(parallel_min_files=0, batch_size=4)
        def progress(self, done, total):
            if done == 10:
                os.killpg(os.getpgrp(), signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
                time.sleep(1)
        cbir.cli.progress.ProgressBar.__call__ = progress
        sys.argv = ["cbir", "index", {str(many_photos)!r}, "--db", {str(db)!r}, "--codebook-size", "8", "--workers", "2"]
        cbir.cli.main()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "Interrupted" in done.stderr
    with sqlite3.connect(db) as conn:
        kept = conn.execute("SELECT count(*) FROM images").fetchone()[0]
    assert 8 <= kept < 40
    again = (f"import sys; from cbir.cli import main; sys.argv = ['cbir', 'index', {str(many_photos)!r}, '--db', "
             f"{str(db)!r}, '--workers', '2']; main()")
    done = subprocess.run([sys.executable, "-c", again], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "Traceback" not in done.stderr  # 3: the two broken files
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 40


def naive_histograms(db):
    """Every histogram whose image exists, read row by row with plain sqlite3: {image id: (path, vector)}."""
    with sqlite3.connect(db) as conn:
        return {i: (p, naive_shares(v, 8)) for i, p, v in conn.execute(
            "SELECT i.id, i.path, h.vector FROM images i JOIN histograms h ON h.image_id = i.id")}


def test_chunked_streaming_equals_a_row_by_row_read(many_photos, tmp_path):
    db = tmp_path / "i.db"
    with Store.open(db, create=True) as store:
        indexer.index_paths(store, [many_photos], {"colors": 8, "layout": "global"})
        ids = store.load_vectors(8)[0]
        store.db.execute("DELETE FROM histograms WHERE image_id = ?", [int(ids[3])])  # an image without one
        store.db.execute("INSERT INTO histograms (image_id, vector) VALUES (999, ?)",  # one without an image
                         [store._blob(np.full(8, 0.125, "<f4"))])
        expected = naive_histograms(db)
        chunks = list(store.histogram_chunks(8, chunk=7))
        assert max(len(c[0]) for c in chunks) == 7
        ids = np.concatenate([c[0] for c in chunks])
        vectors = np.concatenate([c[1] for c in chunks])
        assert ids.tolist() == sorted(expected) and len(ids) == 39 and 999 not in ids
        np.testing.assert_array_equal(vectors, np.array([expected[i][1] for i in ids.tolist()]))
        picked = ids[[5, 0, 17, 5]]
        np.testing.assert_array_equal(store.histograms_of(picked, 8), vectors[[5, 0, 17, 5]])
        assert store.paths_of(picked) == [expected[i][0] for i in picked.tolist()]
        assert store.paths_of(ids) == [expected[i][0] for i in ids.tolist()]  # many ids: the scan path
        with pytest.raises(CbirError, match="image 12345 has no histogram"):
            store.histograms_of([int(ids[0]), 12345], 8)


def test_search_reading_rows_back_from_the_database_equals_the_matrix_in_memory(many_photos, tmp_path):
    from cbir import Index
    from cbir.index.engine import load_engine

    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([many_photos], settings={"colors": 8})
        assert isinstance(index._loaded().backend.vectors, np.ndarray)  # small: kept in memory by default
        stored = load_engine(index._store, in_memory=False)
        in_memory = load_engine(index._store, in_memory=True)
        assert isinstance(in_memory.backend.vectors, np.ndarray)
        np.testing.assert_array_equal(stored.ids, in_memory.ids)
        np.testing.assert_array_equal(stored.backend.transformed, in_memory.backend.transformed)
        queries = in_memory.backend.vectors[[0, 7, 20]]
        for n in (3, 0):
            a = stored.backend.search(queries, n)
            b = in_memory.backend.search(queries, n)
            for x, y in zip(a[0] + a[1], b[0] + b[1]):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("raw_in_memory_bytes", [0, 64 << 20])
def test_a_loaded_index_sees_what_another_connection_commits(many_photos, tmp_path, raw_in_memory_bytes):
    from cbir import Index

    db = tmp_path / "i.db"
    with Index.open(db, create=True, tuning=Tuning(raw_in_memory_bytes=raw_in_memory_bytes)) as index:
        index.add([many_photos / "sub"], settings={"colors": 8})
        query = index.query_vector(many_photos / "p000.png")
        before = index.search_vectors([query], 0)[0]
        assert isinstance(index._loaded().backend.vectors, np.ndarray) == bool(raw_in_memory_bytes)
        assert "photos/p000.png" not in [r.stored_path for r in before]
        with Index.open(db) as writer:  # another connection, as another cbir process would be
            writer.add([many_photos / "p000.png"])
        loaded = index._loaded()
        assert index.query_vector(many_photos / "p000.png") is not None and index._loaded() is loaded  # no reload yet
        after = index.search_vectors([query], 0)[0]
        assert index._loaded() is not loaded  # one reload, by the search
        assert after[0].stored_path == "photos/p000.png" and after[0].distance == 0 and len(after) == len(before) + 1
        with Index.open(db) as writer:
            writer.add([many_photos], settings={"colors": 6}, rebuild=True)
        with pytest.raises(CbirError, match="rebuilt with a new codebook"):
            index.search_vectors([query], 3)


@pytest.mark.parametrize("values", [
    np.random.default_rng(0).random(100_000), np.arange(100_000.0), np.arange(100_000.0)[::-1],
    np.zeros(100_000), np.repeat(np.arange(100.0), 1000), np.random.default_rng(1).random(50)])
@pytest.mark.parametrize("m", [1, 10, 52, 60])
def test_smallest_finds_the_m_smallest_values(values, m):
    picked = _smallest(values, m)
    assert len(picked) == min(m, len(values)) and len(set(picked.tolist())) == len(picked)
    np.testing.assert_array_equal(np.sort(values[picked]), np.sort(values)[: len(picked)])


@pytest.mark.slow  # seconds of work; the full suite runs it
def test_grouped_queries_equal_single_queries_and_the_naive_formula():
    rng = np.random.default_rng(3)
    k, blocks = 12, 2
    vectors = rng.dirichlet(np.full(k, 0.3), size=(5000, blocks)).reshape(5000, blocks * k).astype(np.float32)
    similarity = similarity_matrix(rng.uniform([0, -80, -80], [100, 80, 80], (k, 3)), "gaussian", 10.0)
    search = QuadraticFormSearch.build(vectors, similarity, power=0.5, blocks=blocks)
    queries = np.vstack([vectors[:5], rng.dirichlet(np.full(k, 0.3), size=(35, blocks)).reshape(35, -1)]).astype(np.float32)
    rows, distances = search.search(queries, 10)
    naive = NaiveQuadraticFormSearch(vectors, similarity, power=0.5, blocks=blocks)
    for q, r, d in zip(queries, rows, distances):
        one = search.search(q[None], 10)
        np.testing.assert_array_equal(one[0][0], r)
        np.testing.assert_array_equal(one[1][0], d)
        full = naive.distances(q)
        np.testing.assert_array_equal(r, np.lexsort((np.arange(len(full)), full))[:10])
        np.testing.assert_allclose(d, full[r], rtol=1e-12, atol=1e-12)


def test_stored_path_shortcut_equals_relpath(tmp_path):
    def by_relpath(store, path):  # stored_path as first written
        absolute = os.path.abspath(path)
        relative = os.path.relpath(absolute, store.root)
        return absolute if relative.startswith(os.pardir) else relative

    (tmp_path / "db").mkdir()
    with Store.open(tmp_path / "db" / "i.db", create=True) as store:
        root = store.root
        for path in [f"{root}/a.jpg", f"{root}/sub/b c.jpg", f"{root}x/c.jpg", f"{root}/../d.jpg", root,
                     f"{root}/", f"{root}//e.jpg", f"{root}/./f/../g.jpg", "/h.jpg", "relative/i.jpg",
                     f"{os.path.dirname(root)}/j.jpg"]:
            assert store.stored_path(path) == by_relpath(store, path), path


def test_new_paths_write_the_same_rows_as_replacing_writes(tmp_path):
    vector = np.arange(6, dtype=np.float32) / 10  # shares
    dumps = []
    for name, new_paths in (("replacing", frozenset()), ("new", {"a.jpg", "b.jpg", "c.jpg"})):
        with Store.open(tmp_path / f"{name}.db", create=True) as store:
            store.write_batch([("a.jpg", 1, 2, "s1", 3, 4, vector), ("b.jpg", 1, 2, "s2", 3, 4, vector.tobytes())],
                              [("c.jpg", "broken", 5, 6)], new_paths=new_paths)
            store.write_batch([("a.jpg", 7, 8, "s3", 3, 4, vector[::-1])])  # an update replaces the row
        dumps.append(index_rows(tmp_path / f"{name}.db"))
    assert dumps[0] == dumps[1]
    assert [row[1:5] for row in dumps[0]["images"]] == [("b.jpg", 1, 2, "s2"), ("a.jpg", 7, 8, "s3")]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups")
def test_ctrl_c_while_the_fork_server_boots_prints_no_traceback():
    script = textwrap.dedent("""
        import concurrent.futures, os, signal, time
        import cbir.index.run as indexer
        indexer._start_server()  # as an index run does before learning the codebook or listing files
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # this process is not under test here
        time.sleep(0.1)  # the server is importing cbir, OpenCV and numpy by now
        os.killpg(os.getpgrp(), signal.SIGINT)  # Ctrl-C while the server is still importing
        time.sleep(1)
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=indexer._context()) as pool:
            print(pool.submit(abs, -3).result())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    assert done.stdout.strip() == "3" and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
def test_a_worker_process_imports_neither_sqlite_nor_the_search():
    """Workers import cbir.index.run: the package's lazy names keep SQLite and the search out of their start-up."""
    code = ("import sys, cbir.index.run, cbir; "
            "print(sorted(m for m in ('sqlite3', 'sqlite_utils', 'cbir.store', 'cbir.core.backends', 'typer') "
            "if m in sys.modules)); print(cbir.quantize.__name__, cbir.Index.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "quantize Index"]


@pytest.mark.parametrize("raw_in_memory_bytes", [0, 64 << 20])
def test_images_without_histograms_are_left_out_of_a_search(many_photos, tmp_path, raw_in_memory_bytes):
    from cbir import Index

    with Index.open(tmp_path / "i.db", create=True, tuning=Tuning(raw_in_memory_bytes=raw_in_memory_bytes)) as index:
        index.add([many_photos], settings={"colors": 8})
        query = index.query_vector(many_photos / "p000.png")
        full = index.search_vectors([query], 0)[0]
        gone = full[0].image_id
        index._store.db.execute("DELETE FROM histograms WHERE image_id = ?", [gone])  # damaged, as by hand
        index._engine = None
        for n in (0, 5):
            after = index.search_vectors([query], n)[0]
            expected = [r.image_id for r in full if r.image_id != gone]
            assert [r.image_id for r in after] == expected[: n or len(expected)]
        assert len(index._loaded().backend.transformed) == len(index._loaded().ids) == len(full) - 1


@pytest.mark.parametrize("where", ["lookup table", "codebook", "similarity matrix"])
def test_small_products_of_a_fresh_index_run_on_one_blas_thread(monkeypatch, where):
    """OpenBLAS spreads even small products over every core and its idle threads then spin: a fresh index's
    codebook, lookup table and similarity matrix keep BLAS to one thread while they compute, and give it back."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import cbir.core.codebook
    import cbir.core.histogram
    import cbir.core.qfd

    module, name = {"lookup table": (cbir.core.histogram, "nearest_centre"),
                    "codebook": (cbir.core.codebook, "kmeans_palette"),
                    "similarity matrix": (cbir.core.qfd.np.linalg, "eigh")}[where]
    seen = []
    real = getattr(module, name)

    def blas_threads():
        return [library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas"]

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    pool = cbir.core.codebook.empty_pool()
    cbir.core.codebook.pool_colours(pool, make_photo(3, size=(48, 64)))
    with threadpool_limits(limits=2, user_api="blas"):  # as on a machine of two cores or more
        before = blas_threads()
        if where == "lookup table":
            cbir.core.histogram.lookup_table(np.array([[20.0, 5, 5], [70, -10, 30]], np.float32))
        elif where == "codebook":
            cbir.core.codebook.learn_codebook(pool, 8)
        else:
            cbir.core.qfd.similarity_matrix(np.array([[20.0, 5, 5], [70, -10, 30], [50, 0, 0]]), "gaussian", 400)
        after = blas_threads()
    assert 2 in before  # else the test proves nothing (OpenCV's own OpenBLAS, in some wheels, has one thread)
    assert seen and all(threads == [1] * len(threads) for threads in seen)
    assert after == before


def test_one_blas_thread_blocks_overlapping_in_two_threads_leave_blas_as_it_was():
    """A web server's threads may build a lookup table while another finds duplicates. The one-thread limit is
    process-wide: blocks that set and restored it each in their own thread would, overlapping, restore in the wrong
    order and leave BLAS on one thread for good."""
    import threading

    from threadpoolctl import threadpool_info, threadpool_limits

    from cbir.core.blas import one_blas_thread

    def blas():
        return [library for library in threadpool_info() if library["user_api"] == "blas"]

    def set_from_a_thread_that_ends(limits):  # no live thread keeps control of the limits (threadpoolctl >= 3.7)
        thread = threading.Thread(target=threadpool_limits, kwargs={"limits": limits, "user_api": "blas"})
        thread.start()
        thread.join()

    original = blas()  # one thread each under this suite (conftest.py): two, as on a machine of two cores
    set_from_a_thread_that_ends(2)
    try:
        before = [library["num_threads"] for library in blas()]
        assert 2 in before
        first_inside, second_inside, first_left = threading.Event(), threading.Event(), threading.Event()

        def first():
            with one_blas_thread():
                first_inside.set()
                second_inside.wait(10)
            first_left.set()

        def second():
            first_inside.wait(10)
            with one_blas_thread():
                second_inside.set()
                first_left.wait(10)  # this block ends last

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert first_left.is_set() and not any(thread.is_alive() for thread in threads)
        assert [library["num_threads"] for library in blas()] == before
    finally:
        set_from_a_thread_that_ends(original)
