"""What a search is made from: an index's stored histograms, and the quadratic-form search set up for them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..core.backends import OnExactSearch, QuadraticFormSearch
from ..core.colour import srgb_to_lab
from ..core.histogram import LUT_BITS, block_weights, n_blocks
from ..core.qfd import similarity_matrix
from ..errors import CbirError, DatabaseError, Remedy
from ..settings import Settings
from ..store import Store


class StoredHistograms:
    """The indexed histograms as the rows of a matrix that stays in the database: ``histograms[rows]`` reads those
    rows, ``(len(rows), D) float32``. The search re-scores its few candidates per query from it, so a loaded index
    holds the transformed matrix only (memory, and opening time), not the raw one too.

    :meth:`stream` reads every row once, chunk by chunk, and learns the image id of each row on the way.
    """

    def __init__(self, store: Store, dimension: int) -> None:
        self.store, self.dimension = store, dimension
        self.ids = np.zeros(0, np.int64)

    def stream(self) -> Iterator[np.ndarray]:
        ids = []
        for chunk_ids, chunk in self.store.histogram_chunks(self.dimension):
            ids.append(chunk_ids)
            yield chunk
        self.ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ids), self.dimension

    def __getitem__(self, rows: Any) -> np.ndarray:
        return self.store.histograms_of(np.atleast_1d(self.ids[rows]), self.dimension)


class StreamedSearch(OnExactSearch):
    """The exact quadratic-form search over histograms read from the database for each search, chunk by chunk (an
    index too large to keep its transformed matrix). Same ``search(queries, n)`` and ``search_points(points, n)``
    as the other back-ends: rows of ``ids`` (every image id, ascending) and exact distances."""

    def __init__(self, exact: QuadraticFormSearch, store: Store, dimension: int, ids: np.ndarray) -> None:
        super().__init__(exact)
        self.store, self.dimension, self.ids = store, dimension, ids
        exact.vectors = StoredHistograms(store, dimension)
        exact.vectors.ids = ids

    def search(self, queries: np.ndarray, n: int = 10) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return self._stream(queries, n, points=False)

    def search_points(self, points: np.ndarray, n: int = 10) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return self._stream(points, n, points=True)

    def _stream(self, queries, n, points):
        if n < 1:
            raise CbirError(f"{self.store.path} holds {len(self.ids)} images: too many to rank whole; ask for the "
                            "n best (n >= 1)")
        found, distances = self.exact.search_stream(self.store.histogram_chunks(self.dimension), queries, n,
                                                    points=points)
        return [np.searchsorted(self.ids, f) for f in found], distances


def search_setup(store: Store, ranking: dict[str, Any] | None
                 ) -> tuple[Settings, np.ndarray, int, QuadraticFormSearch]:
    """Settings (with ``ranking`` applied), codebook, histogram dimension and the quadratic-form search with A
    factorised but nothing transformed, checked against what this cbir can read."""
    settings, codebook, dimension = checked_codebook(store, ranking)
    similarity = similarity_matrix(codebook if settings.space == "lab" else srgb_to_lab(codebook),
                                   settings.kernel, settings.sigma)
    search = QuadraticFormSearch.factorised(None, similarity, power=settings.power, blocks=n_blocks(settings.layout),
                                            weights=block_weights(settings.layout))
    return settings, codebook, dimension, search


def checked_codebook(store: Store, ranking: dict[str, Any] | None) -> tuple[Settings, np.ndarray, int]:
    """Settings (with ``ranking`` applied), codebook and histogram dimension, checked against what this cbir can
    read: :func:`search_setup` without the factorisation of A."""
    meta = store.meta()
    codebook = store.codebook()
    if codebook is None or "settings" not in meta:
        raise DatabaseError(f"{store.path} has no codebook yet", remedy=Remedy.ADD)
    if meta.get("lut_bits") != LUT_BITS:
        raise DatabaseError(f"{store.path} was made with a {meta.get('lut_bits')}-bit colour table, this cbir uses "
                            f"{LUT_BITS} bits", remedy=Remedy.REBUILD)
    settings = Settings.from_dict(meta["settings"]).with_changes(**(ranking or {}))
    if len(codebook) > settings.colors:
        raise DatabaseError(f"{store.path}: {len(codebook)} codebook colours for colors={settings.colors}",
                            remedy=Remedy.REBUILD)
    return settings, codebook, n_blocks(settings.layout) * len(codebook)
