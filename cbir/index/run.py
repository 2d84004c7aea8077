"""Index runs: find image files, learn the codebook when there is none, and keep histograms in step with disk.

Incremental: a file whose size and modification time are unchanged is skipped without being read; a changed one
is re-read and re-done if its content hash changed; files gone from the indexed folders are removed. A bad file
is recorded in ``failures`` with its reason and never stops the run. Batches are written in one transaction
each, so an interrupted run keeps every finished batch and the next run completes the rest.

With ``workers`` > 1, files are read, hashed, decoded and histogrammed in worker processes while this process
stays the single SQLite writer; results come back in file order, so the database is the same as with one process.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..core.codebook import empty_pool, learn_codebook, pool_colours
from ..core.duplicates import structure_thumbnail
from ..core.histogram import LUT_BITS, histogram, lookup_table
from ..errors import CbirError, Remedy, SettingsError
from ..imageio import IMAGE_EXTENSIONS, decode_with_size, native_stderr_silenced, read_bytes, read_image
from ..settings import Settings
from .tuning import Tuning
from .workers import context as _context
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
    problems : list of (path, reason) for entries that look like images but cannot be read as files
    """
    files, problems = set(), []
    for root in roots:
        root = os.fspath(root)
        if os.path.isfile(root):
            if _utf8_name(root):
                files.add(os.path.abspath(root))
            else:
                problems.append((_escaped_name(os.path.abspath(root)), _NOT_UTF8))
            continue
        if not os.path.isdir(root):
            reason = "broken symbolic link" if os.path.islink(root) else "no such file or directory"
            raise CbirError(f"{root}: {reason}")
        for folder, _, names in os.walk(root):
            for name in names:
                if not name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = os.path.abspath(os.path.join(folder, name))
                if not _utf8_name(path):
                    problems.append((_escaped_name(path), _NOT_UTF8))
                elif os.path.isfile(path):
                    files.add(path)
                elif os.path.islink(path):
                    problems.append((path, _link_problem(path)))
    return sorted(files), problems


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


def learn_collection_codebook(files, settings):
    """Codebook of a collection from an evenly spread sample of its files; files that cannot be read are skipped
    here (the main pass reports them)."""
    step = max(1, len(files) / settings.sample)
    sample = [files[int(i * step)] for i in range(min(settings.sample, len(files)))]
    pool = empty_pool()
    readable = 0
    for path in sample:
        try:
            pool_colours(pool, read_image(path, min_side=CODEBOOK_MIN_SIDE))
            readable += 1
        except CbirError:
            continue
    if not readable:
        raise CbirError(f"none of the {len(sample)} sampled files could be read as an image; nothing to index")
    return learn_codebook(pool, settings.colors, space=settings.space, seed=settings.seed)


def describe(path, settings, lut, n_colors, known_sha256=None):
    """Read, hash, decode, histogram and thumbnail one file.

    Returns
    -------
    (sha256, None) when the content hash equals ``known_sha256``, else (sha256, (width, height, vector, thumb))
    with the full-size dimensions, the ``float32`` histogram and the ``uint8`` structure thumbnail
    (:func:`cbir.core.duplicates.structure_thumbnail`). Raises CbirError for a file that cannot be indexed.
    """
    data = read_bytes(path)
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 == known_sha256:
        return sha256, None
    image, (width, height) = decode_with_size(data, min_side=settings.min_side, name=path)
    return sha256, (width, height, histogram(image, lut, n_colors, settings.layout), structure_thumbnail(image))


def index_paths(store, roots: list[str], overrides: dict[str, Any] | None = None, *, rebuild: bool = False,
                progress: Callable[[int, int], None] | None = None, workers: int = 1,
                tuning: Tuning = Tuning()) -> IndexReport:
    """Bring the index in ``store`` in step with the image files under ``roots``.

    Parameters
    ----------
    store : cbir.store.Store
    roots : list of folders or files
    overrides : dict of Settings fields to change (None values are ignored)
    rebuild : relearn the codebook and recompute every histogram
    progress : callable(done, total) or None, called as files are processed
    workers : processes that read and describe files (1: all in this process); the result is the same
    tuning : batch size, worker chunks, and the fewest files worth starting workers for

    Returns
    -------
    IndexReport
    """
    started = time.perf_counter()
    report = IndexReport()
    store.lock_for_writing()
    try:
        meta = store.meta()
        has_codebook = store.codebook() is not None
        settings = resolve_settings(meta.get("settings") if has_codebook else None, overrides or {}, rebuild)
        files, problems = find_images(roots)
        if workers > 1 and _parallel(workers, _fewest_new(store, files, fresh=rebuild or not has_codebook), tuning):
            _start_server()  # it boots on another core while this one learns the codebook or lists the work
        if not has_codebook or rebuild:
            if not files:
                raise CbirError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {', '.join(map(str, roots))}")
            colours, rgb, shares = learn_collection_codebook(files, settings)
            store.replace_codebook(colours, ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in rgb], shares,
                                   {"settings": settings.to_dict(), "lut_bits": LUT_BITS})
            report.codebook_learned = True
        elif settings.to_dict() != meta.get("settings"):
            store.set_meta({"settings": settings.to_dict()})  # ranking settings changed: no new histograms needed
        _update(store, roots, files, problems, settings, store.codebook(), report, progress, workers, tuning)
    finally:
        store.unlock()
    report.seconds = time.perf_counter() - started
    return report


