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
import dataclasses
import errno
import fnmatch
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

from ..core.codebook import block_means, colour_counts, empty_pool, learn_codebook, pool_counts
from ..core.duplicates import structure_thumbnail
from ..core.histogram import LUT_BITS, histogram, lookup_table
from ..errors import CbirError, ClusterError, DatabaseError, Remedy, SettingsError
from ..imageio import IMAGE_EXTENSIONS, decode_with_size, native_stderr_silenced, not_a_regular_file, read_bytes
from ..settings import Settings
from .tuning import Tuning
from .workers import context as _context
from .workers import exit_with, limit_memory, memory_per_worker, time_limit
from .workers import start_server as _start_server

# Colour statistics for the codebook need few pixels: a picture's colours are pooled from block means of the decode
# made for its histogram, the blocks as large as keeps this short side (64x48 for a 1024x768 photo); its structure
# thumbnail (16x16) is squeezed from the same small picture.
CODEBOOK_MIN_SIDE = 48


@dataclass(frozen=True)
class Decoded:
    """A file of the codebook's sample as read and decoded for its histogram, kept so that the run's main pass
    does not read and decode it again: ``sha256`` of its bytes, its full-size ``size`` (width, height), ``image``
    at the histograms' scale (``Settings.min_side``), its structure ``thumb`` (made from :func:`pool_scale`'s
    picture), and ``stat`` (size, mtime_ns, inode) taken before it was read; used only while the file's stat is
    still that."""

    sha256: str
    size: tuple[int, int]
    image: np.ndarray
    thumb: np.ndarray
    stat: tuple[int, int, int]


