"""The Python API: open an index, add paths, search by path or by image array.

    from cbir import Index
    with Index.open("photos.db", create=True) as index:
        index.add(["~/Pictures"])
        for result in index.search("query.jpg", n=5):
            print(result.rank, result.distance, result.path)
"""

import os
from dataclasses import dataclass

import numpy as np

from .colour import srgb_to_lab
from .decode import read_image
from .errors import BusyError, DatabaseError
from .features import LUT_BITS, block_weights, histogram, lookup_table, n_blocks
from .indexer import index_paths
from .qfd import similarity_matrix
from .quantize import check_image
from .search import QuadraticFormSearch, row_chunks
from .settings import Settings
from .storage import Store


@dataclass(frozen=True)
class Result:
    """One ranked image: rank (1 = best), path, quadratic-form distance (0 = same histogram), database id."""

    rank: int
    path: str
    distance: float
    image_id: int


class StoredHistograms:
    """The indexed histograms as the rows of a matrix that stays in the database: ``histograms[rows]`` reads those
    rows, ``(len(rows), D) float32``. The search re-scores its few candidates per query from it, so a loaded index
    holds the transformed matrix only (memory, and opening time), not the raw one too.

    :meth:`stream` reads every row once, chunk by chunk, and learns the image id of each row on the way.
    """

    def __init__(self, store, dimension):
        self.store, self.dimension = store, dimension
        self.ids = np.zeros(0, np.int64)

    def stream(self):
        ids = []
        for chunk_ids, chunk in self.store.histogram_chunks(self.dimension):
            ids.append(chunk_ids)
            yield chunk
        self.ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)

    def __len__(self):
        return len(self.ids)

    @property
    def shape(self):
        return len(self.ids), self.dimension

    def __getitem__(self, rows):
        return self.store.histograms_of(np.atleast_1d(self.ids[rows]), self.dimension)


@dataclass(frozen=True)
class Engine:
    """What searching needs, loaded from the database once: settings, codebook, lookup table, the image id of each
    row of the search (``ids (N,) int64``), the search back-end, where and when (the database's ``data_version``)
    it was loaded from, and whether its transformed matrix came from the database's search cache."""

    settings: Settings
    codebook: np.ndarray
    lut: np.ndarray
    ids: np.ndarray
    backend: QuadraticFormSearch
    store: Store
    version: int
    cached: bool = False

    def paths(self, rows=slice(None)):
        """Stored paths of some rows (all by default): a list of str."""
        return self.store.paths_of(self.ids[rows])


RAW_IN_MEMORY_BYTES = 64 << 20  # raw histograms up to this size stay in memory beside the transformed ones
# A search cache pays where opening is slow: a row object per image (~1.2 us each) and the transform's
# B*K^2 products. It costs a rewrite at the end of every index run that changed something (1.1-1.3 s at 1M x 64),
# so indexes that open in about half a second without one (50,000 default-layout images, 244 MiB) do not get one.
SEARCH_CACHE_ROWS = 200_000
SEARCH_CACHE_BYTES = 512 << 20


def load_engine(store, ranking=None, *, in_memory=None, use_cache=True):
    """Load codebook and histograms from ``store`` and prepare the quadratic-form search.

    ranking : dict of ranking settings (power, kernel, sigma) overriding the stored ones, or None
    in_memory : keep the raw histograms in memory too (``backend.vectors`` is then an array), or stream them
        through the transform chunk by chunk, keep only the transformed matrix and read the few rows a query
        re-scores back from the database (``backend.vectors`` is then a :class:`StoredHistograms`). None: in
        memory when they take at most ``RAW_IN_MEMORY_BYTES`` (a query then skips that read, 0.2-3 ms; a large
        index halves its memory)
    use_cache : read a streamed index's transformed matrix from the search cache when it is current (False:
        always transform the histograms; the values are the same)
    Everything is read in one snapshot, so an index run committing meanwhile is never seen half. A streamed index
    reads its transformed matrix from the search cache when that is current (:func:`refresh_search_cache`),
    instead of transforming every histogram: the same values, and 2-4x faster at a million images.
    """
    with store.snapshot():
        return _load_engine(store, ranking, in_memory, use_cache)


