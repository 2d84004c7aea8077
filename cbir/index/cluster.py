"""The describe step of an index run (read, hash, decode, histogram) on a Dask cluster.

Imported only for ``cluster=...``: Dask is an optional dependency (``pip install 'cbir[cluster]'``). This process
stays the single SQLite writer; the run (:mod:`cbir.index.run`) hands its jobs to :meth:`DaskDescriber.describe`
exactly as to its own worker processes, and gets the results back in file order, so the database is the one a
single process writes. Files go out in chunks with a bounded number submitted and not yet written (memory does not
grow with the collection); a worker lost mid-run has its tasks run again by Dask, and a chunk whose task keeps
killing workers is retried file by file, so only the file that crashes them is reported failed.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.metadata
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Iterator

import numpy as np

from ..errors import CbirError, ClusterError, Remedy
from .tuning import Tuning
from .workers import context, start_server

try:
    import dask.config
    import distributed
    from distributed.scheduler import KilledWorker
except ImportError:  # the CLI and Index.add turn this into advice on installing the extra
    distributed = None

LOCAL_PREFIX = "local:"
CRASHED = "crashed the worker process that read it on every try (out of memory, or a fault in a decoder)"
_LOCAL_ONLY = "127.0.0.1"  # a local cluster listens on loopback only


def local_cluster_config() -> dict:
    """Dask settings for a local cluster of cbir (``dask.config.set`` them while it runs)."""
    return {
        # Workers forked from cbir's fork server (started with SIGINT ignored): Ctrl-C reaches this process only,
        # also after a nanny restarts its worker; cbir, OpenCV and distributed are imported there once.
        "distributed.worker.multiprocessing-method": context().get_start_method(),
        # A LocalCluster closes a worker's nanny for good when its worker is lost and none of that name is back
        # after this delay: a file that killed workers in quick succession shrank the cluster to nothing (seen).
        # The nanny restarts its worker itself: never give up on it.
        "distributed.deploy.lost-worker-timeout": "3650 days",
    }


def local_workers(address: str) -> int | None:
    """N of a ``local:N`` address (None for a scheduler address); ValueError for a malformed one."""
    if not address.startswith(LOCAL_PREFIX):
        return None
    n = address.removeprefix(LOCAL_PREFIX)
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"a local cluster is local:N with N worker processes (1 or more), got {address!r}")
    return int(n)


def require_dask() -> None:
    if distributed is None:
        raise ClusterError("indexing on a cluster needs Dask distributed, which is not installed",
                           remedy=Remedy.INSTALL_CLUSTER)


class DaskDescriber:
    """Describes files on the Dask cluster at ``address`` (``tcp://host:8786``, or ``local:N`` for a cluster of N
    worker processes on this machine, started at first use and stopped by :meth:`close`).

    ``ship_bytes``: this process reads the files and sends their bytes (workers need not see the files)."""

    def __init__(self, address: str, *, ship_bytes: bool = False, tuning: Tuning = Tuning()) -> None:
        local_workers(address)  # a malformed local:N fails before anything starts
        require_dask()
        self.address = address
        self.ship_bytes = ship_bytes
        self.tuning = tuning
        self._client = self._cluster = self._config = None
        self._log_levels = {}
        self._run = uuid.uuid4().hex[:8]
        self._size_at, self._known_size = -1.0, None
        self.most_chunks_out = 0  # the most chunks submitted and not yet written at once (memory is bounded by it)

    # ---- connection ------------------------------------------------------------------------------------------

    def _connect(self):
        if self._client is not None:
            return self._client
        self._quiet_dask()
        if self.address.startswith(LOCAL_PREFIX):
            try:
                self._start_local(local_workers(self.address))
            except (OSError, RuntimeError, TimeoutError) as error:
                raise ClusterError(f"cannot start a local Dask cluster ({error})") from None
        else:
            try:
                self._client = distributed.Client(self.address, timeout=self.tuning.cluster_connect_seconds,
                                                  set_as_default=False)
            except (OSError, TimeoutError, ValueError) as error:
                raise ClusterError(f"cannot reach a Dask scheduler at {self.address} ({error})") from None
        self._check_workers(self._client)
        return self._client

    def _quiet_dask(self):
        """Dask's own log lines off while this runs (restored by :meth:`close`): cbir says what went wrong."""
        names = {"distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))}
        for name in names:
            logger = logging.getLogger(name)
            self._log_levels[name] = logger.level
            logger.setLevel(logging.CRITICAL)

    def _start_local(self, n_workers):
        start_server(preload=("distributed",))  # see local_cluster_config
        self._config = dask.config.set(local_cluster_config())
        self._config.__enter__()
        self._cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                                 host=_LOCAL_ONLY, dashboard_address=f"{_LOCAL_ONLY}:0",
                                                 silence_logs=logging.CRITICAL)
        self._client = distributed.Client(self._cluster, set_as_default=False)

    def _check_workers(self, client):
        """Refuse workers that would write a different database: another cbir, OpenCV or numpy."""
        try:
            client.wait_for_workers(1, timeout=self.tuning.cluster_wait_seconds)
        except TimeoutError:
            raise ClusterError(f"no Dask worker joined the scheduler at {self.address} within "
                               f"{self.tuning.cluster_wait_seconds:g} s; start some with: dask worker "
                               f"{self.address}") from None
        mine = _versions()
        try:
            theirs = client.run(_versions)
        except Exception as error:  # noqa: BLE001 -- e.g. cbir not importable on a worker
            raise ClusterError(f"the Dask workers cannot run cbir ({type(error).__name__}: {error}); install "
                               f"the same cbir on every worker") from None
        for worker, versions in theirs.items():
            if versions != mine:
                different = ", ".join(f"{name} {versions.get(name)} (here {mine[name]})" for name in mine
                                      if versions.get(name) != mine[name])
                raise ClusterError(f"worker {worker} has {different}: every worker needs the same versions as "
                                   "this machine, or the histograms would differ")

    def _check_visible(self, client, path):
        """Without ship_bytes the workers read the files themselves: check that they see the first one."""
        if self.ship_bytes:
            return
        blind = [worker for worker, seen in client.run(os.path.isfile, path).items() if not seen]
        if blind:
            raise ClusterError(f"{len(blind)} of the Dask workers cannot see {path} (e.g. {blind[0]}): give every "
                               "worker the photos at the same path (shared storage)",
                               remedy=Remedy.SHIP_BYTES)

    def close(self) -> None:
        client, cluster, config = self._client, self._cluster, self._config
        self._client = self._cluster = self._config = None
        with contextlib.suppress(Exception):  # the scheduler may be gone already
            if client is not None:
                client.close(timeout=5)
        with contextlib.suppress(Exception):
            if cluster is not None:
                cluster.close(timeout=10)
        if config is not None:
            config.__exit__(None, None, None)
        for name, level in self._log_levels.items():
            logging.getLogger(name).setLevel(level)
        self._log_levels = {}

    def __enter__(self) -> DaskDescriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the two kinds of work -------------------------------------------------------------------------------

    def describe(self, jobs: list[tuple[str, str | None]], settings, codebook: np.ndarray) -> Iterator[tuple]:
        """``(sha256, described, error)`` of every ``(path, known sha256)`` job, in order, as
        :func:`cbir.index.run._describe_here` gives them (vectors as little-endian float32 bytes)."""
        client = self._connect()
        if jobs:
            self._check_visible(client, jobs[0][0])
        for chunk in self._in_order(client, jobs, lambda payload: (_describe_task, payload, settings, codebook),
                                    lambda reason: (None, None, reason)):
            yield from chunk

    def pool(self, paths: list[str], min_side: int) -> tuple[np.ndarray, int]:
        """Colour pool of the readable files among ``paths`` (for the codebook), and how many were readable."""
        from ..core.codebook import empty_pool
        client = self._connect()
        if paths:
            self._check_visible(client, paths[0])
        pool, readable = empty_pool(), 0
        jobs = [(path, None) for path in paths]
        for chunk in self._in_order(client, jobs, lambda payload: (_pool_task, payload, min_side),
                                    lambda reason: None):
            for result in chunk:
                if result is not None:  # None: a file that crashed workers, skipped as unreadable ones are
                    bins, counts, n = result
                    pool[bins] += counts  # pool counts are integers: the sum is the same in any order
                    readable += n
        return pool, readable

    # ---- the windowed, ordered loop --------------------------------------------------------------------------

    def _payloads(self, jobs):
        """Chunks of jobs as sent: ``(path, known sha256, bytes or None)``; with ship_bytes at most
        ``cluster_chunk_bytes`` of file data per chunk (one larger file goes alone)."""
        chunk, size = [], 0
        for path, known in jobs:
            data = None
            if self.ship_bytes:
                data = _read_here(path)
                if chunk and size + len(data) > self.tuning.cluster_chunk_bytes:
                    yield chunk, size
                    chunk, size = [], 0
                size += len(data)
            chunk.append((path, known, data))
            if len(chunk) == self.tuning.worker_chunk:
                yield chunk, size
                chunk, size = [], 0
        if chunk:
            yield chunk, size

    def _size(self, client):
        """(workers, threads) of the cluster, asked of the scheduler at most once a second (None: unknown now)."""
        now = time.monotonic()
        if now - self._size_at >= 1.0:
            self._size_at = now
            self._known_size = None
            if client.status == "running":
                with contextlib.suppress(OSError, TimeoutError):  # the scheduler going away: _completed says so
                    threads = client.nthreads()
                    self._known_size = (len(threads), sum(threads.values()))
        return self._known_size

    def _window(self, client):
        """Chunks submitted and not yet written: enough to keep every worker thread busy while results travel."""
        threads = (self._size(client) or (1, 1))[1]
        return self.tuning.cluster_tasks_per_thread * max(threads, 1) + 2

    def _in_order(self, client, jobs, task, on_failure) -> Iterator[list]:
        """``task(payload)`` of every chunk on the cluster, results yielded a chunk at a time in chunk order.

        At most ``_window`` chunks (and, with ship_bytes, ``cluster_bytes_in_flight`` bytes) are out at once. A
        task that failed -- its workers died ``allowed-failures`` times (KilledWorker) -- may only have shared a
        worker with the file that kills it, so its files are put in quarantine: when nothing else of this run is
        out, they are sent one at a time, alone. A file that fails alone is the culprit: its result is
        ``on_failure(reason)``."""
        payloads = self._payloads(jobs)
        queue = distributed.as_completed(with_results=True, raise_errors=False, loop=client.loop)
        sent = {}  # future key -> (chunk number, position in the chunk or None for the whole chunk)
        chunks = {}  # chunk number -> [payload, its bytes, per-file results after a failure (else None)]
        finished = {}  # chunk number -> results, until every earlier chunk is yielded
        quarantine = collections.deque()  # (chunk number, position) of files to send alone
        next_chunk = written = in_flight_bytes = 0
        exhausted = False

        def send(number, items, position=None):
            func, *args = task(items)
            key = f"cbir-{self._run}-{number}" + ("" if position is None else f"-{position}")
            try:
                with warnings.catch_warnings():  # shipped bytes make "large graphs": here that is the point
                    warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
                    future = client.submit(func, *args, key=key, pure=False)
            except Exception:  # noqa: BLE001 -- the client closed: the scheduler is gone
                if client.status == "running":
                    raise
                raise self._lost() from None
            sent[future.key] = (number, position)
            queue.add(future)

        def fill():
            nonlocal next_chunk, in_flight_bytes, exhausted
            window = self._window(client)
            while not exhausted and next_chunk - written < window and \
                    (in_flight_bytes < self.tuning.cluster_bytes_in_flight or next_chunk == written):
                item = next(payloads, None)
                if item is None:
                    exhausted = True
                    break
                items, size = item
                chunks[next_chunk] = [items, size, None]
                in_flight_bytes += size
                send(next_chunk, items)
                next_chunk += 1
                self.most_chunks_out = max(self.most_chunks_out, next_chunk - written)

        fill()
        try:
            while written < next_chunk:
                if quarantine and not sent:
                    number, position = quarantine.popleft()
                    send(number, [chunks[number][0][position]], position)
                for future, result in self._completed(client, queue):
                    number, position = sent.pop(future.key)
                    if future.status == "cancelled":  # not by this loop: the connection to the scheduler was lost
                        raise self._lost()
                    future.release()
                    items, size, parts = chunks[number]
                    if not isinstance(result, list):  # a failed task: (type, exception, traceback)
                        error = result[1] if isinstance(result, tuple) and len(result) == 3 else result
                        if position is None:
                            chunks[number][2] = [_PENDING] * len(items)
                            quarantine.extend((number, i) for i in range(len(items)))
                            continue
                        result = [on_failure(_failure_reason(error))]  # it failed alone
                    if position is not None:
                        parts[position] = result[0]
                        if any(part is _PENDING for part in parts):
                            continue
                        result = parts
                    finished[number] = result
                    del chunks[number]
                    in_flight_bytes -= size
                    while written in finished:
                        yield finished.pop(written)
                        written += 1
                if not quarantine and all(position is None for _, position in sent.values()):
                    fill()  # nothing waits for quarantine, and no file is out alone
        finally:
            leftover = list(queue.futures)
            queue.clear()
            if leftover and client.status == "running":
                with contextlib.suppress(Exception):
                    client.cancel(leftover)

    def _lost(self):
        return ClusterError(f"lost the Dask scheduler at {self.address}; the images finished so far are kept",
                            remedy=Remedy.RUN_AGAIN)

    def _completed(self, client, queue):
        """The futures done so far (at least one), waiting for them; raises ClusterError when the scheduler is
        gone, or when no worker has been connected for ``cluster_wait_seconds``."""
        workerless_since = None
        while True:
            batch = queue.next_batch(block=False)
            if batch:
                return batch
            if client.status not in ("running", "connecting"):
                raise self._lost()
            size = self._size(client)
            if size is None or size[0]:
                workerless_since = None
            elif workerless_since is None:
                workerless_since = time.monotonic()
            elif time.monotonic() - workerless_since > self.tuning.cluster_wait_seconds:
                raise ClusterError(f"the Dask scheduler at {self.address} has had no worker for "
                                   f"{self.tuning.cluster_wait_seconds:g} s; the images finished so far are kept",
                                   remedy=Remedy.RUN_AGAIN)
            with queue.thread_condition:
                queue.thread_condition.wait(timeout=0.1)


