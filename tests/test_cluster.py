"""Index runs on a Dask cluster (``cbir index --cluster``): the same database as one process, and the faults of a
cluster -- a worker killed mid-run, a file that crashes every worker that reads it, Ctrl-C, the scheduler gone.

The clusters are ``distributed.LocalCluster`` with worker processes on 127.0.0.1. Worker behaviour is changed
through Dask's own means (a worker plugin, a worker preload script), never by patching this process. The tests
wait for committed rows before acting and never assert on timings.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cbir import Index
from cbir.errors import ClusterError
from cbir.index import Tuning
from cbir.settings import Settings
from helpers import committed_images, index_rows, write_photos

try:
    import distributed

    from cbir.index import cluster as cluster_module
except ImportError:  # the tests of running without Dask still run
    distributed = None

WAIT = 180  # seconds: generous, for a slow shared machine; only a broken test waits this long
CHUNK = Tuning(worker_chunk=4)  # many small tasks from few photos
needs_dask = pytest.mark.skipif(distributed is None, reason="Dask distributed is not installed (cbir[cluster])")


def index_once(db, folder, **options):
    with Index.open(db, create=True, tuning=options.pop("tuning", CHUNK)) as index:
        return index.add(folder, settings={"colors": 16, "layout": "global+2x2"}, **options)


@pytest.fixture(scope="module")
def scheduler():
    """A LocalCluster of two worker processes (1 thread each), as a scheduler address cbir connects to."""
    import dask.config

    from cbir.index.workers import start_server
    start_server(preload=("distributed",))  # workers forked from cbir's server: fast (re)starts
    with dask.config.set(cluster_module.local_cluster_config()):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                      dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) as cluster:
            with distributed.Client(cluster, set_as_default=False) as client:
                yield cluster.scheduler_address, client


class DieWhenReading(distributed.WorkerPlugin if distributed else object):
    """Make a worker process SIGKILL itself when it decodes a file whose name contains ``marker``: every time, or
    only while the file ``once`` exists (it is removed first: the retry then succeeds)."""

    def __init__(self, marker, once=None):
        self.marker, self.once = marker, once

    def setup(self, worker):
        import cbir.index.run as run
        marker, once = self.marker, self.once

        def dying(function):
            def call(data, *args, name="image", **kwargs):
                if marker in (name if function.__name__ != "read_image" else str(data)) and \
                        (once is None or _claim(once)):
                    os.kill(os.getpid(), signal.SIGKILL)
                return function(data, *args, name=name, **kwargs) if function.__name__ != "read_image" else \
                    function(data, *args, **kwargs)
            return call

        for name in ("decode_with_size",):  # the describe and the codebook's sample (run.sample_colours)
            setattr(run, name, dying(getattr(run, name)))

    def teardown(self, worker):
        import cbir.imageio
        import cbir.index.run as run
        for name in ("decode_with_size",):
            setattr(run, name, getattr(cbir.imageio, name))


def _claim(path):
    try:
        os.remove(path)
        return True
    except FileNotFoundError:
        return False


@pytest.mark.slow
@needs_dask
def test_cluster_run_writes_the_database_one_process_writes(scheduler, many_photos, tmp_path):
    address, _ = scheduler
    one = index_once(tmp_path / "one.db", many_photos, workers=1)
    assert one.failed == 2
    for name, options in {"paths": {}, "bytes": {"ship_bytes": True}}.items():
        report = index_once(tmp_path / f"{name}.db", many_photos, cluster=address, **options)
        assert (report.added, report.failed) == (one.added, one.failed)
        assert sorted(report.failures) == sorted(one.failures)
        assert index_rows(tmp_path / f"{name}.db") == index_rows(tmp_path / "one.db"), name


@pytest.mark.slow
@needs_dask
def test_a_worker_killed_mid_run_loses_nothing_and_writes_nothing_twice(scheduler, many_photos, tmp_path):
    address, client = scheduler
    index_once(tmp_path / "one.db", many_photos, workers=1)
    once = tmp_path / "kill-once"
    once.touch()
    workers_before = set(client.run(os.getpid).values())
    client.register_plugin(DieWhenReading("p017", once=str(once)), name="die")
    try:
        report = index_once(tmp_path / "cluster.db", many_photos, cluster=address)
    finally:
        client.unregister_worker_plugin("die")
    assert not once.exists()  # a worker did die reading p017 (SIGKILL), and its tasks were run again
    assert report.failed == 2 and all("p017" not in path for path, _ in report.failures)
    assert index_rows(tmp_path / "cluster.db") == index_rows(tmp_path / "one.db")
    client.wait_for_workers(2, timeout=WAIT)
    assert set(client.run(os.getpid).values()) != workers_before  # the nanny started a new one


@pytest.mark.slow
@needs_dask
def test_a_file_that_crashes_every_worker_is_a_failure_after_bounded_tries(scheduler, many_photos, tmp_path):
    address, client = scheduler
    crasher = many_photos / "sub" / "p017.jpg"
    client.register_plugin(DieWhenReading("p017"), name="die")
    try:
        report = index_once(tmp_path / "cluster.db", many_photos, cluster=address)
    finally:
        client.unregister_worker_plugin("die")
    assert (str(crasher), cluster_module.CRASHED) in report.failures and report.failed == 3, report.failures
    # The other files are indexed as one process indexes them with that file unreadable
    crasher.write_bytes(b"not an image")
    index_once(tmp_path / "one.db", many_photos, workers=1)
    cluster_rows, one_rows = index_rows(tmp_path / "cluster.db"), index_rows(tmp_path / "one.db")
    for table in ("images", "histograms", "codebook"):
        assert cluster_rows[table] == one_rows[table], table
    client.wait_for_workers(2, timeout=WAIT)


@pytest.mark.slow
@needs_dask
def test_memory_is_bounded_by_the_window_not_the_collection(scheduler, many_photos):
    address, _ = scheduler
    jobs = [(str(p), None) for p in sorted(many_photos.rglob("p*"))]
    tuning = Tuning(worker_chunk=2, cluster_tasks_per_thread=1)  # window: 1 x 2 threads + 2 = 4 chunks of 2
    settings = Settings(colors=16)
    codebook = np.random.default_rng(0).uniform([10, -50, -50], [90, 50, 50], (16, 3)).astype(np.float32)
    with cluster_module.DaskDescriber(address, tuning=tuning) as describer:
        results = list(describer.describe(jobs, settings, codebook))
        assert len(results) == len(jobs) and all(error is None for _, _, error in results)
        assert describer.most_chunks_out == 4 < len(jobs) / 2


@pytest.mark.slow
@needs_dask
def test_workers_that_cannot_see_the_files_are_refused_clearly(scheduler, tmp_path):
    address, _ = scheduler
    with cluster_module.DaskDescriber(address) as describer:
        with pytest.raises(ClusterError, match="cannot see .*shared storage.*ship_bytes=True"):
            describer._check_visible(describer._connect(), str(tmp_path / "only-here.jpg"))


@pytest.mark.slow
@needs_dask
def test_workers_with_other_versions_are_refused(scheduler, many_photos, tmp_path, monkeypatch):
    address, _ = scheduler
    import cv2
    monkeypatch.setattr(cv2, "__version__", "0.0.0-other")  # here only: the workers report their own
    with pytest.raises(ClusterError, match="same versions"):
        index_once(tmp_path / "x.db", many_photos, cluster=address)


# ---- whole commands ----------------------------------------------------------------------------------------------

SLOW_WORKER = """
import time
import cbir.index.run as run
describe = run.__dict__.setdefault("unslowed_describe", run.describe)  # Dask may run a preload twice
def slow(*args, **kwargs):
    time.sleep(0.05)
    return describe(*args, **kwargs)