def _search_setup(store, ranking):
    """Settings (with ``ranking`` applied), codebook, histogram dimension and the quadratic-form search with A
    factorised but nothing transformed, checked against what this cbir can read."""
    meta = store.meta()
    codebook = store.codebook()
    if codebook is None or "settings" not in meta:
        raise DatabaseError(f"{store.path} has no codebook yet: index some photos first with: "
                            f"cbir index PHOTOS_DIR --db {store.path}")
    if meta.get("lut_bits") != LUT_BITS:
        raise DatabaseError(f"{store.path} was made with a {meta.get('lut_bits')}-bit colour table, this cbir uses "
                            f"{LUT_BITS} bits; rebuild it with: cbir index PHOTOS_DIR --db {store.path} --rebuild")
    settings = Settings.from_dict(meta["settings"]).with_changes(**(ranking or {}))
    if len(codebook) > settings.colors:
        raise DatabaseError(f"{store.path}: {len(codebook)} codebook colours for colors={settings.colors}; rebuild it")
    blocks = n_blocks(settings.layout)
    similarity = similarity_matrix(codebook if settings.space == "lab" else srgb_to_lab(codebook),
                                   settings.kernel, settings.sigma)
    search = QuadraticFormSearch.factorised(None, similarity, power=settings.power, blocks=blocks,
                                            weights=block_weights(settings.layout))
    return settings, codebook, blocks * len(codebook), search


def _streamed(count, dimension):
    return count * dimension * 4 > RAW_IN_MEMORY_BYTES


def _worth_caching(count, dimension):
    raw = count * dimension * 4
    return _streamed(count, dimension) and (count >= SEARCH_CACHE_ROWS or raw >= SEARCH_CACHE_BYTES)


def _load_engine(store, ranking, in_memory, use_cache=True):
    settings, codebook, dimension, backend = _search_setup(store, ranking)
    count = store.counts(["images"])["images"]  # a bound: every histogram read has its own image row
    if in_memory is None:
        in_memory = not _streamed(count, dimension)
    cached = None
    if in_memory:
        ids, backend.vectors = store.load_vectors(dimension)
        backend.transform_chunks(row_chunks(backend.vectors), len(ids))
    else:
        backend.vectors = histograms = StoredHistograms(store, dimension)
        if use_cache:
            cached = store.search_cache(backend.transform_key(), dimension)
        if cached is not None:
            try:
                backend.use_transformed(cached[1])
                histograms.ids = cached[0]
            except ValueError:  # values that are not finite: a damaged cache; the histograms are the truth
                cached = None
        if cached is None:
            backend.transform_chunks(histograms.stream(), count)
        ids = histograms.ids
    if len(ids) == 0:
        raise DatabaseError(f"{store.path} holds no indexed images; add some with: cbir index PHOTOS_DIR "
                            f"--db {store.path}")
    return Engine(settings, codebook, lookup_table(codebook, settings.space), ids, backend, store,
                  store.data_version(), cached=cached is not None)