_PENDING = object()


def _failure_reason(error):
    """Why a file whose task failed on its own is reported failed."""
    if isinstance(error, KilledWorker):
        return CRASHED
    return f"failed on a Dask worker ({type(error).__name__}: {error})"


class _ReadFailure(str):
    """What stands for a file's bytes when this process could not read them (with ship_bytes): the reason."""


def _read_here(path):
    from ..imageio import read_bytes
    try:
        return read_bytes(path)
    except CbirError as error:
        return _ReadFailure(str(error))


def _versions():
    """What must be the same on the workers as here for the same histograms."""
    import cv2
    try:
        cbir_version = importlib.metadata.version("cbir")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        cbir_version = "not installed"
    return {"cbir": cbir_version, "opencv": cv2.__version__, "numpy": np.__version__}


# ---- on the workers --------------------------------------------------------------------------------------------

_luts: dict = {}
_luts_lock = threading.Lock()
_prepared = False


def _lookup_table(settings, codebook):
    """The lookup table of ``codebook``, made once per worker process (0.3 s) rather than sent with every task."""
    from ..core.histogram import lookup_table
    key = (settings.space, hashlib.sha256(np.ascontiguousarray(codebook).tobytes()).hexdigest())
    with _luts_lock:
        if key not in _luts:
            _prepare_process()
            _luts.clear()
            _luts[key] = lookup_table(codebook, settings.space)
        return _luts[key]