def _update(store, roots, files, problems, settings, codebook, report, progress, workers, tuning):
    todo, new_paths = _plan(store, roots, files, problems, report)
    if not todo:
        return
    parallel = _parallel(workers, len(todo), tuning)
    if parallel:
        _start_server()  # if not started yet: it boots on another core while this one builds the lookup table
    lut = lookup_table(codebook, settings.space)
    jobs = [(path, entry[3] if entry else None) for path, _, _, entry in todo]
    results = _describe_parallel(jobs, settings, lut, len(codebook), workers, tuning.worker_chunk) if parallel else \
        _describe_here(jobs, settings, lut, len(codebook))
    batches = _Batches(store, report, tuning.batch_size, new_paths)
    try:
        for done, (item, result) in enumerate(zip(todo, results), 1):
            batches.add(item, result)
            if progress:
                progress(done, len(todo))
    except KeyboardInterrupt:
        report.interrupted = True
    except BrokenProcessPool:
        batches.write()
        raise CbirError("a worker process died (out of memory, or killed); the images finished so far are kept",
                        remedy=Remedy.ONE_WORKER) from None
    batches.write()


def _plan(store, roots, files, problems, report):
    """Compare the files found with the index: forget what is gone from the indexed folders, record the files that
    cannot even be listed, count the unchanged ones. Returns the files to read, as ``(path, stored path, stat,
    known row or None)``, and the stored paths that have no row yet.

    Unchanged files indexed before cbir kept structure thumbnails are read again, once (known row without its
    content hash, so they are described in full and count as updated)."""
    known = store.known_images()
    without_structure = store.images_without_structure()
    known_failures = store.known_failures()
    abs_roots = [os.path.abspath(r) for r in roots]
    stored_paths = [store.stored_path(f) for f in files]
    seen = set(stored_paths) | {store.stored_path(p) for p, _ in problems}
    removed = [p for p in list(known) + list(known_failures)
               if p not in seen and _under(os.path.abspath(store.disk_path(p)), abs_roots)]
    report.removed = sum(p in known for p in removed)

    failures = [(store.stored_path(p), reason, None, None) for p, reason in problems]
    report.failures += problems
    todo = []
    for path, stored in zip(files, stored_paths):
        try:
            stat = os.stat(path)
        except OSError as error:
            failures.append((stored, f"cannot read ({error.strerror})", None, None))
            report.failures.append((path, f"cannot read ({error.strerror})"))
            continue
        entry = known.get(stored)
        if entry and entry[0] in without_structure:
            todo.append((path, stored, stat, (*entry[:3], None)))
        elif entry and entry[1] == stat.st_size and entry[2] == stat.st_mtime_ns:
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
        """Write what is pending in one transaction."""
        self.store.write_batch(self.records, self.failures, self.touched, new_paths=self.new_paths)
        self.records, self.failures, self.touched = [], [], []


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


def _describe_parallel(jobs, settings, lut, n_colors, workers, chunk):
    """:func:`_describe_here` in ``workers`` processes, a chunk of jobs per task, in order. The workers ignore
    SIGINT, so Ctrl-C interrupts this process only, which stops them and keeps what is finished."""
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=_context(),
                                                initializer=_init_worker,
                                                initargs=(settings, lut, n_colors)) as pool:
        results = pool.map(_describe_in_worker, _chunks(jobs, chunk))
        try:
            for chunk in results:
                yield from chunk
        finally:
            results.close()  # cancels what has not started (Ctrl-C, an error): shutdown then waits for the rest
            pool.shutdown(wait=True, cancel_futures=True)


def _describe_chunk(jobs, settings, lut, n_colors):
    """:func:`_describe_job` of a few jobs, codec warnings silenced once for all of them (each redirection costs
    system calls: about 1% of describing a small image)."""
    with native_stderr_silenced():
        return [_describe_job(job, settings, lut, n_colors) for job in jobs]


def _describe_job(job, settings, lut, n_colors):
    path, known_sha256 = job
    try:
        return (*describe(path, settings, lut, n_colors, known_sha256), None)
    except CbirError as error:
        return None, None, str(error)


_worker_context = None  # (settings, lut, n_colors) of this worker process


def _init_worker(settings, lut, n_colors):
    global _worker_context
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)  # one core per worker process
    if lut.flags.writeable:  # a copy sent to a spawned worker: read-only again, so the fast histogram path applies
        lut = lut.copy()
        lut.flags.writeable = False
    _worker_context = (settings, lut, n_colors)


def _describe_in_worker(jobs):
    """:func:`_describe_chunk` in a worker; vectors go back as little-endian bytes (what the database stores, and
    sent between processes much faster than arrays)."""
    return [(sha256, described and (*described[:2], np.asarray(described[2], "<f4").tobytes(), described[3].tobytes()),
             error)
            for sha256, described, error in _describe_chunk(jobs, *_worker_context)]
