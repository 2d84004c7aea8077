"""The Python API: ``Index``, the one door to an index database, and what its searches return."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.colour_query import TargetColour, target_histogram
from ..core.histogram import histogram, n_blocks, whole_picture_shares
from ..core.quantize import check_image
from ..errors import DatabaseError, Remedy
from ..imageio import read_image
from ..settings import Settings
from ..store import Store
from . import search_cache
from .check import CheckReport, check_database
from .duplicates import DuplicateReport, find_duplicates
from .engine import Engine, load_engine
from .run import IndexReport, index_paths
from .tuning import Tuning

Progress = Callable[[int, int], None]
DEFAULT_TUNING = Tuning()  # what Index.open uses when given none (the faces never pass one)


@dataclass(frozen=True)
class Result:
    """One ranked image.

    rank : int, 1 for the best
    path : str, the file's path as it opens from the caller's working directory (absolute when the database
        keeps it relative to its own folder)
    distance : float, the quadratic-form distance (0: the same histogram)
    image_id : int, the image's id in the database
    stored_path : str, the path as the database stores it (relative to the database's folder when inside it)
    """

    rank: int
    path: str
    distance: float
    image_id: int
    stored_path: str


@dataclass(frozen=True)
class Failure:
    """A file that could not be indexed: its path (as it opens from the caller's working directory), the path as
    stored, and why."""

    path: str
    stored_path: str
    reason: str


class Index:
    """An index database: add photos, search them.

    Open with :meth:`open` (the constructor only keeps what it is given). Searching loads the codebook and the
    histograms once, on first use, and again only when another process has changed the database since.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from cbir import Index, write_image
    >>> folder = tempfile.mkdtemp()
    >>> for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
    ...     write_image(os.path.join(folder, f"{i}.png"), np.full((32, 48, 3), colour, np.uint8))
    >>> with Index.open(os.path.join(folder, "photos.db"), create=True) as index:
    ...     report = index.add(folder)
    ...     best = index.search(np.full((16, 16, 3), (210, 40, 40), np.uint8), n=1)[0]
    >>> report.added, os.path.basename(best.path)
    (3, '0.png')
    """

    def __init__(self, store: Store, ranking: dict[str, Any] | None = None, tuning: Tuning = Tuning()) -> None:
        self._store = store
        self._ranking = dict(ranking or {})
        self._tuning = tuning
        self._engine: Engine | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False, ranking: dict[str, Any] | None = None,
             tuning: Tuning | None = None) -> Index:
        """Open the index database at ``path``.

        Parameters
        ----------
        path : the database file; ``~`` is expanded
        create : make the database if it does not exist
        ranking : ranking settings (``power``, ``kernel``, ``sigma``) overriding the stored ones for searches
        tuning : batch sizes and thresholds (results do not depend on them); None: ``DEFAULT_TUNING``

        Raises
        ------
        DatabaseError
            no database there (and not ``create``), or one cbir cannot read
        """
        return cls(Store.open(os.path.expanduser(os.fspath(path)), create=create), ranking, tuning or DEFAULT_TUNING)

    @staticmethod
    def check(path: str | os.PathLike[str], *, files: bool = True) -> CheckReport:
        """Check the database at ``path`` without changing it: SQLite integrity, codebook and settings, histogram
        rows and values, the search cache, and (``files``) the indexed files on disk. Never raises for a damaged
        or missing database: that is a finding."""
        return check_database(os.path.expanduser(os.fspath(path)), files=files)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        """The database file."""
        return self._store.path

    # --- adding -----------------------------------------------------------------------------------------------
    def add(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
            settings: dict[str, Any] | None = None, rebuild: bool = False, progress: Progress | None = None,
            workers: int = 1, search_cache: bool = True, cache_progress: Progress | None = None) -> IndexReport:
        """Index the image files under ``paths`` (folders are searched recursively), incrementally: new and changed
        files are read, unchanged ones skipped, files gone from those folders forgotten.

        Parameters
        ----------
        paths : a folder or file, or a list of them; ``~`` is expanded
        settings : :class:`cbir.Settings` fields to use (a first run) or change (ranking fields any time; histogram
            fields with ``rebuild``)
        rebuild : learn the codebook again and recompute every histogram
        progress : callable(done, total), called as files are processed
        workers : processes that read and describe files (the result is the same with any number)
        search_cache : afterwards bring a large index's search cache up to date (:meth:`cache_for_search`, with
            ``cache_progress``); Ctrl-C there sets ``report.interrupted``: no new cache is kept

        Returns
        -------
        IndexReport
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        roots = [os.path.expanduser(os.fspath(p)) for p in paths]
        report = index_paths(self._store, roots, settings, rebuild=rebuild, progress=progress, workers=workers,
                             tuning=self._tuning)
        self._engine = None
        if search_cache and not report.interrupted:
            try:
                self.cache_for_search(cache_progress)
            except KeyboardInterrupt:  # the file is renamed into place only when whole: the old one stays
                report.interrupted = True
        return report

    def cache_for_search(self, progress: Progress | None = None) -> bool:
        """Bring the search cache of a large index up to date; returns whether a new one was written. See
        :mod:`cbir.index.search_cache`."""
        return search_cache.refresh(self._store, self._tuning, progress)

    # --- searching --------------------------------------------------------------------------------------------
    def _loaded(self) -> Engine:
        """The loaded engine (loaded on first use; :meth:`search_vectors` loads it again when another connection
        has committed since)."""
        if self._engine is None:
            self._engine = load_engine(self._store, self._ranking, tuning=self._tuning)
        return self._engine

    @property
    def settings(self) -> Settings:
        """The :class:`cbir.Settings` searches use: the stored ones with this index's ranking overrides."""
        return self._loaded().settings

    def __len__(self) -> int:
        """Images a search ranks."""
        return len(self._loaded().ids)

    def histogram(self, image: np.ndarray) -> np.ndarray:
        """Histogram of ``image (H, W, 3) uint8`` with this index's codebook: ``(B*K,) float32``."""
        engine = self._loaded()
        return histogram(check_image(image), engine.lut, len(engine.codebook), engine.settings.layout)

    def query_vector(self, query: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
        """Histogram of a query given as a path or an image array, decoded as indexed images are."""
        if isinstance(query, (str, os.PathLike)):
            query = read_image(os.path.expanduser(os.fspath(query)), min_side=self._loaded().settings.min_side)
        return self.histogram(query)

    def colour_vector(self, colours: Sequence[TargetColour]) -> np.ndarray:
        """Histogram of a colour query (from :func:`cbir.parse_target`) with this index's codebook:
        ``(B*K,) float32``. The rest of the shares ("any colour") follows the collection's codebook shares; see
        :mod:`cbir.core.colour_query`."""
        engine = self._loaded()
        background = np.array([row["share"] for row in self._store.codebook_rows()], np.float64)
        return target_histogram(np.array([c.rgb for c in colours], np.uint8), [c.share for c in colours],
                                engine.lut, background, n_blocks(engine.settings.layout))

    def search(self, query: str | os.PathLike[str] | np.ndarray, n: int = 10) -> list[Result]:
        """Rank the indexed images for one query image (a path or an ``(H, W, 3) uint8`` array); ``n=0``: all.

        Raises
        ------
        DecodeError
            the query file cannot be read as an image
        DatabaseError
            the index holds nothing to search, or cannot be read
        """
        return self.search_vectors([self.query_vector(query)], n)[0]

    def search_colours(self, colours: Sequence[TargetColour], n: int = 10) -> list[Result]:
        """Rank the indexed images for a colour query (QBIC's colour-percentage query), e.g.
        ``index.search_colours(parse_target(["#1e90ff:40", "white:20"]))``."""
        return self.search_vectors([self.colour_vector(colours)], n)[0]

    def search_vectors(self, vectors: Sequence[np.ndarray] | np.ndarray, n: int = 10) -> list[list[Result]]:
        """Rank the indexed images for each of several histograms: a list of rankings, one per histogram.

        Scores, re-scoring and paths are read in one snapshot of the database, the index loaded again first if
        another connection committed since it was loaded (an index run adding photos meanwhile).
        """
        before = self._engine
        store = self._store
        with store.snapshot():
            if before is not None and before.version != store.data_version():
                self._engine = None  # an index run added or removed photos: search what is there now
            engine = self._loaded()
            if before is not None and engine is not before and not np.array_equal(engine.codebook, before.codebook):
                raise DatabaseError(f"{store.path} was rebuilt with a new codebook during this query; run it again")
            rows, distances = engine.backend.search(np.asarray(vectors, np.float32), n)
            stored = iter(engine.paths(np.concatenate(rows)) if rows else [])
        return [[self._result(rank, next(stored), float(d), int(engine.ids[row]))
                 for rank, (row, d) in enumerate(zip(r, dist), 1)] for r, dist in zip(rows, distances)]

    def _result(self, rank: int, stored: str, distance: float, image_id: int) -> Result:
        return Result(rank, self._store.disk_path(stored), distance, image_id, stored)

    # --- copies -----------------------------------------------------------------------------------------------
    def duplicates(self, *, tier: int = 3, threshold: float = 1.0, progress: Progress | None = None
                   ) -> DuplicateReport:
        """Group the indexed photos that are copies of each other, in tiers: 1 identical files, 2 the same photo
        saved again (resized, recompressed, converted, rotated, mirrored), 3 near-duplicates (bursts, light crops,
        small edits). Reads the database only: no file is deleted, moved or written.

        Parameters
        ----------
        tier : the loosest tier to report (1, 2 or 3)
        threshold : how near tier 3 must be, in near-duplicate distance (1: the default; 0.5 stricter, 1.5 looser;
            more than 0, at most 4)
        progress : callable(done, total) while the pairs are compared

        Returns
        -------
        DuplicateReport
            ``groups``: :class:`DuplicateGroup` s, each with its ``tier``, ``members`` (the suggested keeper
            first: most pixels, then the largest file, then the oldest) and ``why``

        Raises
        ------
        ValueError
            a tier or threshold out of range
        CbirError
            a threshold so loose that too many pairs qualify
        DatabaseError
            the index cannot be read

        Examples
        --------
        >>> import numpy as np, tempfile, os, shutil
        >>> from cbir import Index, write_image
        >>> folder = tempfile.mkdtemp()
        >>> photo = np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)
        >>> write_image(os.path.join(folder, "a.png"), photo)
        >>> shutil.copy(os.path.join(folder, "a.png"), os.path.join(folder, "copy of a.png"))  # doctest: +ELLIPSIS
        '...'
        >>> write_image(os.path.join(folder, "b.png"), photo[::-1, ::-1])   # rotated by 180 degrees
        >>> with Index.open(os.path.join(folder, "photos.db"), create=True) as index:
        ...     report = index.add(folder)
        ...     group = index.duplicates().groups[0]
        >>> group.tier, [(os.path.basename(m.path), m.relation, m.symmetry) for m in group.members]
        (2, [('a.png', 0, 'as is'), ('copy of a.png', 1, 'as is'), ('b.png', 2, 'rotated 180°')])
        """
        return find_duplicates(self._store, tier=tier, threshold=threshold, tuning=self._tuning, progress=progress)

    # --- what an index holds ----------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Counts, settings, codebook and size of the database, as a dict of plain values."""
        store = self._store
        meta = store.meta()
        size = sum(os.path.getsize(store.path + suffix) for suffix in ("", "-wal")
                   if os.path.exists(store.path + suffix))
        return {
            "database": store.path,
            "schema_version": meta.get("schema_version"),
            **store.counts(),
            "settings": meta.get("settings"),
            "codebook": [{"hex": r["hex"], "share": r["share"]} for r in store.codebook_rows()],
            # rows of the search's transformed matrix kept for opening fast (large indexes only), or None
            "search_cache_rows": (search_cache.header(store) or {}).get("rows"),
            "bytes": size,
        }

    def failures(self) -> list[Failure]:
        """The files that could not be indexed, and why."""
        return [Failure(self._store.disk_path(row["path"]), row["path"], row["reason"])
                for row in self._store.known_failures().values()]

    def codebook_colours(self) -> tuple[np.ndarray, np.ndarray]:
        """The codebook: ``rgb (K, 3) uint8`` sRGB colours and ``shares (K,) float64``, each colour's share of the
        pixels of the images it was learned from.

        Raises
        ------
        DatabaseError
            nothing has been indexed yet
        """
        rows = self._store.codebook_rows()
        if not rows:
            raise DatabaseError(f"{self._store.path} has no codebook yet", remedy=Remedy.ADD)
        rgb = np.array([[int(row["hex"][i : i + 2], 16) for i in (1, 3, 5)] for row in rows], np.uint8)
        return rgb, np.array([row["share"] for row in rows], np.float64)

    def histograms(self, image_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored histograms of some images, in the order given: ``(len(image_ids), B*K) float32``."""
        engine = self._loaded()
        return self._store.histograms_of(image_ids, engine.backend.vectors.shape[1])

    def colour_makeup(self, vectors: np.ndarray) -> np.ndarray:
        """Whole-picture colour shares of histograms of this index (stored, or from :meth:`query_vector`):
        ``(N, B*K)`` -> ``(N, K) float64``, in codebook order (see :meth:`codebook_colours`)."""
        engine = self._loaded()
        return whole_picture_shares(vectors, len(engine.codebook), engine.settings.layout)

    def image_paths(self) -> tuple[np.ndarray, list[str]]:
        """Every searchable image: ids ``(N,) int64`` (ascending) and their paths as they open from the caller's
        working directory."""
        engine = self._loaded()
        return engine.ids.copy(), [self._store.disk_path(p) for p in engine.paths()]

    def full_rankings(self, image_ids: Sequence[int] | np.ndarray, *, distance: str = "qfd"
                      ) -> Iterator[np.ndarray]:
        """For each of ``image_ids``, the ids of every searchable image ranked best first by ``distance`` (one of
        ``cbir.core.backends.DISTANCES``), the image itself included: what retrieval experiments measure.

        Loads the raw histograms into memory at once (every distance but the quadratic form compares them
        directly); each ranking is computed as it is taken from the iterator.
        """
        engine = load_engine(self._store, self._ranking, tuning=self._tuning, in_memory=True)
        search = engine.comparison(distance)
        image_ids = np.asarray(image_ids, np.int64)
        rows = np.searchsorted(engine.ids, image_ids)
        if ((rows >= len(engine.ids)) | (engine.ids[np.minimum(rows, len(engine.ids) - 1)] != image_ids)).any():
            raise ValueError("image_ids must be ids of indexed images (see image_paths)")
        return (engine.ids[search.search(engine.backend.vectors[row][None], 0)[0][0]] for row in rows)
