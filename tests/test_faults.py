"""Faults with real processes: SIGKILL and Ctrl-C in the middle of ``cbir index``, a second writer, queries while
an index run writes. See docs/reliability.md.

The index runs are slowed down (a short sleep per file, batches of 8) by a wrapper script so that "mid-run" is
reached on any machine; the tests wait for committed rows before acting and never assert on timings.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import committed_images

from cbir import BusyError, Index
from cbir.imageio import write_image
from cbir.index.check import check_database

pytestmark = pytest.mark.slow  # every test here runs real cbir processes

N_IMAGES = 240
BATCH = 8
WAIT = 180  # seconds: generous, for a slow shared machine; a test only waits this long when something is broken

SLOW_CBIR = """
import sys, time
import cbir.index.api
import cbir.index.run as indexer
import cbir.index.workers
from cbir.index.tuning import Tuning

cbir.index.api.DEFAULT_TUNING = Tuning(batch_size={batch})
real_describe = indexer.describe

def slow_describe(*args, **kwargs):
    time.sleep({delay})
    return real_describe(*args, **kwargs)

indexer.describe = slow_describe
cbir.index.workers.default_workers = lambda: 1  # the slowed describe is patched in this process only
from cbir.cli import app
app(sys.argv[1:], prog_name="cbir")
"""


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """N_IMAGES small distinct PNGs (16x16: two random colours)."""
    folder = tmp_path_factory.mktemp("faults") / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(N_IMAGES):
        image = np.empty((16, 16, 3), np.uint8)
        image[:] = rng.integers(0, 256, 3)
        image[: rng.integers(2, 14)] = rng.integers(0, 256, 3)
        write_image(folder / f"img{i:04d}.png", image)
    return folder


def cbir_process(tmp_path, *args, delay=0.02, **popen):
    """``cbir ARGS`` in a new process, each file slowed by ``delay`` seconds, batches of BATCH images."""
    script = tmp_path / "slow_cbir.py"
    script.write_text(SLOW_CBIR.format(batch=BATCH, delay=delay))
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, **popen)


def wait_until(condition, process, what):
    deadline = time.monotonic() + WAIT
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the index run ended (exit {process.returncode}) before {what}: {out} {err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_sound(db, expected_images):
    """Integrity ok, each image exactly once with exactly one histogram of the right size, no failures left."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        paths = [p for (p,) in conn.execute("SELECT path FROM images")]
        assert len(paths) == len(set(paths)) == expected_images
        assert conn.execute("SELECT count(*) FROM histograms").fetchone()[0] == expected_images
        assert conn.execute("SELECT count(*) FROM histograms WHERE image_id NOT IN (SELECT id FROM images)"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM histograms WHERE typeof(vector) != 'blob'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM failures").fetchone()[0] == 0
    report = check_database(db)  # every BLOB decoded, at the size the settings give
    assert report.ok and {f.name for f in report.findings} >= {"histogram_blobs"}, report.to_dict()


def run_to_completion(cli, collection, db):
    code, out, err = cli("index", collection, "--db", db, "--json")
    assert code == 0, err
    return json.loads(out)


def test_sigkill_mid_run_loses_nothing_and_the_rerun_completes(cli, collection, tmp_path):
    db = tmp_path / "i.db"
    process = cbir_process(tmp_path, "index", collection, "--db", db, "--codebook-size", 8, "--quiet")
    wait_until(lambda: committed_images(db) >= BATCH, process, "the first batch was committed")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=WAIT)
    assert process.returncode == -signal.SIGKILL
    kept = committed_images(db)
    assert BATCH <= kept < N_IMAGES  # killed mid-run
    assert kept % BATCH == 0  # whole batches only: no half-written batch
    assert_sound(db, kept)
    document = run_to_completion(cli, collection, db)
    assert document["unchanged"] == kept and document["added"] == N_IMAGES - kept and document["failed"] == 0
    assert_sound(db, N_IMAGES)


def test_ctrl_c_keeps_what_was_done_says_so_and_exits_130(cli, collection, tmp_path):
    db = tmp_path / "i.db"
    process = cbir_process(tmp_path, "index", collection, "--db", db, "--codebook-size", 8, "--quiet")
    wait_until(lambda: committed_images(db) >= BATCH, process, "the first batch was committed")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=WAIT)
    assert process.returncode == 130, err
    assert "Interrupted" in err and "Traceback" not in err
    added = int(out.split("added ")[1].split(",")[0])
    assert committed_images(db) == added >= BATCH  # everything it says it did is kept, not only whole batches
    assert_sound(db, added)
    document = run_to_completion(cli, collection, db)
    assert document["unchanged"] == added and document["added"] == N_IMAGES - added
    assert_sound(db, N_IMAGES)


def test_second_index_run_is_refused_clearly_while_the_first_completes(cli, collection, tmp_path):
    db = tmp_path / "i.db"
    first = cbir_process(tmp_path, "index", collection, "--db", db, "--codebook-size", 8, "--quiet")
    wait_until(lambda: committed_images(db) >= BATCH, first, "the first batch was committed")
    second = cbir_process(tmp_path, "index", collection, "--db", db, "--quiet", delay=0)
    out, err = second.communicate(timeout=WAIT)
    assert second.returncode == 1 and out == ""
    assert err.startswith("Error: another cbir index run is writing to") and "Traceback" not in err
    with Index.open(db) as index:  # the library raises a named error
        with pytest.raises(BusyError):
            index.add([collection])
    out, err = first.communicate(timeout=WAIT)
    assert first.returncode == 0, err
    assert_sound(db, N_IMAGES)


def test_queries_and_checks_during_an_index_run_see_consistent_states(collection, tmp_path):
    db = tmp_path / "i.db"
    first_half = tmp_path / "first"
    first_half.mkdir()
    names = sorted(os.listdir(collection))
    for name in names[: N_IMAGES // 2]:
        os.symlink(collection / name, first_half / name)
    with Index.open(db, create=True) as index:
        index.add([first_half], settings={"colors": 8})
    query = str(collection / names[0])
    states = set()
    writer = cbir_process(tmp_path, "index", collection, "--db", db, "--quiet", delay=0.01)
    while writer.poll() is None or not states:
        with Index.open(db) as index:  # a new reader each time: sees the latest committed state, whole
            results = index.search(query, n=0, skip_self=False)
        n = len(results)
        # N_IMAGES // 2 images from first/, then whole batches of collection/ (first/ is removed last)
        assert n == N_IMAGES // 2 or n % BATCH == 0 or n == N_IMAGES + N_IMAGES // 2, n
        assert results[0].distance == 0.0 and len({r.path for r in results}) == n
        assert check_database(db, files=False).ok
        states.add(n)
    out, err = writer.communicate(timeout=WAIT)
    assert writer.returncode == 0, err
    with Index.open(db) as index:
        assert len(index.search(query, n=0, skip_self=False)) == N_IMAGES + N_IMAGES // 2


def test_ctrl_c_before_any_image_exits_130_and_leaves_a_usable_database(cli, collection, tmp_path, monkeypatch):
    import cbir.index.run

    db = tmp_path / "i.db"
    run_to_completion(cli, collection, db)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cbir.index.run, "learn_collection_codebook", interrupted)  # Ctrl-C while learning
    code, out, err = cli("index", collection, "--db", db, "--rebuild")
    assert code == 130 and out == "" and err.startswith("Interrupted") and "Traceback" not in err
    assert_sound(db, N_IMAGES)  # the rebuild never started writing: the old index is intact
