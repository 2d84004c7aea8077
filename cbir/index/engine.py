"""A loaded index: what searching needs, read from the database once, in one snapshot."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import ann
from ..core.backends import COMPARISONS, DISTANCES, QuadraticFormSearch, row_chunks
from ..core import feedback
from ..core.feedback import FeedbackModel
from ..core.histogram import block_weights, lookup_table, n_blocks, whole_picture_shares
from ..errors import DatabaseError, Remedy
from ..settings import Settings
from ..store import Store
from . import search_cache, vector_index
from .histograms import StoredHistograms, StreamedSearch, search_setup
from .tuning import Tuning


@dataclass(frozen=True)
class Engine:
    """What searching needs, loaded from the database once: settings, codebook, lookup table, the image id of each
    row of the search (``ids (N,) int64``), the search back-end, where and when (the database's ``data_version``)
    it was loaded from, whether its transformed matrix came from the search cache, whether its candidates come
    from the vector index (``approximate``), and whether a vector index is wanted but out of date (``outdated``:
    the search then reads every histogram)."""

    settings: Settings
    codebook: np.ndarray
    lut: np.ndarray
    ids: np.ndarray
    backend: QuadraticFormSearch
    store: Store
    version: int
    cached: bool = False
    approximate: bool = False
    outdated: bool = False

    def paths(self, rows: Any = slice(None)) -> list[str]:
        """Stored paths of some rows (all by default)."""
        return self.store.paths_of(self.ids[rows])

    @functools.cached_property
    def feedback(self) -> FeedbackModel:
        """What several examples and relevance feedback need (:mod:`cbir.core.feedback`), learned from the
        transformed matrix on first use (a second or two for a large index) and kept with the engine. A very large
        index keeps no transformed matrix: the model is learned from a sample of its histograms, transformed."""
        return FeedbackModel.learn(self.transformed)

    @functools.cached_property
    def transformed(self) -> np.ndarray:
        """The search's transformed matrix ``(N, B*K) float32``, or for a very large index, which keeps none, the
        transformed histograms of a sample of ``feedback.SAMPLE`` images (what the feedback model and typical
        distances are learned from; call it inside the snapshot the engine was loaded in)."""
        transformed = getattr(self.backend, "transformed", None)
        if transformed is None:
            _, sample = self.store.sample_histograms(feedback.SAMPLE, self.backend.vectors.shape[1])
            transformed = self.backend.transform(sample)
        return transformed

    def rows_of(self, image_ids: Any) -> np.ndarray:
        """Rows of the search holding some image ids: ``(n,) int64``; ValueError for an id not searchable."""
        image_ids = np.asarray(image_ids, np.int64).ravel()
        rows = np.searchsorted(self.ids, image_ids)
        missing = (rows >= len(self.ids)) | (self.ids[np.minimum(rows, len(self.ids) - 1)] != image_ids)
        if missing.any():
            raise ValueError(f"no indexed image has id {int(image_ids[missing][0])} (ids come from Result.image_id "
                             "or Index.image_paths)")
        return rows

    @functools.cached_property
    def picture_shares(self) -> np.ndarray:
        """Whole-picture codebook shares of every row: ``(N, K) float32``, what colour queries score. Made on first
        use, from the raw histograms in memory or, for a large index, read from the database chunk by chunk (call
        it inside the snapshot the engine was loaded in)."""
        k, layout = len(self.codebook), self.settings.layout
        if isinstance(self.backend.vectors, np.ndarray):
            return whole_picture_shares(self.backend.vectors, k, layout).astype(np.float32)
        # zeros for a row without a histogram (a very large index searched exactly lists every image row)
        shares = np.zeros((len(self.ids), k), np.float32)
        filled = 0
        for ids, chunk in self.store.histogram_chunks(self.backend.vectors.dimension):
            rows = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
            if not np.array_equal(self.ids[rows], ids):
                raise DatabaseError(f"{self.store.path} changed while it was read; run the query again")
            shares[rows] = whole_picture_shares(chunk, k, layout)
            filled += len(ids)
        if filled != len(self.ids) and not isinstance(self.backend, StreamedSearch):
            raise DatabaseError(f"{self.store.path} changed while it was read; run the query again")
        return shares

    def comparison(self, distance: str):
        """The back-end ranking this engine's histograms by ``distance`` (one of ``DISTANCES``); every one but the
        quadratic form needs the raw histograms in memory (``load_engine(..., in_memory=True)``)."""
        if distance == "qfd":
            return self.backend
        if distance not in COMPARISONS:
            raise ValueError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
        if not isinstance(self.backend.vectors, np.ndarray):
            raise ValueError(f"the {distance} distance needs the raw histograms in memory: load with in_memory=True")
        layout = self.settings.layout
        return COMPARISONS[distance](self.backend.vectors, n_blocks(layout), block_weights(layout))


def load_engine(store: Store, ranking: dict[str, Any] | None = None, *, tuning: Tuning = Tuning(),
                in_memory: bool | None = None, use_cache: bool = True, previous: Engine | None = None,
                exact: bool = False) -> Engine:
    """Load codebook and histograms from ``store`` and prepare the quadratic-form search.

    ranking : dict of ranking settings (power, kernel, sigma) overriding the stored ones, or None
    tuning : when the raw histograms stay in memory (``tuning.raw_in_memory_bytes``)
    in_memory : keep the raw histograms in memory too (``backend.vectors`` is then an array), or stream them
        through the transform chunk by chunk, keep only the transformed matrix and read the few rows a query
        re-scores back from the database (``backend.vectors`` is then a :class:`StoredHistograms`). None: as
        ``tuning`` says for the index's size (in memory, a query skips that read; streamed, a large index halves
        its memory)
    use_cache : read a streamed index's transformed matrix from the search cache when it is current (False:
        always transform the histograms; the values are the same)
    previous : the engine this one replaces (the database changed since it was loaded): its lookup table is kept
        when the codebook is the same, as after an index run that added photos, instead of being built again
        (0.1-0.3 s, which a server that sees each commit of an index run would pay at every commit)
    exact : for an index large enough for a vector index (``tuning.wants_vector_index``), scan every histogram
        for each search instead of taking candidates from the vector index (smaller indexes are always searched
        exactly)

    Everything is read in one snapshot, so an index run committing meanwhile is never seen half.
    """
    with store.snapshot():
        return _load(store, ranking, tuning, in_memory, use_cache, previous, exact)


def _load(store: Store, ranking: dict[str, Any] | None, tuning: Tuning, in_memory: bool | None,
          use_cache: bool, previous: Engine | None = None, exact: bool = False) -> Engine:
    settings, codebook, dimension, backend = search_setup(store, ranking)
    same_colours = (previous is not None and previous.settings.space == settings.space
                    and np.array_equal(previous.codebook, codebook))
    lut = previous.lut if same_colours else lookup_table(codebook, settings.space)
    if not in_memory and not exact and tuning.wants_vector_index(store.image_count_bound(), dimension):
        # A current vector index is found without counting the rows (10M: seconds); it describes the database as it
        # is, so its rows are the count.
        found = vector_index.read(store, backend.transform_key(), dimension)
        if found is not None and tuning.wants_vector_index(len(found.ids), dimension):
            return _load_approximate(store, settings, codebook, lut, dimension, backend, found)
    count = store.counts(["images"])["images"]  # a bound: every histogram read has its own image row
    if not in_memory and tuning.wants_vector_index(count, dimension):
        return _load_exact_large(store, settings, codebook, lut, dimension, backend, exact)
    if in_memory is None:
        in_memory = not tuning.streams(count, dimension)
    cached = None
    if in_memory:
        ids, backend.vectors = store.load_vectors(dimension)
        backend.transform_chunks(row_chunks(backend.vectors), len(ids))
    else:
        backend.vectors = histograms = StoredHistograms(store, dimension)
        if use_cache:
            cached = search_cache.read(store, backend.transform_key(), dimension)
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
        raise DatabaseError(f"{store.path} holds no indexed images", remedy=Remedy.ADD)
    return Engine(settings, codebook, lut, ids, backend, store, store.data_version(), cached=cached is not None)


def _load_approximate(store: Store, settings: Settings, codebook: np.ndarray, lut: np.ndarray, dimension: int,
                      backend: QuadraticFormSearch, found: vector_index.VectorIndex) -> Engine:
    """A very large index searched through its current vector index ``found``: candidates from the graph, exact
    distances from the histograms read back from the database."""
    backend.vectors = histograms = StoredHistograms(store, dimension)
    histograms.ids = found.ids
    search = ann.ApproximateQuadraticFormSearch(backend, found.ids, found.mean, found.axes, found.graph)
    return Engine(settings, codebook, lut, found.ids, search, store, store.data_version(), approximate=True)


def _load_exact_large(store: Store, settings: Settings, codebook: np.ndarray, lut: np.ndarray, dimension: int,
                      backend: QuadraticFormSearch, exact: bool) -> Engine:
    """A very large index searched by reading every histogram for each search: asked for (``exact``), or while its
    vector index is out of date or missing (slow at this size)."""
    ids = store.image_ids()
    if len(ids) == 0:
        raise DatabaseError(f"{store.path} holds no indexed images", remedy=Remedy.ADD)
    return Engine(settings, codebook, lut, ids, StreamedSearch(backend, store, dimension, ids), store,
                  store.data_version(), outdated=not exact)
