"""The vector index: candidates for a very large index's queries, in a file beside its database,
``<database>-vector-index``.

Above :attr:`Tuning.vector_index_bytes` an index keeps no transformed matrix in memory (1,280 float32 per image
in the default layout: 51 GB for ten million photos). Instead each query takes candidates from a graph over
projections of the transformed vectors (:mod:`cbir.core.ann`) and re-scores them exactly from the histograms in
the database, so the distances reported are exact.

Like the search cache, the file is derived data valid for one state of the database: its header records the
database's id and change generation (:meth:`cbir.store.Store.change_state`) and the transform it was made for
(codebook and ranking settings), and a file made for any other state or transform is never used: a search then
reads every histogram (exact, and slow at this size) until ``cbir index`` brings the file up to date. It is
written aside and renamed into place, so a crash leaves the old file or none. Bringing it up to date reads only
the histograms that changed since (the database logs them, :meth:`cbir.store.Store.prepare_change_log`): added
images are added to the graph, removed or replaced ones removed. It is made again from scratch when the codebook
or the ranking settings change, when the log no longer reaches back to it, or when the collection has changed by
as many images as it held when its projection was fitted (so the projection keeps fitting the collection).

Layout: the graph (usearch's format, viewed in place), zero padding to 8 bytes, the image ids (rows x int64,
ascending), the projection's mean (D x float32) and axes (D x d x float32), a JSON header, then the header's
length, the graph's length (8-byte little-endian each) and a magic line. All little-endian.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import ann
from ..errors import BusyError
from ..files import open_regular, replacing_by_name
from ..store import Store
from .histograms import checked_codebook, search_setup
from .tuning import Tuning

MAGIC = b"cbir vector index 1\n"
FORMAT = 1
SAMPLE = 100_000  # histograms the projection is fitted on
ADD_ROWS = 1 << 14  # histograms projected and added to the graph at a time by a full build

Progress = Callable[[int, int], None]


def path_of(store: Store) -> str:
    """Where the vector index of ``store``'s database lives."""
    return store.path + "-vector-index"


@dataclass
class VectorIndex:
    """An opened vector index file: header, image ids, projection and graph (viewing the file's memory)."""

    header: dict[str, Any]
    ids: np.ndarray
    mean: np.ndarray
    axes: np.ndarray
    graph: ann.Graph
    _mapping: mmap.mmap
    _graph_bytes: int

    def editable_graph(self) -> ann.Graph:
        """A copy of the graph in memory, to change."""
        return ann.Graph.load(memoryview(self._mapping)[: self._graph_bytes])


def _mapped(store: Store) -> mmap.mmap | None:
    """The file mapped read-only, or None (none there, unreadable, empty, or not a regular file: a FIFO planted
    under the name is no vector index, and must not hang a query)."""
    try:
        fd = open_regular(path_of(store))
    except OSError:
        return None
    try:
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # empty (mmap of 0 bytes)
        return None
    finally:
        os.close(fd)  # the mapping keeps its own reference


def _open(store: Store) -> VectorIndex | None:
    """The file as it is, whatever state it describes, or None (none there, not what its trailer says, or no
    usearch to read it)."""
    mapping = _mapped(store) if ann.available() else None
    if mapping is None:
        return None
    try:
        return _parse(mapping)
    except (ValueError, KeyError, TypeError, RuntimeError):  # a damaged file: the histograms are the truth
        mapping.close()
        return None