run.describe = slow
"""

SMALL_BATCHES = """
import sys
import cbir.index.api
from cbir.index.tuning import Tuning
cbir.index.api.DEFAULT_TUNING = Tuning(batch_size=8, worker_chunk=4, cluster_connect_seconds=3)
from cbir.cli import app
if __name__ == "__main__":  # the fork server of a local cluster imports this file again
    app(sys.argv[1:], prog_name="cbir")
"""


def cbir_process(tmp_path, *args):
    """``cbir ARGS`` in a new process group (as a shell starts it) with batches of 8, its workers slowed by a
    Dask worker preload script."""
    (tmp_path / "slow_worker.py").write_text(SLOW_WORKER)
    (tmp_path / "small_batches.py").write_text(SMALL_BATCHES)
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__PRELOAD=json.dumps([str(tmp_path / "slow_worker.py")]))
    return subprocess.Popen([sys.executable, str(tmp_path / "small_batches.py"), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)


def processes_in_group(group):
    """The processes left in a process group, once those on their way out have had a few seconds to go."""
    deadline = time.monotonic() + 10
    while True:
        left = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(group)], capture_output=True, text=True).stdout
        if not left.strip() or time.monotonic() > deadline:
            return left.strip()
        time.sleep(0.1)


def wait_for_rows(db, process):
    deadline = time.monotonic() + WAIT
    while committed_images(db) == 0:
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) first: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out waiting for a first batch")
        time.sleep(0.05)


@pytest.mark.slow
@needs_dask
def test_local_cluster_command_matches_workers_1(cli, many_photos, tmp_path):
    code, out, err = cli("index", many_photos, "--db", tmp_path / "one.db", "--workers", 1)
    assert code == 3
    code, out, err = cli("index", many_photos, "--db", tmp_path / "local.db", "--cluster", "local:2")
    assert code == 3 and "failed 2" in out and "Traceback" not in err, err
    assert index_rows(tmp_path / "local.db") == index_rows(tmp_path / "one.db")


@pytest.mark.slow
@needs_dask
def test_ctrl_c_cancels_keeps_finished_batches_and_exits_130(cli, many_photos, tmp_path):
    write_photos(many_photos / "more", 160)
    db = tmp_path / "c.db"
    process = cbir_process(tmp_path, "index", many_photos, "--db", db, "--cluster", "local:2")
    wait_for_rows(db, process)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
    out, err = process.communicate(timeout=WAIT)
    assert process.returncode == 130, err
    assert "Interrupted: finished images are kept" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    kept = committed_images(db)
    assert 0 < kept < 202
    assert processes_in_group(process.pid) == ""  # no worker, fork server or resource tracker left behind
    code, out, err = cli("index", many_photos, "--db", db, "--workers", 1, "--json")
    assert json.loads(out)["unchanged"] == kept
    cli("index", many_photos, "--db", tmp_path / "one.db", "--workers", 1)
    assert index_rows(db) == index_rows(tmp_path / "one.db")


@pytest.mark.slow
@needs_dask
def test_scheduler_gone_mid_run_is_a_clear_error_and_keeps_finished_images(cli, many_photos, tmp_path):
    write_photos(many_photos / "more", 160)
    scheduler = subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                                  "127.0.0.1:0", "--scheduler-file", str(tmp_path / "s.json")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline, address = time.monotonic() + WAIT, None
        while address is None and time.monotonic() < deadline:
            try:  # the file appears before the scheduler has written it whole (an empty read under load)
                address = json.loads((tmp_path / "s.json").read_text())["address"]
            except (FileNotFoundError, ValueError, KeyError):
                time.sleep(0.1)
        assert address is not None, "the scheduler did not write its address"
        env = dict(os.environ, DASK_DISTRIBUTED__WORKER__PRELOAD=json.dumps([str(tmp_path / "slow_worker.py")]))
        (tmp_path / "slow_worker.py").write_text(SLOW_WORKER)
        worker = subprocess.Popen(["dask", "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                   "--dashboard-address", "127.0.0.1:0"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        db = tmp_path / "s.db"
        process = cbir_process(tmp_path, "index", many_photos, "--db", db, "--cluster", address)
        wait_for_rows(db, process)
        scheduler.kill()
        out, err = process.communicate(timeout=WAIT)
    finally:
        scheduler.kill()
        if worker is not None:
            worker.terminate()
            worker.wait(WAIT)
    assert process.returncode == 1
    assert err.strip().splitlines()[-1].startswith(f"Error: lost the Dask scheduler at {address}; the images "
                                                   "finished so far are kept"), err
    kept = committed_images(db)
    assert kept > 0
    code, out, err = cli("index", many_photos, "--db", db, "--workers", 1, "--json")
    assert json.loads(out)["unchanged"] >= kept
    cli("index", many_photos, "--db", tmp_path / "one.db", "--workers", 1)
    assert index_rows(db) == index_rows(tmp_path / "one.db")


@needs_dask
def test_a_run_with_nothing_to_read_never_contacts_the_cluster(tmp_path):
    photos = write_photos(tmp_path / "photos", 12)  # no broken file: those are read again by every run
    index_once(tmp_path / "x.db", photos, workers=1)
    report = index_once(tmp_path / "x.db", photos, cluster="tcp://127.0.0.1:9")  # nothing listens there
    assert (report.added, report.unchanged) == (0, 12)


@needs_dask
@pytest.mark.slow  # waits out a connection timeout
def test_an_unreachable_scheduler_is_a_clear_error_and_changes_nothing(many_photos, tmp_path):
    tuning = Tuning(cluster_connect_seconds=1)
    with pytest.raises(ClusterError, match="cannot reach a Dask scheduler at tcp://127.0.0.1:9"):
        index_once(tmp_path / "x.db", many_photos, cluster="tcp://127.0.0.1:9", tuning=tuning)
    assert committed_images(tmp_path / "x.db") == 0


# ---- without Dask, and usage ------------------------------------------------------------------------------------

def test_without_dask_cluster_says_how_to_install_it(cli, many_photos, tmp_path, monkeypatch):
    import cbir.index.cluster
    monkeypatch.setattr(cbir.index.cluster, "distributed", None)
    code, out, err = cli("index", many_photos, "--db", tmp_path / "x.db", "--cluster", "local:2")
    assert code == 1 and "pip install 'cbir[cluster]'" in err and "Traceback" not in err
    assert not (tmp_path / "x.db").exists() or committed_images(tmp_path / "x.db") == 0


@pytest.mark.parametrize("args", [["--cluster", "local:0"], ["--cluster", "local:x"], ["--ship-bytes"]])
def test_cluster_usage_errors(cli, many_photos, tmp_path, args):
    code, out, err = cli("index", many_photos, "--db", tmp_path / "x.db", *args)
    assert code == 2 and ("local:N" in err or "--cluster" in err)
