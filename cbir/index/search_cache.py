"""The search cache: a large index's transformed matrix in a file beside its database, ``<database>-search-cache``.

Opening a large index reads the matrix from it instead of transforming every histogram (the same values, 2-4x
faster at a million images). The file is derived data, valid for one state of the database: its header records
the database's id and change generation (:meth:`cbir.store.Store.change_state`) and the transform it was made
with, and a file made for any other state or transform is ignored. So outdating it costs nothing, and it is
replaced atomically (written aside, then renamed). A damaged file is ignored too: the histograms are the truth.

Layout: a magic line, an 8-byte little-endian header length, a JSON header (key, rows, dimension, database_id,
generation), the image ids (rows x int64) and the transformed rows (rows x dimension x float32), all little-endian.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import numpy as np

from ..errors import BusyError, DatabaseError, WriteError
from ..files import open_regular, replacing
from ..store import Store
from .histograms import StoredHistograms, checked_codebook, search_setup
from .tuning import Tuning

MAGIC = b"cbir search cache 1\n"
COPY_ROWS = 1 << 13  # rows per read or write of the file: bounded buffers

Progress = Callable[[int, int], None]


def path_of(store: Store) -> str:
    """Where the search cache of ``store``'s database lives."""
    return store.path + "-search-cache"


def header(store: Store, key: str | None = None, dimension: int | None = None) -> dict[str, Any] | None:
    """The header of the current cache file (a dict with ``rows``, ``dimension``, ``key``), or None when there is
    none that describes the database as it is now (and, if given, made with ``key`` for ``dimension``)."""
    try:
        with os.fdopen(open_regular(path_of(store)), "rb") as handle:  # a FIFO there is no cache
            return _current_header(store, handle, key, dimension)
    except (OSError, ValueError):
        return None


def _current_header(store: Store, handle: IO[bytes], key: str | None, dimension: int | None) -> dict | None:
    """The header at the start of ``handle`` if it is current (and for ``key`` and ``dimension`` when given),
    else None. ValueError when it is not a cache file's header."""
    if handle.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a cbir search cache")
    length = int.from_bytes(handle.read(8), "little")
    found = json.loads(handle.read(length)) if 0 < length < 1 << 16 else None
    if not (isinstance(found, dict) and isinstance(found.get("rows"), int) and found["rows"] >= 0
            and isinstance(found.get("dimension"), int) and found["dimension"] > 0):
        raise ValueError("bad search cache header")
    state = store.change_state()
    current = state is not None and (found.get("database_id"), found.get("generation")) == state
    wanted = key is None or (found.get("key") == key and found["dimension"] == dimension)
    return found if current and wanted else None


def read(store: Store, key: str, dimension: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached transformed matrix made with ``key``: ``(ids (N,) int64, vectors (N, dimension) float32)``, or
    None when there is none for the database as it is now (never made, made before a change, for other settings,
    or not what its header says: the caller then computes the matrix from the histograms). Call inside
    :meth:`Store.snapshot` together with the reads it must agree with."""
    try:
        with os.fdopen(open_regular(path_of(store)), "rb") as handle:  # a FIFO there is no cache
            found = _current_header(store, handle, key, dimension)
            if found is None:
                return None
            rows = found["rows"]
            if os.fstat(handle.fileno()).st_size != handle.tell() + rows * (8 + 4 * dimension):
                return None
            ids, vectors = np.empty(rows, "<i8"), np.empty((rows, dimension), "<f4")
            handle.readinto(memoryview(ids).cast("B"))
            for start in range(0, rows, COPY_ROWS):
                handle.readinto(memoryview(vectors[start : start + COPY_ROWS]).cast("B"))
    except (OSError, ValueError):
        return None
    if rows > 1 and not (np.diff(ids) > 0).all():
        return None
    return ids.astype(np.int64, copy=False), vectors.astype(np.float32, copy=False)


def write(store: Store, key: str, ids: np.ndarray, vectors: np.ndarray, state: tuple[str, int],
          progress: Callable[[int], None] | None = None) -> None:
    """Store the transformed matrix ``vectors (N, D) float32`` of the images ``ids (N,) int64`` (ascending), made
    with ``key`` from the database at ``state`` (:meth:`Store.change_state` in the snapshot the histograms were
    read in). Written aside and renamed into place; ``progress(rows written)`` after each block of rows. A state
    that is gone by then makes a file that is never used."""
    ids, vectors = np.ascontiguousarray(ids, "<i8"), np.ascontiguousarray(vectors, "<f4")
    encoded = json.dumps({"key": key, "rows": len(ids), "dimension": int(vectors.shape[1]),
                          "database_id": state[0], "generation": state[1]}).encode()
    target = path_of(store)
    try:
        with replacing(target) as handle:  # cbir.files: a temporary no one can plant a link at, renamed when whole
            handle.write(MAGIC + len(encoded).to_bytes(8, "little") + encoded)
            handle.write(memoryview(ids).cast("B"))
            for start in range(0, len(ids), COPY_ROWS):
                handle.write(memoryview(vectors[start : start + COPY_ROWS]).cast("B"))
                if progress:
                    progress(min(start + COPY_ROWS, len(ids)))
    except WriteError as error:
        raise DatabaseError(f"cannot write the search cache: {error}") from None


def drop(store: Store) -> None:
    """Remove the cache file, if any (a small index needs none)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path_of(store))


