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
from .errors import DatabaseError
from .features import LUT_BITS, block_weights, histogram, lookup_table, n_blocks
from .indexer import index_paths
from .qfd import similarity_matrix
from .quantize import check_image
from .search import QuadraticFormSearch
from .settings import Settings
from .storage import Store


@dataclass(frozen=True)
class Result:
    """One ranked image: rank (1 = best), path, quadratic-form distance (0 = same histogram), database id."""

    rank: int
    path: str
    distance: float
    image_id: int


@dataclass(frozen=True)
class Engine:
    """What searching needs, loaded from the database once: settings, codebook, lookup table, vectors."""

    settings: Settings
    codebook: np.ndarray
    lut: np.ndarray
    ids: np.ndarray
    paths: list
    backend: QuadraticFormSearch


def load_engine(store, ranking=None):
    """Load codebook and histograms from ``store`` and prepare the quadratic-form search.

    ranking : dict of ranking settings (power, kernel, sigma) overriding the stored ones, or None
    Everything is read in one snapshot, so an index run committing meanwhile is never seen half.
    """
    with store.snapshot():
        return _load_engine(store, ranking)


def _load_engine(store, ranking):
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
    ids, paths, vectors = store.load_vectors(blocks * len(codebook))
    if len(ids) == 0:
        raise DatabaseError(f"{store.path} holds no indexed images; add some with: cbir index PHOTOS_DIR "
                            f"--db {store.path}")
    similarity = similarity_matrix(codebook if settings.space == "lab" else srgb_to_lab(codebook),
                                   settings.kernel, settings.sigma)
    backend = QuadraticFormSearch.build(vectors, similarity, power=settings.power, blocks=blocks,
                                       weights=block_weights(settings.layout))
    return Engine(settings, codebook, lookup_table(codebook, settings.space), ids, paths, backend)


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
        if self._engine is None:
            self._engine = load_engine(self.store, self.ranking)
        return self._engine

    def add(self, paths, *, settings=None, rebuild=False, progress=None, workers=1):
        """Index the image files under ``paths`` incrementally; see :func:`cbir.indexer.index_paths`."""
        report = index_paths(self.store, paths, settings, rebuild=rebuild, progress=progress, workers=workers)
        self._engine = None
        return report

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
        """Rank the indexed images for each of several histograms: a list of lists of Result."""
        engine = self.engine
        rows, distances = engine.backend.search(np.asarray(vectors, np.float32), n)
        return [[Result(rank, engine.paths[row], float(d), int(engine.ids[row]))
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
            "bytes": size,
        }