@dataclass
class IndexReport:
    """What an index run did.

    added, updated, unchanged, removed : int, images (``updated`` includes every image a rebuild recomputed)
    failures : list of (path, reason), files that could not be indexed
    skipped : list of (path, reason), files with an image extension cbir cannot read (HEIC, RAW...), not indexed
    interrupted : bool, Ctrl-C: finished batches are kept and the next run completes the rest
    codebook_learned : bool; codebook_images : int or None, how many images it was learned from
    codebook_outgrown : (learned from, images indexed now) when the collection has grown to at least twice the
        images the codebook was learned from while it could have used more (``Settings.sample``): a rebuild
        would learn it from the whole collection; else None
    seconds : float
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    codebook_learned: bool = False
    codebook_images: int | None = None
    codebook_outgrown: tuple[int, int] | None = None
    old_index_kept: bool = False  # a rebuild stopped before its end: the index is as it was before it
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        skipped = f", skipped {len(self.skipped)}" if self.skipped else ""
        return (f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, removed {self.removed}, "
                f"failed {self.failed}{skipped}")


# Folders that file servers, operating systems and photo tools fill with their own copies or metadata: Synology
# thumbnails (@eaDir) come back as near-copies of every photo, and macOS AppleDouble files (._*, hidden) can never be
# read. Names starting with "." (hidden files and folders: .git, ._IMG_1.jpg, .thumbnails) are skipped as well.
SYSTEM_FOLDERS = frozenset({"@eaDir", "@Recycle", "#recycle", "#snapshot", "$RECYCLE.BIN", "System Volume Information"})
# Image formats cbir cannot decode: counted and named as skipped instead of passed over in silence.
UNSUPPORTED_EXTENSIONS = {
    ".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".jxl": "JPEG XL", ".cr2": "RAW", ".cr3": "RAW",
    ".nef": "RAW", ".nrw": "RAW", ".arw": "RAW", ".dng": "RAW", ".orf": "RAW", ".rw2": "RAW", ".raf": "RAW",
    ".srw": "RAW", ".pef": "RAW", ".raw": "RAW",
}


@dataclass(frozen=True)
class Found:
    """What :func:`find_images` found: ``files`` (sorted absolute paths), ``problems`` (path, reason) of entries
    that look like images but cannot be read as files (and of folders that cannot be listed), ``skipped`` (path,
    reason) of images in formats cbir cannot read, ``unlisted`` the folders that could not be listed."""

    files: list[str]
    problems: list[tuple[str, str]]
    skipped: list[tuple[str, str]]
    unlisted: list[str] = field(default_factory=list)


def _excluded(name: str, relative: str, exclude: tuple[str, ...], include_hidden: bool) -> bool:
    """Whether a file or folder found by walking is left out: hidden, a system folder, or matching an exclude
    pattern by its name or by its path relative to the folder walked."""
    if not include_hidden and (name.startswith(".") or name in SYSTEM_FOLDERS):
        return True
    return any(fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(relative, pattern) for pattern in exclude)


def find_images(roots, exclude=(), include_hidden=False):
    """Image files under ``roots``: folders walked recursively (symbolic links to folders not followed; hidden and
    system files and folders, and those matching ``exclude``, left out unless named directly); files named
    directly are taken whatever their extension.

    Parameters
    ----------
    roots : list of folders or files
    exclude : glob patterns (``fnmatch``, case-sensitive) matched against each name and each path relative to the
        root walked, e.g. ``"Screenshots"``, ``"*.tmp.jpg"``, ``"2019/raw/*"``; a folder that matches is skipped
        whole
    include_hidden : also walk names starting with "." and system folders (``SYSTEM_FOLDERS``)

    Returns
    -------
    Found (its ``unlisted``: folders that could not be listed; what the index holds under them is kept as it is)
    """
    exclude = tuple(exclude)
    files, problems, skipped, unlisted = set(), [], [], []

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
        for folder, folders, names in os.walk(root, onerror=cannot_list):
            here = os.path.relpath(folder, root)
            relative = (lambda name: name) if here == os.curdir else (lambda name: os.path.join(here, name))
            folders[:] = [f for f in folders if not _excluded(f, relative(f), exclude, include_hidden)]
            for name in names:  # os.walk lists everything but folders here: files, links, FIFOs, devices
                if _excluded(name, relative(name), exclude, include_hidden):
                    continue
                extension = os.path.splitext(name)[1].lower()
                path = os.path.abspath(os.path.join(folder, name))
                if extension in UNSUPPORTED_EXTENSIONS:
                    skipped.append((_escaped_name(path) if not _utf8_name(path) else path,
                                    f"{UNSUPPORTED_EXTENSIONS[extension]} images cannot be read by cbir"))
                    continue
                if extension not in IMAGE_EXTENSIONS:
                    continue
                problem = _not_a_file(path)  # UTF-8 is checked on the path as stored (_plan)
                if problem:
                    problems.append((path, problem))
                else:
                    files.add(path)
    return Found(sorted(files), problems, sorted(skipped), unlisted)


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


def learn_collection_codebook(files, settings, progress=None, describer=None, workers=1, tuning=Tuning()):
    """Codebook of a collection from the first ``settings.sample`` readable files of an evenly spread order of its
    files, read in worker processes when there are many, or by ``describer`` (a
    :class:`cbir.index.cluster.DaskDescriber`).

    Each file is decoded once, at the histograms' scale (:func:`sample_colours`). Up to ``tuning.sample_keep_bytes``
    of these decodes are kept (:class:`Decoded`), so the run does not decode those files a second time for their
    histograms (not with a ``describer``: a cluster's workers decode again).

    Files that cannot be read are passed over and more are read in their place, until the sample is full or every
    file was tried: 100,000 empty placeholders beside nine photos still give a codebook of the nine.

    ``progress(done, total)`` is called as sampled files are read.

    Returns
    -------
    (colours, rgb, shares) from :func:`cbir.core.codebook.learn_codebook`, how many images it was learned from,
    ``{path: reason}`` of the files whose worker died on them (a crash, the time limit), so the run does not read
    them a second time, and ``{path: Decoded}`` of the decodes kept
    """
    order = _spread_order(len(files), settings.sample)
    pool = empty_pool()
    readable, tried, lost, kept, kept_bytes = 0, 0, {}, {}, 0
    total = min(settings.sample, len(files))
    while readable < settings.sample and tried < len(order):
        # As many files as the sample still lacks; more each round when many fail (few rounds of worker start-up).
        # A cluster gives one pool per round, not one per file: its rounds take just what is lacking.
        size = settings.sample - readable if describer is not None else max(settings.sample - readable, tried)
        paths = [files[i] for i in order[tried : tried + size]]
        tried += len(paths)
        if describer is not None:
            found, count = describer.pool(paths, settings.min_side)
            pool += found
            readable += count
            if progress:
                progress(min(readable, total), total)
            continue
        if _parallel(workers, len(paths), tuning):
            keep = kept_bytes < tuning.sample_keep_bytes  # decodes travel back only while some may be kept
            results = _sample_in_workers([(p, keep) for p in paths], settings, workers, tuning)
        else:  # one at a time: a file's decode is kept only when it fits
            results = (_sample_job((p, kept_bytes < tuning.sample_keep_bytes), settings.min_side) for p in paths)
        for path, (bins, counts, decoded, error) in zip(paths, results):
            if error is not None:
                if _WORKER_DIED in error or _TIME_LIMIT in error:
                    lost[path] = error.removeprefix(f"{path}: ")
            elif readable < settings.sample:
                pool_counts(pool, bins, counts)
                readable += 1
                if decoded is not None and kept_bytes + decoded.image.nbytes <= tuning.sample_keep_bytes:
                    kept[path] = decoded
                    kept_bytes += decoded.image.nbytes
                if progress:
                    progress(readable, total)
    if not readable:
        raise CbirError(f"none of the {len(files)} image files could be read as an image; nothing to index")
    return learn_codebook(pool, settings.colors, space=settings.space, seed=settings.seed), readable, lost, kept


def _spread_order(n, first):
    """Indices ``0..n-1``: first ``first`` of them evenly spread, then the others in an evenly spreading order."""
    step = max(1, n / first)
    head = list(dict.fromkeys(int(i * step) for i in range(min(first, n))))
    taken = set(head)
    golden = 0.6180339887498949  # the remaining indices by the fractional part of i * golden: well spread
    return head + sorted((i for i in range(n) if i not in taken), key=lambda i: (i * golden) % 1.0)


def sample_colours(data, min_side, name):
    """Decode a file of the codebook's sample once, at the histograms' scale (``min_side``), and count its colours
    for the codebook's pool (:func:`cbir.core.codebook.colour_counts`) in the small picture of :func:`pool_scale`.

    Returns
    -------
    image : (H, W, 3) uint8 at the histograms' scale; size : full-size (width, height); thumb : its structure
    thumbnail (from the same small picture, which costs far less than one from the decode); bins, counts
    """
    image, size = decode_with_size(data, min_side=min_side, name=name)
    small = pool_scale(image)
    return image, size, structure_thumbnail(small), *colour_counts(small)


def pool_scale(image):
    """The small picture the codebook's colours and the structure thumbnail come from: block means
    (:func:`cbir.core.codebook.block_means`) of the decode made for the histogram, the blocks as large as keeps
    the short side at least ``CODEBOOK_MIN_SIDE`` (``image`` itself when it is that small already)."""
    return block_means(image, max(1, min(image.shape[:2]) // CODEBOOK_MIN_SIDE))


def pool_sample(items, min_side, progress=None):
    """Colour pool (:func:`cbir.core.codebook.pool_colours`) of the readable files among ``(path, bytes or None)``
    items (None: read the file), as :func:`sample_colours` counts them, and how many were readable;
    ``progress(done, total)`` after each (a cluster worker's part of the codebook sample)."""
    pool = empty_pool()
    readable = 0
    for done, (path, data) in enumerate(items, 1):
        try:
            pool_counts(pool, *sample_colours(read_bytes(path) if data is None else data, min_side, path)[3:])
            readable += 1
        except CbirError:
            pass
        if progress:
            progress(done, len(items))
    return pool, readable


def describe(path, settings, lut, n_colors, known_sha256=None, data=None):
    """Read, hash, decode, histogram and thumbnail one file (``data``: its bytes, when read already).

    Returns
    -------
    (sha256, None) when the content hash equals ``known_sha256``, else (sha256, (width, height, vector, thumb))
    with the full-size dimensions, the ``float32`` histogram and the ``uint8`` structure thumbnail
    (:func:`cbir.core.duplicates.structure_thumbnail`). Raises CbirError for a file that cannot be indexed.
    ``data`` may also be the file's :class:`Decoded` from the codebook's sample: the same histogram, bit for bit.
    """
    if isinstance(data, Decoded) and not _unchanged(path, data):
        data = None  # changed since the codebook's sample read it: read as it is now
    if isinstance(data, Decoded):
        sha256, (width, height), image, thumb = data.sha256, data.size, data.image, data.thumb
    else:
        if data is None:
            data = read_bytes(path)
        sha256 = hashlib.sha256(data).hexdigest()
        image = None
    if sha256 == known_sha256:
        return sha256, None
    if image is None:
        image, (width, height) = decode_with_size(data, min_side=settings.min_side, name=path)
        # from the picture at the pool's scale, as the codebook's sample makes it: the same thumbnail either way
        thumb = structure_thumbnail(pool_scale(image))
    return sha256, (width, height, histogram(image, lut, n_colors, settings.layout), thumb)


def _unchanged(path, decoded):
    """Whether the file read into ``decoded`` still has the same size, time and inode (what a run trusts to skip a
    file), so what was read then is what it holds now."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return decoded.stat == (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def index_paths(store, roots: list[str], overrides: dict[str, Any] | None = None, *, rebuild: bool = False,
                progress: Callable[[int, int], None] | None = None,
                codebook_progress: Callable[[int, int], None] | None = None, workers: int = 1,
                cluster: str | None = None, ship_bytes: bool = False, tuning: Tuning = Tuning(),
                exclude: tuple[str, ...] = (), include_hidden: bool = False) -> IndexReport:
    """Bring the index in ``store`` in step with the image files under ``roots``.

    Parameters
    ----------
    store : cbir.store.Store
    roots : list of folders or files
    overrides : dict of Settings fields to change (None values are ignored)
    rebuild : relearn the codebook and recompute every histogram: of the files under ``roots`` and of every other
        indexed file, wherever it is (refused, changing nothing, when some of those are missing on disk)
    progress : callable(done, total) or None, called as files are processed
    codebook_progress : callable(done, total) or None, called as the codebook's sample is read
    workers : processes that read and describe files (1: all in this process); the result is the same
    cluster : read and describe the files on this Dask cluster instead of ``workers``: a scheduler's address
        (``tcp://host:8786``) or ``local:N`` (N worker processes here); the result is the same. Needs Dask
        (``pip install 'cbir[cluster]'``), imported only then
    ship_bytes : with ``cluster``, read the files here and send their bytes (the workers need not see them)
    tuning : batch size, worker chunks, and the fewest files worth starting workers for
    exclude, include_hidden : what :func:`find_images` leaves out

    Images left without a histogram by an interrupted rebuild are recomputed by the next run, wherever they are.

    Returns
    -------
    IndexReport
    """
    started = time.perf_counter()
    report = IndexReport()
    found = find_images(roots, exclude, include_hidden)  # before the database is touched: a bad path changes nothing
    report.skipped = found.skipped
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
        elsewhere = _elsewhere(store, roots, found.files) if has_codebook and rebuild else []
        files = sorted(found.files + elsewhere)
        if workers > 1 and _parallel(workers, _fewest_new(store, files, fresh=rebuild or not has_codebook), tuning):
            _start_server()  # it boots on another core while this one learns the codebook or lists the work
        target, rebuilding, finished, recomputed = store, rebuild and has_codebook, False, frozenset()
        try:
            if not has_codebook or rebuild:
                if not files:
                    raise CbirError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under "
                                    f"{', '.join(map(str, roots))}")
                (colours, rgb, shares), learned_from, lost, kept = learn_collection_codebook(
                    files, settings, codebook_progress, describer, workers, tuning)
                hexes = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in rgb]
                learned = {"settings": settings.to_dict(), "lut_bits": LUT_BITS, "codebook_images": learned_from}
                if rebuilding:  # written beside the index, which stays as it is until the rebuild is whole
                    recomputed = frozenset(stored for stored, _, _ in store.image_files())
                    report.removed = _gone(store, roots, files)
                    target = store.begin_rebuild(colours, hexes, shares, learned)
                else:
                    store.replace_codebook(colours, hexes, shares, learned)
                report.codebook_learned, report.codebook_images = True, learned_from
            else:
                lost, kept = {}, {}
                if settings.to_dict() != meta.get("settings"):  # ranking settings changed: no new histograms needed
                    store.set_meta({"settings": settings.to_dict()})
            _update(target, roots, dataclasses.replace(found, files=files), lost, settings, target.codebook(), report,
                    progress, workers, tuning, describer, recomputed, kept)
            del kept  # the sample's decodes: memory again
            if rebuilding and not report.interrupted:
                store.finish_rebuild()
                finished = True
        except DatabaseError as error:
            raise _stopped(store, rebuilding, error) from None
        finally:
            if rebuilding and not finished:  # stopped: Ctrl-C, an error, a full disk, a lost cluster
                store.discard_rebuild()
                report.old_index_kept = True
        report.codebook_outgrown = _outgrown(store, settings)
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


def _elsewhere(store, roots, files):
    """The indexed files outside ``roots`` (a rebuild recomputes them too), or CbirError naming those missing on
    disk: a rebuild cannot recompute them and would lose them."""
    abs_roots = [os.path.abspath(r) for r in roots]
    listed = set(files)
    outside = [store.disk_path(p) for p, _, _ in store.image_files()  # text paths only: see _gone
               if not _under(os.path.abspath(store.disk_path(p)), abs_roots)]
    outside = [os.path.abspath(p) for p in outside if os.path.abspath(p) not in listed]
    missing = [p for p in outside if not os.path.isfile(p)]
    if missing:
        raise CbirError(f"{len(missing)} indexed files outside {', '.join(roots)} are missing on disk (first: "
                        f"{missing[0]}); a rebuild cannot recompute them", remedy=Remedy.PRUNE)
    return outside


def _outgrown(store, settings):
    """``(learned from, images now)`` when the index holds at least twice the images its codebook was learned
    from, and a rebuild would learn it from more (``settings.sample`` allows it); else None."""
    learned = store.meta().get("codebook_images")
    images = store.counts(["images"])["images"]
    if isinstance(learned, int) and learned < settings.sample and images >= 2 * learned:
        return learned, images
    return None


def _gone(store, roots, files):
    """How many indexed images under ``roots`` a rebuild will not find again (gone from disk)."""
    abs_roots = [os.path.abspath(r) for r in roots]
    listed = {store.stored_path(f) for f in files}
    return sum(1 for p, _, _ in store.image_files()  # text paths only: a rebuild mends a damaged row
               if p not in listed and _under(os.path.abspath(store.disk_path(p)), abs_roots))


def _update(store, roots, found, lost, settings, codebook, report, progress, workers, tuning, describer=None,
            recomputed=frozenset(), kept=None):
    """Describe what :func:`_plan` finds to do and write it in batches; ``recomputed``: stored paths a rebuild
    makes again (counted as updated); ``kept``: ``{path: Decoded}`` from the codebook's sample (:func:`describe` uses
    one while its file is unchanged)."""
    todo, new_paths, pending = _plan(store, roots, found, lost, report)
    if not todo:
        return
    parallel = _parallel(workers, len(todo), tuning)
    if parallel:
        _start_server()  # if not started yet: it boots on another core while this one builds the lookup table
    # A pending image (no histogram under this codebook) is recomputed even when its content is unchanged.
    jobs = [(path, entry[3] if entry and stored not in pending else None) for path, stored, _, entry in todo]
    if kept:
        jobs = [job + (kept[job[0]],) if job[0] in kept else job for job in jobs]
        kept.clear()  # the jobs hold what is used
    if describer is not None:
        results = describer.describe(jobs, settings, codebook)
    elif parallel:
        results = _in_workers("describe", jobs, settings, lookup_table(codebook, settings.space), len(codebook),
                              workers, tuning)
    else:
        results = _describe_here(jobs, settings, lookup_table(codebook, settings.space), len(codebook))
    batches = _Batches(store, report, tuning.batch_size, new_paths, recomputed)
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
        raise CbirError(f"{_WORKERS_FAILING}; the images finished so far are kept", remedy=Remedy.ONE_WORKER) from None
    batches.write()


def _plan(store, roots, found, lost, report):
    """Compare the files found (``find_images``) with the index: forget what is gone from the indexed folders
    (never what is under a folder that could not be listed), record the files that cannot even be read (and those
    ``lost``: a worker died on them while the codebook was learned), count the unchanged ones. Returns the files to
    read, as ``(path, stored path, stat, known row or None)`` (with every pending image: indexed, but without a
    histogram under this codebook, wherever it is), the stored paths that have no row yet, and the pending stored
    paths. Unchanged files indexed before cbir kept structure thumbnails are among them too (under the roots only:
    a run reads what it is asked to), described in full once and counted as updated."""
    known = store.known_images()
    without_structure = store.images_without_structure()
    known_failures = store.known_failures()
    pending = store.pending_images()
    abs_roots = [os.path.abspath(r) for r in roots]
    problems = list(found.problems)
    files, stored_paths = [], []
    for path in found.files:
        stored = store.stored_path(path)
        if _utf8_name(stored):
            files.append(path)
            stored_paths.append(stored)
        else:  # undecodable bytes: SQLite text and JSON cannot hold the path as the database would keep it
            problems.append((_escaped_name(path), _NOT_UTF8))
    listed = set(stored_paths)
    for stored in sorted(pending - listed):
        path = os.path.abspath(store.disk_path(stored))
        if not _under(path, abs_roots) and os.path.isfile(path):  # under the roots and not found: removed below
            files.append(path)
            stored_paths.append(stored)
    pending = pending | {stored for stored, entry in known.items() if entry[0] in without_structure}
    seen = set(stored_paths) | {store.stored_path(p) for p, _ in problems}
    removed = [p for p in list(known) + list(known_failures)
               if p not in seen and _under(os.path.abspath(store.disk_path(p)), abs_roots)
               and not _under(os.path.abspath(store.disk_path(p)), found.unlisted)]
    report.removed += sum(p in known for p in removed)

    failures = [(store.stored_path(p), reason, None, None) for p, reason in problems]
    report.failures += problems
    todo = []
    for path, stored in zip(files, stored_paths):
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
        if entry and stored not in pending and entry[1] == stat.st_size and entry[2] == stat.st_mtime_ns:
            report.unchanged += 1
        else:
            todo.append((path, stored, stat, entry))
    store.write_batch(failures=failures, removed=removed)
    new_paths = {stored for _, stored, _, entry in todo if entry is None and stored not in known_failures}
    return todo, new_paths, pending


class _Batches:
    """The results of described files, counted in the report and written ``batch_size`` at a time, one
    transaction each (so an interrupted run keeps every finished batch)."""

    def __init__(self, store, report, batch_size, new_paths, recomputed=frozenset()):
        self.store, self.report, self.batch_size, self.new_paths = store, report, batch_size, new_paths
        self.recomputed = recomputed  # stored paths a rebuild makes again: updated, not added
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
            if entry or stored in self.recomputed:
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


_IDLE_BREAKS = 3  # pools in a row broken before any job finished: the workers cannot work (memory, limits)


_WORKERS_FAILING = "worker processes keep dying (out of memory, or killed) before they reach any file"


class _WorkersFailing(Exception):
    """Worker processes die without having started on a file: nothing to blame on a file."""


_WORKER_DIED = "the process reading it died"
_TIME_LIMIT = "the time limit for one file"


def _sample_in_workers(jobs, settings, workers, tuning):
    """:func:`_in_workers` for the codebook's sample, one result at a time as they come."""
    try:
        yield from _in_workers("sample", jobs, settings, None, 0, workers, tuning)
    except _WorkersFailing:
        raise CbirError(f"{_WORKERS_FAILING} while the codebook's sample was read; the index is unchanged",
                        remedy=Remedy.ONE_WORKER) from None


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
    idle_breaks = 0  # pools in a row that broke with no job in flight and none finished
    while pending:
        finished_before = state[:].count(2)
        for index in [i for i in pending if state[i] == 1]:  # in flight when a worker died
            results[index] = _alone(kind, index, jobs[index], setup, context)
        todo = [i for i in pending if i not in results]
        if todo:
            with concurrent.futures.ProcessPoolExecutor(min(workers, len(todo)), mp_context=context,
                                                        initializer=_init_worker, initargs=setup) as pool:
                futures = []
                try:
                    for chunk in _chunks(todo, tuning.worker_chunk):
                        futures.append(pool.submit(_work_in_worker, kind, [(i, *jobs[i]) for i in chunk]))
                except BrokenProcessPool:
                    pass  # the workers died while the chunks were handed out: the break is handled below
                except OSError:  # a worker started while the pool broke, through pipes its manager just closed
                    if not _broke(pool):
                        raise
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
                    _kill_what_a_broken_pool_left(pool)
                    pool.shutdown(wait=True, cancel_futures=True)
                for future in futures:  # after a break: the chunks that finished are kept
                    if future.done() and not future.cancelled() and future.exception() is None:
                        results.update(future.result())
            if any(i not in results for i in pending) and not any(state[i] == 1 for i in pending):
                # The pool broke between two jobs: one kill (the OOM killer, a stray kill) lands there as often as
                # on a file. Only pools that keep breaking before any job finishes mean the workers cannot work.
                idle_breaks = 0 if state[:].count(2) > finished_before else idle_breaks + 1
                if idle_breaks >= _IDLE_BREAKS:
                    raise _WorkersFailing()
        while pending and pending[0] in results:
            yield results.pop(pending.popleft())


def _broke(pool):
    """Whether a worker of ``pool`` died (CPython marks the pool broken before it ends the others)."""
    return bool(getattr(pool, "_broken", False))


def _kill_what_a_broken_pool_left(pool):
    """Kill the workers still alive in a pool that broke. CPython 3.11 may start a worker (a submit racing the
    manager thread that declares the pool broken) after it has ended the others: nothing then ends that one, and
    shutdown waits for it forever (seen: a `cbir index` hung for hours after a decoder crash killed a worker)."""
    if not _broke(pool):
        return
    for process in dict(getattr(pool, "_processes", None) or {}).values():  # a copy: the manager thread edits it
        with contextlib.suppress(OSError, ValueError):
            process.kill()


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
    return (None,) * (_RESULT_SIZES[kind] - 1) + (f"{job[0]}: {why}",)


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


def _sample_job(job, min_side):
    """The colour counts of one ``(path, keep)`` of the codebook sample (:func:`sample_colours`): ``(bins, counts,
    Decoded or None, error message)``, the file's :class:`Decoded` when ``keep``."""
    path, keep = job
    try:
        stat = os.stat(path)  # before reading: a file changed since is not taken from its Decoded
        data = read_bytes(path)
        image, size, thumb, bins, counts = sample_colours(data, min_side, path)
        decoded = None
        if keep:
            decoded = Decoded(hashlib.sha256(data).hexdigest(), size, image, thumb,
                              (stat.st_size, stat.st_mtime_ns, stat.st_ino))
        return bins, counts, decoded, None
    except CbirError as error:
        return None, None, None, str(error)
    except OSError as error:
        return None, None, None, f"{path}: cannot read ({_os_reason(error)})"
    except MemoryError:
        return None, None, None, f"{path}: not enough memory to describe it"
    except Exception as error:  # noqa: BLE001 - see _describe_job
        return None, None, None, f"{path}: could not be described ({type(error).__name__}: {error})"


def _sample_for_run(job):
    """:func:`_sample_job` in a worker."""
    return _sample_job(job, _worker_context[0].min_side)


_JOBS = {"describe": _describe_for_run, "sample": _sample_for_run}
_RESULT_SIZES = {"describe": 3, "sample": 4}  # values in a job's result, the error message last


def _portable(results):
    """``results`` with their vectors as little-endian float32 bytes (what the database stores, and sent between
    processes much faster than arrays)."""
    return [(sha256, described and (*described[:2], np.asarray(described[2], "<f4").tobytes(),
                                    np.asarray(described[3], np.uint8).tobytes()), error)
            for sha256, described, error in results]