def refresh(store: Store, tuning: Tuning, progress: Progress | None = None) -> bool:
    """Store the transformed matrix of a large index (:meth:`Tuning.wants_search_cache`), unless it is current
    already. Returns whether it wrote one.

    progress : callable(done, total) or None, called as rows are transformed and then written (total: twice the
        number of images)
    Takes the writer lock; when another index run holds it, does nothing (that run refreshes the cache at its end).
    The file records the state of the database its histograms were read in: if anything changed since, it is
    never used. A cache that a small index no longer needs is removed.
    """
    try:
        store.lock_for_writing()
    except BusyError:
        return False
    try:
        with store.snapshot():
            if store.codebook() is None or "settings" not in store.meta():
                return False
            _, _, dimension = checked_codebook(store, None)  # A is factorised only for an index that wants a cache
            count = store.counts(["images"])["images"]
            if count == 0 or not tuning.wants_search_cache(count, dimension):
                drop(store)
                return False  # nothing to search, or quick to transform at opening
            key = search_setup(store, None)[3].transform_key()
            if header(store, key, dimension) is not None:
                return False  # current already
        store.prepare_change_tracking()  # triggers in place before the histograms are read
        with store.snapshot():  # everything again, in the snapshot the cache will describe
            state = store.change_state()
            _, _, dimension, search = search_setup(store, None)
            key, count = search.transform_key(), store.counts(["images"])["images"]
            histograms = StoredHistograms(store, dimension)
            search.transform_chunks(_counted(histograms.stream(), progress, 2 * count), count)
        written = (lambda rows: progress(count + rows, 2 * count)) if progress else None
        write(store, key, histograms.ids, search.transformed, state, progress=written)
        return True
    finally:
        store.unlock()


def _counted(chunks: Iterable[np.ndarray], progress: Progress | None, total: int) -> Iterator[np.ndarray]:
    """The chunks, calling ``progress(rows so far, total)`` after each."""
    done = 0
    for chunk in chunks:
        yield chunk
        done += len(chunk)
        if progress:
            progress(done, total)


def differences(store: Store) -> int | None:
    """Compare the cache with the histograms it is made from, transforming them again chunk by chunk (what a
    check does). Returns None when there is no current cache, else the number of rows that differ (0: the cache is
    exact), counting a row of one side that the other lacks as a difference."""
    with store.snapshot():
        if store.codebook() is None or "settings" not in store.meta():
            return None
        _, _, dimension, search = search_setup(store, None)
        cached = read(store, search.transform_key(), dimension)
        if cached is None:
            return None
        cached_ids, cached_rows = cached
        count, start = 0, 0
        for ids, chunk in store.histogram_chunks(dimension):
            stop = min(start + len(ids), len(cached_ids))
            same = (cached_ids[start:stop] == ids[: stop - start]) & (
                cached_rows[start:stop] == search.transform(chunk)[: stop - start]).all(axis=1)
            count += int((~same).sum()) + len(ids) - (stop - start)
            start += len(ids)
        return count + max(0, len(cached_ids) - start)
