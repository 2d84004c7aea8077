"""Index runs: find image files, learn the codebook when there is none, and keep histograms in step with disk.

Incremental: a file whose size and modification time are unchanged is skipped without being read; a changed one
is re-read and re-done if its content hash changed; files gone from the indexed folders are removed. A bad file
is recorded in ``failures`` with its reason and never stops the run. Batches are written in one transaction
each, so an interrupted run keeps every finished batch and the next run completes the rest.

With ``workers`` > 1, files are read, hashed, decoded and histogrammed in worker processes while this process
stays the single SQLite writer; results come back in file order, so the database is the same as with one process.
With ``cluster``, the same on a Dask cluster's workers (:mod:`cbir.index.cluster`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import errno
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..core.codebook import colour_counts, empty_pool, learn_codebook, pool_counts
from ..core.histogram import LUT_BITS, histogram, lookup_table
from ..errors import CbirError, ClusterError, DatabaseError, Remedy, SettingsError
from ..imageio import (IMAGE_EXTENSIONS, decode_image, decode_with_size, native_stderr_silenced, not_a_regular_file,
                       read_bytes, read_image)
from ..settings import Settings
from .tuning import Tuning
from .workers import context as _context
from .workers import exit_with, limit_memory, memory_per_worker, time_limit
from .workers import start_server as _start_server

CODEBOOK_MIN_SIDE = 64  # colour statistics for the codebook need few pixels: decode large JPEGs small


@dataclass
class IndexReport:
    """What an index run did. ``failures`` lists (path, reason) of every file that could not be indexed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    codebook_learned: bool = False
    old_index_kept: bool = False  # a rebuild stopped before its end: the index is as it was before it
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        return (f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, removed {self.removed}, "
                f"failed {self.failed}")


def find_images(roots):
    """Image files under ``roots`` (folders walked recursively, symlinked folders not followed; files named
    directly are taken whatever their extension).

    Returns
    -------
    files : sorted list of absolute paths
    problems : list of (path, reason) for what looks like an image but cannot be read as a file (a broken link, a
        FIFO or a device named like an image, a path too long), and for folders that cannot be listed
    unlisted : folders that could not be listed: what the index holds under them is kept as it is
    """
    files, problems, unlisted = set(), [], []

    def cannot_list(error):
        folder = os.path.abspath(error.filename)
        unlisted.append(folder)
        problems.append((folder, f"cannot list this folder ({_os_reason(error)}); what was indexed from it is kept"))

    for root in roots:
        root = os.fspath(root)
        if os.path.isfile(root):
            files.add(os.path.abspath(root))
            continue
        if not os.path.isdir(root):
            reason = "broken symbolic link" if os.path.islink(root) else "no such file or directory"
            raise CbirError(f"{root}: {reason}")
        for folder, _, names in os.walk(root, onerror=cannot_list):
            for name in names:  # os.walk lists everything but folders here: files, links, FIFOs, devices
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    path = os.path.abspath(os.path.join(folder, name))
                    problem = _not_a_file(path)
                    if problem:
                        problems.append((path, problem))
                    else:
                        files.add(path)
    return sorted(files), problems, unlisted


def _not_a_file(path):
    """Why ``path`` (named like an image) is not a file that can be read, or None."""
    try:
        kind = not_a_regular_file(os.stat(path).st_mode)
    except OSError as error:
        if os.path.islink(path):
            return _link_problem(path)
        return f"cannot read ({_os_reason(error)})"
    return f"is {kind}, not an image file" if kind else None


def _os_reason(error):
    if error.errno == errno.ENAMETOOLONG:
        return "path too long for the system"
    return error.strerror or str(error)


_NOT_UTF8 = "file name is not valid UTF-8 (shown with \\x escapes); rename the file to index it"


def _utf8_name(path):
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes kept by Python as surrogates: SQLite and JSON cannot hold them
        return False
    return True