def refresh_search_cache(store, progress=None):
    """Store the transformed matrix of a large index (streamed when opened, and of at least ``SEARCH_CACHE_ROWS``
    images or ``SEARCH_CACHE_BYTES`` of raw histograms), unless it is current already. Returns whether it wrote
    one.

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
            _, _, dimension, search = _search_setup(store, None)
            count = store.counts(["images"])["images"]
            key = search.transform_key()
            if count == 0 or not _worth_caching(count, dimension):
                store.drop_search_cache()
                return False  # nothing to search, or quick to transform at opening
            if store.search_cache_header(key, dimension) is not None:
                return False  # current already
        store.prepare_search_cache()  # triggers in place before the histograms are read
        with store.snapshot():  # everything again, in the snapshot the cache will describe
            state = store.search_cache_state()
            _, _, dimension, search = _search_setup(store, None)
            key, count = search.transform_key(), store.counts(["images"])["images"]
            histograms = StoredHistograms(store, dimension)
            search.transform_chunks(_counted(histograms.stream(), progress, 2 * count), count)
        written = (lambda rows: progress(count + rows, 2 * count)) if progress else None
        store.write_search_cache(key, histograms.ids, search.transformed, state, progress=written)
        return True
    finally:
        store.unlock()


def _counted(chunks, progress, total):
    """The chunks, calling ``progress(rows so far, total)`` after each."""
    done = 0
    for chunk in chunks:
        yield chunk
        done += len(chunk)
        if progress:
            progress(done, total)


def search_cache_differences(store):
    """Compare the search cache with the histograms it is made from, transforming them again chunk by chunk (what
    ``cbir check`` does). Returns None when there is no current cache, else the number of rows that differ
    (0: the cache is exact), counting a row of one side that the other lacks as a difference."""
    with store.snapshot():
        if store.codebook() is None or "settings" not in store.meta():
            return None
        _, _, dimension, search = _search_setup(store, None)
        cached = store.search_cache(search.transform_key(), dimension)
        if cached is None:
            return None
        cached_ids, cached_rows = cached
        differences, start = 0, 0
        for ids, chunk in store.histogram_chunks(dimension):
            stop = min(start + len(ids), len(cached_ids))
            same = (cached_ids[start:stop] == ids[: stop - start]) & (
                cached_rows[start:stop] == search.transform(chunk)[: stop - start]).all(axis=1)
            differences += int((~same).sum()) + len(ids) - (stop - start)
            start += len(ids)
        return differences + max(0, len(cached_ids) - start)


class Index:
    """An index database. Open with :meth:`open`; searching loads the histograms once, on first use."""

    def __init__(self, store, ranking=None):
        self.store = store
        self.ranking = ranking or {}
        self._engine = None

    @classmethod
    def open(cls, path, *, create=False, ranking=None):
        """Open the index at ``path`` (``create`` makes a new one); ``ranking`` overrides power/kernel/sigma."""
        return cls(Store.open(path, create=create), ranking)

    def close(self):
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def engine(self):
        """The loaded :class:`Engine` (loaded on first use; :meth:`search_vectors` loads it again when another
        connection has committed since)."""
        if self._engine is None:
            self._engine = load_engine(self.store, self.ranking)
        return self._engine

    def add(self, paths, *, settings=None, rebuild=False, progress=None, workers=1, search_cache=True,
            cache_progress=None):
        """Index the image files under ``paths`` incrementally; see :func:`cbir.indexer.index_paths`. Then, unless
        interrupted or ``search_cache`` is False, :meth:`cache_for_search` with ``cache_progress`` (Ctrl-C there
        sets ``report.interrupted``: no new cache is kept, and the next run writes it)."""
        report = index_paths(self.store, paths, settings, rebuild=rebuild, progress=progress, workers=workers)
        self._engine = None
        if search_cache and not report.interrupted:
            try:
                self.cache_for_search(cache_progress)
            except KeyboardInterrupt:  # the file is renamed into place only when whole: the old one stays
                report.interrupted = True
        return report

    def cache_for_search(self, progress=None):
        """Bring the search cache of a large index up to date; see :func:`refresh_search_cache`."""
        return refresh_search_cache(self.store, progress)

    def histogram(self, image):
        """Histogram of ``image (H, W, 3) uint8`` with this index's codebook: ``(B*K,) float32``."""
        engine = self.engine
        return histogram(check_image(image), engine.lut, len(engine.codebook), engine.settings.layout)

    def query_vector(self, query):
        """Histogram of a query given as a path or an image array, decoded as indexed images are."""
        if isinstance(query, (str, os.PathLike)):
            query = read_image(query, min_side=self.engine.settings.min_side)
        return self.histogram(query)

    def colour_vector(self, colours):
        """Histogram of a colour target (a list of :class:`cbir.target.TargetColour`) with this index's codebook.

        The rest of the shares ("any colour") follows the collection's codebook shares; see :mod:`cbir.target`.
        """
        from .target import target_histogram

        engine = self.engine
        background = np.array([row["share"] for row in self.store.codebook_rows()], np.float64)
        return target_histogram(np.array([c.rgb for c in colours], np.uint8), [c.share for c in colours],
                                engine.lut, background, n_blocks(engine.settings.layout))

    def search(self, query, n=10):
        """Rank the indexed images for one query (a path or an ``(H, W, 3) uint8`` array); ``n=0``: all."""
        return self.search_vectors([self.query_vector(query)], n)[0]

    def search_vectors(self, vectors, n=10):
        """Rank the indexed images for each of several histograms: a list of lists of Result.

        Scores, re-scoring and paths are read in one snapshot of the database, the engine reloaded first if
        another connection committed since it was loaded (an index run adding photos meanwhile).
        """
        before = self._engine
        with self.store.snapshot():
            if before is not None and before.version != self.store.data_version():
                self._engine = None  # an index run added or removed photos: search what is there now
            engine = self.engine
            if before is not None and engine is not before and not np.array_equal(engine.codebook, before.codebook):
                raise DatabaseError(f"{self.store.path} was rebuilt with a new codebook during this query; run it "
                                    "again")
            rows, distances = engine.backend.search(np.asarray(vectors, np.float32), n)
            paths = iter(engine.paths(np.concatenate(rows)) if rows else [])
        return [[Result(rank, next(paths), float(d), int(engine.ids[row]))
                 for rank, (row, d) in enumerate(zip(r, dist), 1)] for r, dist in zip(rows, distances)]

    def disk_path(self, stored_path):
        return self.store.disk_path(stored_path)

    def info(self):
        """Counts, settings, codebook and size of the database, as a dict."""
        meta = self.store.meta()
        size = sum(os.path.getsize(self.store.path + suffix) for suffix in ("", "-wal")
                   if os.path.exists(self.store.path + suffix))
        return {
            "database": self.store.path,
            "schema_version": meta.get("schema_version"),
            **self.store.counts(),
            "settings": meta.get("settings"),
            "codebook": [{"hex": r["hex"], "share": r["share"]} for r in self.store.codebook_rows()],
            # rows of the search's transformed matrix kept for opening fast (large indexes only), or None
            "search_cache_rows": (self.store.search_cache_header() or {}).get("rows"),
            "bytes": size,
        }