def _prepare_process():
    """One core per worker thread for OpenCV; and large temporaries from the heap again: a Dask nanny starts its
    worker with MALLOC_TRIM_THRESHOLD_ set, which freezes glibc's mmap threshold at 128 KiB, so every decoded image
    was mapped, zero-filled and unmapped again (describe measured 1.6x slower). A fixed threshold restores reuse;
    freed memory is still trimmed."""
    global _prepared
    if _prepared:
        return
    _prepared = True
    import cv2
    cv2.setNumThreads(1)
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD


def _describe_task(payload, settings, codebook):
    from .run import _describe_chunk, _portable
    lut = _lookup_table(settings, codebook)
    readable = [(path, known, data) for path, known, data in payload if not isinstance(data, _ReadFailure)]
    described = iter(_portable(_describe_chunk(readable, settings, lut, len(codebook))))
    return [(None, None, str(data)) if isinstance(data, _ReadFailure) else next(described)
            for _, _, data in payload]


def _pool_task(payload, min_side):
    from .run import pool_sample
    _prepare_process()
    pool, readable = pool_sample([(path, data) for path, _, data in payload if not isinstance(data, _ReadFailure)],
                                 min_side)
    bins = np.flatnonzero(pool)
    return [(bins.astype(np.int32), pool[bins], readable)]