def _layout(mapping: mmap.mmap) -> tuple[dict[str, Any], int, np.ndarray]:
    """The trailer and header of the file, checked against its length: ``(header, graph_bytes, ends)``, ``ends`` the
    offsets where the ids, mean and axes end. Reads a few hundred bytes, not the graph."""
    size = len(mapping)
    tail = len(MAGIC) + 16
    if size < tail or mapping[size - len(MAGIC) :] != MAGIC:
        raise ValueError("not a cbir vector index")
    header_bytes = int.from_bytes(mapping[size - tail : size - tail + 8], "little")
    graph_bytes = int.from_bytes(mapping[size - tail + 8 : size - tail + 16], "little")
    if not 0 < header_bytes < 1 << 20 or graph_bytes > size:
        raise ValueError("bad vector index trailer")
    header = json.loads(mapping[size - tail - header_bytes : size - tail])
    rows, dimension, projected = header["rows"], header["dimension"], header["projected"]
    if not (header.get("format") == FORMAT and all(isinstance(v, int) and v >= 0 for v in (rows, dimension,
                                                                                           projected))):
        raise ValueError("bad vector index header")
    start = -(-graph_bytes // 8) * 8
    ends = np.cumsum([start, 8 * rows, 4 * dimension, 4 * dimension * projected])
    if ends[-1] + header_bytes + tail != size:
        raise ValueError("the vector index is not as long as its header says")
    return header, graph_bytes, ends


def _parse(mapping: mmap.mmap) -> VectorIndex:
    header, graph_bytes, ends = _layout(mapping)
    rows, dimension, projected = header["rows"], header["dimension"], header["projected"]
    ids = np.frombuffer(mapping, "<i8", rows, ends[0])
    mean = np.frombuffer(mapping, "<f4", dimension, ends[1])
    axes = np.frombuffer(mapping, "<f4", dimension * projected, ends[2]).reshape(dimension, projected)
    if rows > 1 and not (np.diff(ids) > 0).all():
        raise ValueError("vector index ids out of order")
    graph = ann.Graph.view(memoryview(mapping)[:graph_bytes])
    if len(graph) != rows or graph.dimension != projected:
        raise ValueError("the vector index graph does not hold what its header says")
    return VectorIndex(header, ids, mean, axes, graph, mapping, graph_bytes)


def header(store: Store) -> dict[str, Any] | None:
    """The header of the file (a dict with ``rows``, ``key``, ``database_id``, ``generation``...) whatever state it
    describes, or None (none there, or not a vector index). Reads the trailer only: viewing the graph, as a search
    does, takes over a second at ten million images."""
    mapping = _mapped(store)
    if mapping is None:
        return None
    with mapping:
        try:
            return _layout(mapping)[0]
        except (ValueError, KeyError, TypeError):  # not what its trailer says
            return None


def _wanted(store: Store) -> tuple[str, int] | None:
    """The transform key and histogram dimension a vector index of ``store`` must be made for, or None (nothing
    indexed yet). Call inside a snapshot."""
    if store.codebook() is None or "settings" not in store.meta():
        return None
    _, _, dimension, search = search_setup(store, None)
    return search.transform_key(), dimension


def is_current(store: Store, found: dict[str, Any] | None) -> bool:
    """Whether a vector index with header ``found`` describes the database as it is now, for its ranking settings,
    and usearch is there to read it (what :func:`read` requires before a search uses it). Call inside a snapshot."""
    wanted = _wanted(store) if found is not None and ann.available() else None
    return wanted is not None and _current(store, found, *wanted)


def read(store: Store, key: str, dimension: int) -> VectorIndex | None:
    """The vector index made with ``key`` for ``dimension`` that describes the database as it is now (call inside
    the snapshot the search reads in), or None."""
    found = _open(store)
    if found is None:
        return None
    if _current(store, found.header, key, dimension):
        return found
    return None


def _current(store: Store, found: dict[str, Any], key: str, dimension: int) -> bool:
    state = store.change_state()
    return (state is not None and (found.get("database_id"), found.get("generation")) == state
            and found.get("key") == key and found.get("dimension") == dimension)


def write(store: Store, header: dict[str, Any], ids: np.ndarray, mean: np.ndarray, axes: np.ndarray,
          graph: ann.Graph) -> None:
    """Write the file aside and rename it into place (a crash leaves the old file or none; the file aside is made
    as :mod:`cbir.files` makes them: a link planted there is never followed). Raises WriteError."""
    ids = np.ascontiguousarray(ids, "<i8")
    header = {**header, "format": FORMAT, "rows": len(ids), "dimension": int(mean.shape[0]),
              "projected": int(axes.shape[1])}
    with replacing_by_name(path_of(store)) as partial:
        graph.save(partial)
        graph_bytes = os.path.getsize(partial)
        encoded = json.dumps(header).encode()
        with open(partial, "ab") as handle:
            handle.write(b"\0" * (-graph_bytes % 8))
            for array in (ids, np.ascontiguousarray(mean, "<f4"), np.ascontiguousarray(axes, "<f4")):
                handle.write(memoryview(array).cast("B"))
            handle.write(encoded + len(encoded).to_bytes(8, "little") + graph_bytes.to_bytes(8, "little") + MAGIC)
            handle.flush()
            os.fsync(handle.fileno())


def differences(store: Store) -> int | None:
    """Images the current vector index holds that the database does not, and the other way round (what a check
    counts; 0: it holds exactly the searchable images), or None when there is no current vector index."""
    with store.snapshot():
        wanted = _wanted(store)
        found = None if wanted is None else read(store, *wanted)
        if found is None:
            return None
        return len(np.setxor1d(found.ids, store.searchable_ids()))


def drop(store: Store) -> None:
    """Remove the file, if any, and stop logging changes for it (a smaller index needs none)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path_of(store))
    if store.change_log() is not None:
        store.drop_change_log()


def refresh(store: Store, tuning: Tuning, progress: Progress | None = None, threads: int = 1) -> bool:
    """Bring the vector index of a very large index (:meth:`Tuning.wants_vector_index`) up to date, from the
    histograms that changed since it was made, or make it; remove it from an index that no longer needs one.
    Returns whether it wrote one.

    progress : callable(done, total) or None, called as histograms are added
    threads : threads adding to the graph
    Takes the writer lock; when another index run holds it, does nothing (that run refreshes it at its end).
    Without usearch (the ``cbir[scale]`` extra) it does nothing: searches then read every histogram.
    """
    if not ann.available():
        return False
    try:
        store.lock_for_writing()
    except BusyError:
        return False
    try:
        with store.snapshot():
            if store.codebook() is None or "settings" not in store.meta():
                return False
            _, _, dimension = checked_codebook(store, None)  # A is factorised only for an index that wants one
            count = store.counts(["images"])["images"]
        if not tuning.wants_vector_index(count, dimension):
            drop(store)
            return False
        store.prepare_change_tracking()  # the generation, and the log of what changed, before anything is read
        store.prepare_change_log()
        with store.snapshot():
            state, log = store.change_state(), store.change_log()
            _, _, dimension, search = search_setup(store, None)
            key = search.transform_key()
            old = _open(store)
            if old is not None and _current(store, old.header, key, dimension):
                store.prune_change_log(old.header["log_seq"])
                return False
            made = _update(store, old, search, key, log, progress, threads)
            if made is None:
                made = _build(store, search, dimension, progress, threads)
        ids, mean, axes, graph, fitted, drift = made
        write(store, {"key": key, "database_id": state[0], "generation": state[1], "log_seq": log[1],
                      "fitted_rows": fitted, "changed_since_fit": drift}, ids, mean, axes, graph)
        store.prune_change_log(log[1])
        return True
    finally:
        store.unlock()


def _update(store, old, search, key, log, progress, threads):
    """The graph of ``old`` brought up to date from the changes logged since it was made, or None when it must be
    made again (another transform or database, the log pruned past it, or the collection changed too much)."""
    if old is None:
        return None
    found = old.header
    usable = (found.get("key") == key and found.get("database_id") == store.change_state()[0]
              and isinstance(found.get("log_seq"), int) and log[0] <= found["log_seq"] <= log[1])
    if not usable:
        return None
    changed = store.changed_images(found["log_seq"])
    drift = found.get("changed_since_fit", 0) + len(changed)
    if drift >= max(found.get("fitted_rows", 0), 1):
        return None  # as many changes as images the projection was fitted on: fit it again
    present = store.searchable_ids(changed) if len(changed) else changed
    graph = old.editable_graph()
    graph.remove(np.intersect1d(old.ids, changed))
    _add(store, graph, present, search, old.mean, old.axes, progress, threads)
    ids = np.union1d(np.setdiff1d(old.ids, changed), present)
    return ids, np.array(old.mean), np.array(old.axes), graph, found.get("fitted_rows", 0), drift


def _build(store, search, dimension, progress, threads):
    """A new projection fitted on a sample, and a new graph of every histogram (one scan in id order)."""
    _, sample = store.sample_histograms(SAMPLE, dimension)
    mean, axes = ann.fit_projection(search.transform(sample))
    graph = ann.Graph.new(axes.shape[1])
    total, ids = store.counts(["images"])["images"], []
    for chunk_ids, chunk in store.histogram_chunks(dimension, chunk=ADD_ROWS):
        graph.add(chunk_ids, ann.project(search.transform(chunk), mean, axes), threads)
        ids.append(chunk_ids)
        if progress:
            progress(min(sum(map(len, ids)), total), total)
    ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    return ids, mean, axes, graph, len(ids), 0


def _add(store, graph, ids, search, mean, axes, progress, threads):
    """Project the histograms of ``ids`` (read by id, a few thousand at a time) and add them to ``graph``."""
    done = 0
    for part in np.array_split(ids, len(ids) // 4096 + 1):
        if len(part):
            graph.add(part, ann.project(search.transform(store.histograms_of(part, len(mean))), mean, axes),
                      threads)
            done += len(part)
            if progress:
                progress(done, len(ids))