def _escaped_name(path):
    """A file name with undecodable bytes, as text that can be stored and shown (bytes as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _link_problem(path):
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if error.errno == errno.ENOENT:
            return "broken symbolic link (its target does not exist)"
        return f"symbolic link cannot be followed ({error.strerror})"
    return "symbolic link to something that is not a file"


def _under(path, roots):
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def resolve_settings(stored, overrides, rebuild):
    """Settings for a run: the stored ones (if any) with the requested changes; refuses a change that would
    need new histograms unless ``rebuild``."""
    if stored is None:
        return Settings().with_changes(**overrides)
    current = Settings.from_dict(stored)
    wanted = current.with_changes(**overrides)
    changed = [name for name in Settings.HISTOGRAM_FIELDS if getattr(wanted, name) != getattr(current, name)]
    if changed and not rebuild:
        described = ", ".join(f"{n}={getattr(current, n)}" for n in changed)
        raise SettingsError(f"this index was built with {described}", remedy=Remedy.REBUILD_FOR_SETTINGS)
    return wanted


def learn_collection_codebook(files, settings, workers=1, tuning=Tuning(), describer=None):
    """Codebook of a collection from the first ``settings.sample`` readable files of an evenly spread order of its
    files, read in worker processes when there are many, or by ``describer`` (a
    :class:`cbir.index.cluster.DaskDescriber`).

    Files that cannot be read are passed over and more are read in their place, until the sample is full or every
    file was tried: 100,000 empty placeholders beside nine photos still give a codebook of the nine.

    Returns
    -------
    (colours, rgb, shares) from :func:`cbir.core.codebook.learn_codebook`, and ``{path: reason}`` of the files whose
    worker died on them (a crash, the time limit), so the run does not read them a second time
    """
    order = _spread_order(len(files), settings.sample)
    pool = empty_pool()
    readable, tried, lost = 0, 0, {}
    while readable < settings.sample and tried < len(order):
        # As many files as the sample still lacks; more each round when many fail (few rounds of worker start-up).
        # A cluster gives one pool per round, not one per file: its rounds take just what is lacking.
        size = settings.sample - readable if describer is not None else max(settings.sample - readable, tried)
        paths = [files[i] for i in order[tried : tried + size]]
        tried += len(paths)
        if describer is not None:
            found, count = describer.pool(paths, CODEBOOK_MIN_SIDE)
            pool += found
            readable += count
            continue
        results = _in_workers("sample", [(p,) for p in paths], settings, None, 0, workers, tuning) \
            if _parallel(workers, len(paths), tuning) else (_sample_job((p,)) for p in paths)
        for path, (bins, counts, error) in zip(paths, results):
            if error is not None:
                if _WORKER_DIED in error or _TIME_LIMIT in error:
                    lost[path] = error.removeprefix(f"{path}: ")
            elif readable < settings.sample:
                pool_counts(pool, bins, counts)
                readable += 1
    if not readable:
        raise CbirError(f"none of the {len(files)} image files could be read as an image; nothing to index")
    return (*learn_codebook(pool, settings.colors, space=settings.space, seed=settings.seed), lost)


def _spread_order(n, first):
    """Indices ``0..n-1``: first ``first`` of them evenly spread, then the others in an evenly spreading order."""
    step = max(1, n / first)
    head = list(dict.fromkeys(int(i * step) for i in range(min(first, n))))
    taken = set(head)
    golden = 0.6180339887498949  # the remaining indices by the fractional part of i * golden: well spread
    return head + sorted((i for i in range(n) if i not in taken), key=lambda i: (i * golden) % 1.0)


def pool_sample(items, min_side):
    """Colour pool (:func:`cbir.core.codebook.pool_colours`) of the readable files among ``(path, bytes or None)``
    items (None: read the file), decoded small, and how many were readable."""
    pool = empty_pool()
    readable = 0
    for path, data in items:
        try:
            pool_colours(pool, read_image(path, min_side=min_side) if data is None else
                         decode_image(data, min_side=min_side, name=path))
            readable += 1
        except CbirError:
            continue
    return pool, readable


def describe(path, settings, lut, n_colors, known_sha256=None, data=None):
    """Read, hash, decode and histogram one file (``data``: its bytes, when read already).

    Returns
    -------
    (sha256, None) when the content hash equals ``known_sha256``, else (sha256, (width, height, vector)) with the
    full-size dimensions and the ``float32`` histogram. Raises CbirError for a file that cannot be indexed.
    """
    if data is None:
        data = read_bytes(path)
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 == known_sha256:
        return sha256, None
    image, (width, height) = decode_with_size(data, min_side=settings.min_side, name=path)
    return sha256, (width, height, histogram(image, lut, n_colors, settings.layout))


def index_paths(store, roots: list[str], overrides: dict[str, Any] | None = None, *, rebuild: bool = False,
                progress: Callable[[int, int], None] | None = None, workers: int = 1,
                cluster: str | None = None, ship_bytes: bool = False, tuning: Tuning = Tuning()) -> IndexReport:
    """Bring the index in ``store`` in step with the image files under ``roots``.

    Parameters
    ----------
    store : cbir.store.Store
    roots : list of folders or files
    overrides : dict of Settings fields to change (None values are ignored)
    rebuild : relearn the codebook and recompute every histogram
    progress : callable(done, total) or None, called as files are processed
    workers : processes that read and describe files (1: all in this process); the result is the same
    cluster : read and describe the files on this Dask cluster instead of ``workers``: a scheduler's address
        (``tcp://host:8786``) or ``local:N`` (N worker processes here); the result is the same. Needs Dask
        (``pip install 'cbir[cluster]'``), imported only then
    ship_bytes : with ``cluster``, read the files here and send their bytes (the workers need not see them)
    tuning : batch size, worker chunks, and the fewest files worth starting workers for

    Returns
    -------
    IndexReport
    """
    started = time.perf_counter()
    report = IndexReport()
    describer = None
    if cluster is not None:
        from .cluster import DaskDescriber  # Dask is imported for a cluster run only
        describer = DaskDescriber(cluster, ship_bytes=ship_bytes, tuning=tuning)  # connects at first use
        workers = 1
    store.lock_for_writing()
    try:
        meta = store.meta()
        has_codebook = store.codebook() is not None
        settings = resolve_settings(meta.get("settings") if has_codebook else None, overrides or {}, rebuild)
        files, problems, unlisted = find_images(roots)
        if workers > 1 and _parallel(workers, _fewest_new(store, files, fresh=rebuild or not has_codebook), tuning):
            _start_server()  # it boots on another core while this one learns the codebook or lists the work
        target, rebuilding, finished = store, rebuild and has_codebook, False
        try:
            if not has_codebook or rebuild:
                if not files:
                    raise CbirError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under "
                                    f"{', '.join(map(str, roots))}")
                colours, rgb, shares, lost = learn_collection_codebook(files, settings, workers, tuning, describer)
                hexes = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in rgb]
                learned = {"settings": settings.to_dict(), "lut_bits": LUT_BITS}
                if rebuilding:  # written beside the index, which stays as it is until the rebuild is whole
                    target = store.begin_rebuild(colours, hexes, shares, learned)
                else:
                    store.replace_codebook(colours, hexes, shares, learned)
                report.codebook_learned = True
            else:
                lost = {}
                if settings.to_dict() != meta.get("settings"):  # ranking settings changed: no new histograms needed
                    store.set_meta({"settings": settings.to_dict()})
            _update(target, roots, (files, problems, unlisted), lost, settings, target.codebook(), report, progress,
                    workers, tuning, describer)
            if rebuilding and not report.interrupted:
                store.finish_rebuild()
                finished = True
        except DatabaseError as error:
            raise _stopped(store, rebuilding, error) from None
        finally:
            if rebuilding and not finished:  # stopped: Ctrl-C, an error, a full disk, a lost cluster
                store.discard_rebuild()
                report.old_index_kept = True
    finally:
        store.unlock()
        if describer is not None:
            describer.close()
    report.seconds = time.perf_counter() - started
    return report


def _stopped(store, rebuilding, error):
    """The error that ends a run whose database failed (a full disk...): it says what is kept."""
    if rebuilding:
        kept = "the rebuild stopped; the index is as it was before it"
    else:
        kept = "the batches of images written before are kept"
    return DatabaseError(f"{error.problem}; {kept}", remedy=error.remedy)


def _update(store, roots, found, lost, settings, codebook, report, progress, workers, tuning, describer=None):
    todo, new_paths = _plan(store, roots, found, lost, report)
    if not todo:
        return
    parallel = _parallel(workers, len(todo), tuning)
    if parallel:
        _start_server()  # if not started yet: it boots on another core while this one builds the lookup table
    jobs = [(path, entry[3] if entry else None) for path, _, _, entry in todo]
    if describer is not None:
        results = describer.describe(jobs, settings, codebook)
    elif parallel:
        results = _in_workers("describe", jobs, settings, lookup_table(codebook, settings.space), len(codebook),
                              workers, tuning)
    else:
        results = _describe_here(jobs, settings, lookup_table(codebook, settings.space), len(codebook))
    batches = _Batches(store, report, tuning.batch_size, new_paths)
    try:
        for done, (item, result) in enumerate(zip(todo, results), 1):
            batches.add(item, result)
            if progress:
                progress(done, len(todo))
    except KeyboardInterrupt:
        report.interrupted = True
    except ClusterError:  # the cluster went away: what is finished is kept
        batches.write()
        raise
    except _WorkersFailing:
        batches.write()
        raise CbirError("worker processes keep dying (out of memory, or killed) before they reach any file; the "
                        "images finished so far are kept", remedy=Remedy.ONE_WORKER) from None
    batches.write()


def _plan(store, roots, found, lost, report):
    """Compare the files found (``find_images``) with the index: forget what is gone from the indexed folders
    (never what is under a folder that could not be listed), record the files that cannot even be read (and those
    ``lost``: a worker died on them while the codebook was learned), count the unchanged ones. Returns the files to
    read, as ``(path, stored path, stat, known row or None)``, and the stored paths that have no row yet."""
    files, problems, unlisted = found
    known = store.known_images()
    known_failures = store.known_failures()
    abs_roots = [os.path.abspath(r) for r in roots]
    problems = list(problems)
    stored_paths = []
    for path in files:
        stored = store.stored_path(path)
        if _utf8_name(stored):
            stored_paths.append((path, stored))
        else:  # undecodable bytes: SQLite text and JSON cannot hold the path as the database would keep it
            problems.append((_escaped_name(path), _NOT_UTF8))
    seen = {stored for _, stored in stored_paths} | {store.stored_path(p) for p, _ in problems}
    removed = [p for p in list(known) + list(known_failures)
               if p not in seen and _under(os.path.abspath(store.disk_path(p)), abs_roots)
               and not _under(os.path.abspath(store.disk_path(p)), unlisted)]
    report.removed = sum(p in known for p in removed)

    failures = [(store.stored_path(p), reason, None, None) for p, reason in problems]
    report.failures += problems
    todo = []
    for path, stored in stored_paths:
        try:
            stat = os.stat(path)
        except OSError as error:
            failures.append((stored, f"cannot read ({_os_reason(error)})", None, None))
            report.failures.append((path, f"cannot read ({_os_reason(error)})"))
            continue
        if path in lost:
            failures.append((stored, lost[path], stat.st_size, stat.st_mtime_ns))
            report.failures.append((path, lost[path]))
            continue
        entry = known.get(stored)
        if entry and entry[1] == stat.st_size and entry[2] == stat.st_mtime_ns:
            report.unchanged += 1
        else:
            todo.append((path, stored, stat, entry))
    store.write_batch(failures=failures, removed=removed)
    new_paths = {stored for _, stored, _, entry in todo if entry is None and stored not in known_failures}
    return todo, new_paths


class _Batches:
    """The results of described files, counted in the report and written ``batch_size`` at a time, one
    transaction each (so an interrupted run keeps every finished batch)."""

    def __init__(self, store, report, batch_size, new_paths):
        self.store, self.report, self.batch_size, self.new_paths = store, report, batch_size, new_paths
        self.records, self.failures, self.touched = [], [], []

    def add(self, item, result):
        """One file: ``item`` from :func:`_plan`, ``result`` ``(sha256, described, error message)`` from
        :func:`_describe_job`."""
        (path, stored, stat, entry), (sha256, described, error) = item, result
        if error is not None:
            reason = error.removeprefix(f"{path}: ")
            self.failures.append((stored, reason, stat.st_size, stat.st_mtime_ns))
            self.report.failures.append((path, reason))
        elif described is None:  # same content, new size or time
            self.touched.append((entry[0], stat.st_size, stat.st_mtime_ns))
            self.report.unchanged += 1
        else:
            self.records.append((stored, stat.st_size, stat.st_mtime_ns, sha256, *described))
            if entry:
                self.report.updated += 1
            else:
                self.report.added += 1
        if len(self.records) + len(self.failures) + len(self.touched) >= self.batch_size:
            self.write()

    def write(self):
        """Write what is pending in one transaction; Ctrl-C meanwhile waits until the batch is written and no longer
        pending (else an interruption just after the commit wrote the batch a second time: "UNIQUE constraint
        failed")."""
        with _interrupts_held():
            self.store.write_batch(self.records, self.failures, self.touched, new_paths=self.new_paths)
            self.records, self.failures, self.touched = [], [], []


@contextlib.contextmanager
def _interrupts_held():
    """Hold SIGINT until the block has run, then raise KeyboardInterrupt: in the main thread, while Python's own
    handler is in place (another handler is left alone)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    held = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if held:
            raise KeyboardInterrupt


def _parallel(workers, n_jobs, tuning):
    return workers > 1 and n_jobs >= tuning.parallel_min_files


def _fewest_new(store, files, fresh):
    """At least this many of ``files`` will be read: all on a fresh index, else those beyond the indexed count."""
    return len(files) if fresh else len(files) - store.counts(["images"])["images"]


def _chunks(jobs, size):
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def _describe_here(jobs, settings, lut, n_colors):
    """``(sha256, described, error message)`` of every ``(path, known sha256)`` job, in order, in this process;
    see :func:`describe`. One at a time, so progress is reported (on stderr) between files, outside the
    silencing of codec warnings."""
    for job in jobs:
        yield _describe_job(job, settings, lut, n_colors)


class _WorkersFailing(Exception):
    """Worker processes die without having started on a file: nothing to blame on a file."""


_WORKER_DIED = "the process reading it died"
_TIME_LIMIT = "the time limit for one file"


def _in_workers(kind, jobs, settings, lut, n_colors, workers, tuning):
    """Results of ``jobs`` (tuples, see :data:`_JOBS`) of one ``kind`` done in ``workers`` processes, a chunk of
    jobs per task, in order.

    The workers ignore SIGINT, so Ctrl-C interrupts this process only, which stops them and keeps what is finished.
    A worker that dies (a crash in a decoder, the per-file time limit, a kill) takes no more than its file with
    it: each job's state (queued, started, finished) is kept in shared memory, the jobs that were started and not
    finished are done again one at a time in a worker of their own, where the one that kills its worker again is
    reported as failed, and the rest goes on in a new pool.
    """
    context = _context()
    state = context.RawArray("b", len(jobs))  # 0 queued, 1 started, 2 finished: written by the workers
    memory = memory_per_worker(workers, tuning.worker_memory)
    setup = (settings, lut, n_colors, os.getpid(), memory, tuning.file_seconds, state)
    results, pending = {}, collections.deque(range(len(jobs)))
    while pending:
        for index in [i for i in pending if state[i] == 1]:  # in flight when a worker died
            results[index] = _alone(kind, index, jobs[index], setup, context)
        todo = [i for i in pending if i not in results]
        if todo:
            with concurrent.futures.ProcessPoolExecutor(min(workers, len(todo)), mp_context=context,
                                                        initializer=_init_worker, initargs=setup) as pool:
                futures = [pool.submit(_work_in_worker, kind, [(i, *jobs[i]) for i in chunk])
                           for chunk in _chunks(todo, tuning.worker_chunk)]
                try:
                    for future in futures:
                        try:
                            results.update(future.result())
                        except BrokenProcessPool:
                            break
                        while pending and pending[0] in results:
                            yield results.pop(pending.popleft())
                finally:
                    for future in futures:
                        future.cancel()  # what has not started (Ctrl-C, an error): shutdown waits for the rest
                    pool.shutdown(wait=True, cancel_futures=True)
                for future in futures:  # after a break: the chunks that finished are kept
                    if future.done() and not future.cancelled() and future.exception() is None:
                        results.update(future.result())
            if any(i not in results for i in pending) and not any(state[i] == 1 for i in pending):
                raise _WorkersFailing()
        while pending and pending[0] in results:
            yield results.pop(pending.popleft())


def _alone(kind, index, job, setup, context):
    """One job in a worker of its own: its result, or a failure naming why the worker died on it."""
    started = time.monotonic()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context, initializer=_init_worker,
                                                initargs=setup) as pool:
        try:
            return dict(pool.submit(_work_in_worker, kind, [(index, *job)]).result())[index]
        except BrokenProcessPool:
            pass
    if setup[6][index] != 1:
        raise _WorkersFailing()
    seconds = setup[5]
    if time.monotonic() - started >= seconds:
        why = f"gave up after {seconds:g} s ({_TIME_LIMIT})"
    else:
        why = f"{_WORKER_DIED} (a crash in the image decoder, or killed)"
    return None, None, f"{job[0]}: {why}"


def _describe_chunk(jobs, settings, lut, n_colors):
    """:func:`_describe_job` of a few jobs, codec warnings silenced once for all of them (each redirection costs
    system calls: about 1% of describing a small image)."""
    with native_stderr_silenced():
        return [_describe_job(job, settings, lut, n_colors) for job in jobs]


def _describe_job(job, settings, lut, n_colors):
    """:func:`describe` of one ``(path, known sha256[, bytes read already])`` job as ``(sha256, described, error
    message)``: whatever goes wrong with one file (out of memory included) is that file's failure, never the
    run's."""
    path, known_sha256, *data = job
    try:
        return (*describe(path, settings, lut, n_colors, known_sha256, *data), None)
    except CbirError as error:
        return None, None, str(error)
    except MemoryError:
        return None, None, f"{path}: not enough memory to describe it"
    except Exception as error:  # noqa: BLE001 - a bug or an unforeseen library error: reported with the file
        return None, None, f"{path}: could not be described ({type(error).__name__}: {error})"


_worker_context = None  # (settings, lut, n_colors) of this worker process
_worker_limits = None  # (seconds per file, shared job states) of this worker process


def _init_worker(settings, lut, n_colors, run_pid, memory, seconds, state):
    global _worker_context, _worker_limits
    exit_with(run_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)  # one core per worker process
    if lut is not None and lut.flags.writeable:  # a copy sent to a spawned worker: read-only again, so the fast histogram path applies
        lut = lut.copy()
        lut.flags.writeable = False
    _worker_context = (settings, lut, n_colors)
    _worker_limits = (seconds, state)
    limit_memory(memory)  # last: what the worker holds from here on is what a file costs


def _work_in_worker(kind, jobs):
    """``[(index, result)]`` of ``(index, *job)`` jobs in a worker, each file under the time limit, its state kept
    in shared memory."""
    seconds, state = _worker_limits
    run = _JOBS[kind]
    done = []
    with native_stderr_silenced():
        for index, *job in jobs:
            state[index] = 1
            with time_limit(seconds):
                result = run(job)
            state[index] = 2
            done.append((index, result))
    return done


def _describe_for_run(job):
    """:func:`_describe_job` in a worker, :func:`_portable`."""
    return _portable([_describe_job(job, *_worker_context)])[0]


def _sample_job(job):
    """The colour counts of one ``(path,)`` of the codebook sample: ``(bins, counts, error message)``."""
    (path,) = job
    try:
        return (*colour_counts(read_image(path, min_side=CODEBOOK_MIN_SIDE)), None)
    except CbirError as error:
        return None, None, str(error)
    except MemoryError:
        return None, None, f"{path}: not enough memory to describe it"
    except Exception as error:  # noqa: BLE001 - see _describe_job
        return None, None, f"{path}: could not be described ({type(error).__name__}: {error})"


_JOBS = {"describe": _describe_for_run, "sample": _sample_job}


def _portable(results):
    """``results`` with their vectors as little-endian float32 bytes (what the database stores, and sent between
    processes much faster than arrays)."""
    return [(sha256, described and (*described[:2], np.asarray(described[2], "<f4").tobytes()), error)
            for sha256, described, error in results]


def pool_sample(items, min_side):
    """Colour pool (:func:`cbir.core.codebook.pool_colours`) of the readable files among ``(path, bytes or None)``
    items (None: read the file), decoded small, and how many were readable (a cluster worker's part of the
    codebook sample)."""
    pool = empty_pool()
    readable = 0
    for path, data in items:
        try:
            image = read_image(path, min_side=min_side) if data is None else decode_image(data, min_side=min_side,
                                                                                           name=path)
        except CbirError:
            continue
        pool_counts(pool, *colour_counts(image))
        readable += 1
    return pool, readable
