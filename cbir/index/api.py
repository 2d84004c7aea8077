"""The Python API: ``Index``, the one door to an index database, and what its searches return."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import ann
from ..core.colour import srgb_to_lab
from ..core.colour_query import (TargetColour, layout_histogram, missing_shares, near_colours, rank_colour_matches,
                                 target_histogram)
from ..core.histogram import histogram, n_blocks, whole_picture_shares
from ..core.qfd import distance_terms, square_root
from ..core.quantize import check_image
from ..errors import DatabaseError, Remedy
from ..imageio import read_image
from ..settings import Settings
from ..store import Store
from . import search_cache, vector_index
from .check import CheckReport, check_database
from .duplicates import DuplicateReport, find_duplicates
from .engine import Engine, load_engine
from .forget import RemovalReport, prune, remove_paths
from .run import IndexReport, index_paths
from .tuning import Tuning
from .workers import default_workers

Progress = Callable[[int, int], None]
# An example a search ranks like (or unlike): an image file, an image array, an indexed image's id, a colour query.
Example = str | os.PathLike[str] | np.ndarray | int | Sequence[TargetColour]
DEFAULT_TUNING = Tuning()  # what Index.open uses when given none (the faces never pass one)


@dataclass(frozen=True)
class Result:
    """One ranked image.

    rank : int, 1 for the best
    path : str, the file's path as it opens from the caller's working directory (absolute when the database
        keeps it relative to its own folder)
    distance : float, the quadratic-form distance (0: the same histogram); for a colour query the share missing
    image_id : int, the image's id in the database
    stored_path : str, the path as the database stores it (relative to the database's folder when inside it)
    found : tuple of float, for a colour query the share of the picture found near each requested colour (then
        ``distance`` is the share missing); empty otherwise
    """

    rank: int
    path: str
    distance: float
    image_id: int
    stored_path: str
    found: tuple[float, ...] = ()


@dataclass(frozen=True)
class ColourMatch:
    """A requested colour and the nearest colour of an index's codebook: ``colour`` (a TargetColour), ``nearest``
    (hex) and ``delta_e`` (CIE76) between them."""

    colour: TargetColour
    nearest: str
    delta_e: float


@dataclass(frozen=True)
class ImageInfo:
    """One indexed image as the database records it.

    image_id : int
    path : str, the file's path as it opens from the caller's working directory
    stored_path : str, the path as the database stores it (relative to the database's folder when inside it)
    size : int, bytes, and mtime_ns : int, the file's modification time, when it was indexed
    sha256 : str, the SHA-256 of its content then (hex)
    width, height : int, pixels
    """

    image_id: int
    path: str
    stored_path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class Folder:
    """One page of a folder of the index, as the stored paths see it: ``folder`` (a stored path, "" for the top),
    the names of its ``subfolders``, ``images`` directly in it (:class:`ImageInfo`, by path, one page of them) and
    ``count``, how many images are directly in it."""

    folder: str
    subfolders: list[str]
    images: list[ImageInfo]
    count: int


@dataclass(frozen=True)
class Explanation:
    """Distances split exactly by block and colour (:func:`cbir.core.qfd.distance_terms`), for N images.

    terms : (N, B, K) float64, non-negative; each image's terms add up to its squared distance
    signed : (N, B, K) float64, > 0 where the image holds more of a colour (and the colours like it) than the query
    weights : (B,) float64, the blocks' weights
    """

    terms: np.ndarray
    signed: np.ndarray
    weights: np.ndarray


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

    More like these, not like those: examples ranked together, here two results liked and one disliked, by id

    >>> with Index.open(os.path.join(folder, "photos.db")) as index:
    ...     first = index.search(os.path.join(folder, "0.png"), n=3, skip_self=False)  # 0.png itself too
    ...     again = index.search([first[0].image_id, first[1].image_id], n=3, negative=[first[2].image_id])
    >>> [r.rank for r in again]
    [1, 2, 3]
    """

    def __init__(self, store: Store, ranking: dict[str, Any] | None = None, tuning: Tuning = Tuning()) -> None:
        self._store = store
        self._ranking = dict(ranking or {})
        self._tuning = tuning
        self._engine: Engine | None = None
        self._exact: Engine | None = None  # a very large index's engine that reads every histogram
        self._last: Engine | None = None  # the engine loaded last, whose lookup table a reload may keep
        self._root: tuple[np.ndarray, np.ndarray] | None = None  # (similarity, its square root) for explain
        self._typical: tuple[Engine, np.ndarray] | None = None  # (engine, its typical distances)
        self._experiments: Engine | None = None  # the in-memory engine of full_rankings
        # The last duplicates report and what it was made for ((tier, threshold), data_version): all pairs of a
        # large index take a minute, and a web page asks for the same report again and again.
        self._duplicates: tuple[tuple[int, float], int, DuplicateReport] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False, read_only: bool = False,
             ranking: dict[str, Any] | None = None, tuning: Tuning | None = None) -> Index:
        """Open the index database at ``path``.

        Parameters
        ----------
        path : the database file; ``~`` is expanded
        create : make the database if it does not exist
        read_only : open it so that nothing can be written through this Index (a server's), and so that it may be
            used from any one thread at a time; it still sees what other connections commit
        ranking : ranking settings (``power``, ``kernel``, ``sigma``) overriding the stored ones for searches
        tuning : batch sizes and thresholds (results do not depend on them); None: ``DEFAULT_TUNING``

        Raises
        ------
        DatabaseError
            no database there (and not ``create``), or one cbir cannot read
        """
        return cls(Store.open(os.path.expanduser(os.fspath(path)), create=create, read_only=read_only), ranking,
                   tuning or DEFAULT_TUNING)

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
            settings: dict[str, Any] | None = None, rebuild: bool = False, exclude: Sequence[str] = (),
            include_hidden: bool = False, progress: Progress | None = None,
            codebook_progress: Progress | None = None, workers: int | None = None, cluster: str | None = None,
            ship_bytes: bool = False, search_cache: bool = True,
            cache_progress: Progress | None = None) -> IndexReport:
        """Index the image files under ``paths`` (folders are searched recursively), incrementally: new and changed
        files are read, unchanged ones skipped, files gone from those folders forgotten.

        Parameters
        ----------
        paths : a folder or file, or a list of them; ``~`` is expanded
        settings : :class:`cbir.Settings` fields to use (a first run) or change (ranking fields any time; histogram
            fields with ``rebuild``)
        rebuild : learn the codebook again, from every indexed image and those under ``paths``, and recompute
            every histogram, wherever its file is (refused when some indexed files are missing: :meth:`prune`)
        exclude : glob patterns of file and folder names (or paths relative to a folder given) to leave out
        include_hidden : also index hidden files and folders (names starting with ".") and system folders such as
            Synology's ``@eaDir`` thumbnails, skipped by default
        progress : callable(done, total), called as files are processed
        codebook_progress : callable(done, total), called as the sample the codebook is learned from is read
        workers : processes that read and describe files (the result is the same with any number); None: one per
            CPU core, as the command line does
        cluster : read and describe them on a Dask cluster instead: a scheduler's address (``"tcp://host:8786"``)
            or ``"local:N"`` for N worker processes on this machine; the result is the same. Needs
            ``pip install 'cbir[cluster]'`` (docs/scaling.md)
        ship_bytes : with ``cluster``, read the files here and send their bytes (the workers need not see them)
        search_cache : afterwards bring a large index's search cache, or a very large index's vector index, up to
            date (:meth:`cache_for_search`, with ``cache_progress`` and ``workers`` threads); Ctrl-C there sets
            ``report.interrupted``: no new file is kept (the old one stays, unused once out of date)

        Returns
        -------
        IndexReport
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        roots = [os.path.expanduser(os.fspath(p)) for p in paths]
        report = index_paths(self._store, roots, settings, rebuild=rebuild, progress=progress,
                             codebook_progress=codebook_progress, workers=workers or default_workers(),
                             cluster=cluster, ship_bytes=ship_bytes, tuning=self._tuning, exclude=tuple(exclude),
                             include_hidden=include_hidden)
        self._changed()
        if search_cache and not report.interrupted:
            try:
                self.cache_for_search(cache_progress, workers=workers or default_workers())
            except KeyboardInterrupt:  # the files are renamed into place only when whole: the old ones stay
                report.interrupted = True
        return report

    def remove(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, dry_run: bool = False
               ) -> RemovalReport:
        """Forget indexed files: those named, and every one under the folders named, on disk or not (``~``
        expanded). ``dry_run``: report what would be forgotten, change nothing.

        Raises
        ------
        CbirError
            a path names nothing the index holds (then nothing is forgotten)
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return self._forgot(remove_paths(self._store, [os.path.expanduser(os.fspath(p)) for p in paths], dry_run))

    def prune(self, *, dry_run: bool = False) -> RemovalReport:
        """Forget every indexed file that is missing on disk (a renamed folder, a deleted photo). ``dry_run``:
        report what would be forgotten, change nothing. A folder on a drive or share that is not mounted looks
        missing too: look at a dry run first."""
        return self._forgot(prune(self._store, dry_run))

    def _changed(self) -> None:
        """This Index wrote to the database: what it derived from it is out of date (another connection's commits
        show in ``data_version`` instead)."""
        self._engine = self._duplicates = None

    def _forgot(self, report: RemovalReport) -> RemovalReport:
        if not report.dry_run and (report.images or report.failures):
            self._changed()
            self.cache_for_search()
        return report

    def cache_for_search(self, progress: Progress | None = None, workers: int = 1) -> bool:
        """Bring what a large index's searches read beside the database up to date: the search cache
        (:mod:`cbir.index.search_cache`) or, for a very large index, the vector index
        (:mod:`cbir.index.vector_index`, built with ``workers`` threads). Returns whether a new file was written."""
        self._changed()
        written = search_cache.refresh(self._store, self._tuning, progress)
        return vector_index.refresh(self._store, self._tuning, progress, threads=workers) or written

    # --- searching --------------------------------------------------------------------------------------------
    def _loaded(self, exact: bool = False) -> Engine:
        """The loaded engine (loaded on first use; :meth:`search_vectors` loads it again when another connection
        has committed since). ``exact``: the one that reads every histogram, for a very large index whose
        default engine takes candidates from its vector index."""
        if self._engine is None:
            self._engine = self._last = load_engine(self._store, self._ranking, tuning=self._tuning,
                                                    previous=self._last)
            self._exact = None
        if not exact or not self._engine.approximate:
            return self._engine  # an index searched exactly anyway: one engine serves both
        if self._exact is None:
            self._exact = load_engine(self._store, self._ranking, tuning=self._tuning, previous=self._engine,
                                      exact=True)
        return self._exact

    @property
    def settings(self) -> Settings:
        """The :class:`cbir.Settings` searches use: the stored ones with this index's ranking overrides (read from
        the database when the histograms are not loaded)."""
        if self._engine is not None:
            return self._engine.settings
        meta = self._store.meta()
        if "settings" not in meta:
            raise DatabaseError(f"{self._store.path} has no codebook yet", remedy=Remedy.ADD)
        return Settings.from_dict(meta["settings"]).with_changes(**self._ranking)

    def __len__(self) -> int:
        """Images a search ranks."""
        return len(self._loaded().ids)

    def histogram(self, image: np.ndarray) -> np.ndarray:
        """Histogram of ``image (H, W, 3) uint8`` with this index's codebook, as the index would store it:
        ``(B*K,) float32``."""
        engine = self._loaded()
        return self._store.stored_form(histogram(check_image(image), engine.lut, len(engine.codebook),
                                                 engine.settings.layout))

    def query_vector(self, query: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
        """Histogram of a query given as a path or an image array, decoded as indexed images are."""
        if isinstance(query, (str, os.PathLike)):
            query = read_image(os.path.expanduser(os.fspath(query)), min_side=self._loaded().settings.min_side)
        return self.histogram(query)

    def colour_vector(self, colours: Sequence[TargetColour]) -> np.ndarray:
        """Histogram of a colour target (from :func:`cbir.parse_target`) with this index's codebook, ``(B*K,)
        float32``: each colour's share on the codebook colour its pixels are counted as, the rest spread over the
        collection's codebook shares, the same in every block. For drawing a colour query's make-up and explaining
        results against it by the quadratic form; colour queries are ranked by :meth:`search_colours`."""
        engine = self._loaded()
        background = np.array([row["share"] for row in self._store.codebook_rows()], np.float64)
        # in stored form, so that a picture painted in exactly these colours and shares is at distance 0
        return self._store.stored_form(target_histogram(np.array([c.rgb for c in colours], np.uint8),
                                                        [c.share for c in colours], engine.lut, background,
                                                        n_blocks(engine.settings.layout)))

    def search(self, query: Example | Sequence[Example], n: int = 10, *, negative: Sequence[Example] = (),
               skip_self: bool = True, exact: bool = False) -> list[Result]:
        """Rank the indexed images for a query; ``n=0``: all.

        An example is an image file (a path), an image (an ``(H, W, 3) uint8`` array), an indexed image (its id, an
        int, as in :attr:`Result.image_id`) or a colour query (a list of :class:`cbir.TargetColour`, from
        :func:`cbir.parse_target`). ``query`` is one example, or a list of examples ranked together: one ranking
        for the set. ``negative`` lists examples the ranking should be unlike.

        One example without negatives ranks by the distance to it (a colour query as :meth:`search_colours` does;
        ``skip_self``: a query file that this index holds is left out of its own results, where it would come first
        at distance 0). Otherwise the examples make one new query point (:mod:`cbir.core.feedback`): the ranking is
        by the exact quadratic-form distance to that point (the distances are to the point, not to any one
        example), and it costs what a one-example query costs. This is also relevance feedback: after a search for
        ``q``, ``index.search([q, *liked_ids], negative=disliked_ids)`` ranks again with the results the user
        marked, by their ``image_id``.

        Raises
        ------
        DecodeError
            an example file cannot be read as an image
        ValueError
            an example of no known kind, an id no indexed image has, or no positive example
        DatabaseError
            the index holds nothing to search, or cannot be read
        """
        positives, negatives = _examples(query), _examples(negative)
        if not positives:
            raise ValueError("give at least one example to rank like (negative examples alone rank nothing)")
        if len(positives) == 1 and not negatives and not isinstance(positives[0], int):
            example = positives[0]
            if not isinstance(example, (str, os.PathLike, np.ndarray)):
                return self.search_colours(example, n)
            own = self.image_id(example) if skip_self and isinstance(example, (str, os.PathLike)) else None
            return self.search_vectors([self.query_vector(example)], n, exclude=[() if own is None else (own,)],
                                       exact=exact)[0]
        examples = positives + negatives
        own = iter([self._example_vector(e) for e in examples if not isinstance(e, int)])
        with self._store.snapshot():
            engine = self._current(exact or n == 0)
            ids = [e for e in examples if isinstance(e, int)]
            stored = iter(engine.backend.vectors[engine.rows_of(ids)] if ids else [])
            histograms = np.asarray([next(stored) if isinstance(e, int) else next(own) for e in examples], np.float32)
            if len(examples) == 1:  # one indexed image: the plain search, by its stored histogram
                rows, distances = engine.backend.search(histograms, n)
            else:
                points = engine.backend.transform64(histograms)
                point = engine.feedback.point(points[: len(positives)], points[len(positives) :])
                rows, distances = engine.backend.search_points(point[None], n)
            paths = engine.paths(rows[0])
        return [self._result(rank, path, float(d), int(engine.ids[row]))
                for rank, (row, d, path) in enumerate(zip(rows[0], distances[0], paths), 1)]

    def _example_vector(self, example: Example) -> np.ndarray:
        """Histogram of an example that is not an indexed image's id."""
        if isinstance(example, (str, os.PathLike, np.ndarray)):
            return self.query_vector(example)
        return self.colour_vector(example)

    def image_id(self, path: str | os.PathLike[str]) -> int | None:
        """The id of an indexed file given by its path (from the caller's working directory, ``~`` expanded), or
        None when the index does not hold it."""
        return self._store.image_id(self._store.stored_path(os.path.expanduser(os.fspath(path))))

    def search_colours(self, colours: Sequence[TargetColour], n: int = 10) -> list[Result]:
        """Rank the indexed images for a colour query (QBIC's colour-percentage query), e.g.
        ``index.search_colours(parse_target(["#1e90ff:40", "white:20"]))``: the pictures that lack least of the
        requested colours first (see :mod:`cbir.core.colour_query`). ``Result.distance`` is the share missing (0:
        every colour is there in at least its share) and ``Result.found`` each colour's share found."""
        wanted = np.array([c.share for c in colours], np.float64)
        with self._store.snapshot():
            engine = self._current()
            near = near_colours(self._codebook_lab(engine), np.array([c.lab for c in colours]))
            missing, found = missing_shares(engine.picture_shares, near, wanted)
            rows = rank_colour_matches(missing, found, n)
            stored = engine.paths(rows)
        return [Result(rank, self._store.disk_path(path), float(missing[row]), int(engine.ids[row]), path,
                       tuple(float(f) for f in found[row]))
                for rank, (row, path) in enumerate(zip(rows, stored), 1)]

    def colour_matches(self, colours: Sequence[TargetColour]) -> list[ColourMatch]:
        """For each requested colour, the nearest colour of this index's codebook and how far it is: a colour far
        from every codebook colour (``delta_e`` over :data:`cbir.core.colour_query.SIMILAR`) cannot be told apart
        from that nearest one, since histograms only count codebook colours."""
        lab = self._codebook_lab(self._loaded())
        rgb, _ = self.codebook_colours()
        matches = []
        for colour in colours:
            distances = np.sqrt(((lab - colour.lab) ** 2).sum(1))
            nearest = int(distances.argmin())
            matches.append(ColourMatch(colour, "#%02x%02x%02x" % tuple(int(v) for v in rgb[nearest]),
                                       float(distances[nearest])))
        return matches

    @staticmethod
    def _codebook_lab(engine: Engine) -> np.ndarray:
        codebook = engine.codebook if engine.settings.space == "lab" else srgb_to_lab(engine.codebook)
        return np.asarray(codebook, np.float64)

    def search_vectors(self, vectors: Sequence[np.ndarray] | np.ndarray, n: int = 10, *,
                       exclude: Sequence[Sequence[int]] | None = None, exact: bool = False) -> list[list[Result]]:
        """Rank the indexed images for each of several histograms: a list of rankings, one per histogram.
        ``exclude``: for each histogram, image ids to leave out of its ranking (e.g. the query's own file).

        Scores, re-scoring and paths are read in one snapshot of the database, the index loaded again first if
        another connection committed since it was loaded (an index run adding photos meanwhile).

        The distances are always exact. A very large index (``Tuning.vector_index_bytes``) takes each query's
        candidates from its vector index when that is up to date (a few milliseconds; a true neighbour can be
        missed, docs/scaling.md); with ``exact``, for ``n=0``, or while the vector index is out of date, it reads
        every histogram instead (minutes at ten million images; see :meth:`vector_index_state`).
        """
        exclude = [frozenset(ids) for ids in exclude] if exclude is not None else [frozenset()] * len(vectors)
        if len(exclude) != len(vectors):
            raise ValueError(f"exclude must hold one list of ids per vector: {len(exclude)} for {len(vectors)}")
        with self._store.snapshot():
            engine = self._current(exact or n == 0)
            # Enough more results that n remain once the excluded ones are dropped.
            more = max(map(len, exclude), default=0)
            rows, distances = engine.backend.search(np.asarray(vectors, np.float32), n and n + more)
            kept = [[(row, d) for row, d in zip(r, dist) if int(engine.ids[row]) not in skip][: n or None]
                    for r, dist, skip in zip(rows, distances, exclude)]
            flat = [row for ranking in kept for row, _ in ranking]
            stored = iter(engine.paths(np.array(flat, np.int64)) if flat else [])
        return [[self._result(rank, next(stored), float(d), int(engine.ids[row]))
                 for rank, (row, d) in enumerate(ranking, 1)] for ranking in kept]

    def _current(self, exact: bool = False) -> Engine:
        """The engine (``exact``: see :meth:`_loaded`), inside a snapshot of the database: loaded again first if
        another connection committed since it was loaded (an index run adding photos meanwhile), refused if that
        changed the codebook."""
        before = self._engine
        if before is not None and before.version != self._store.data_version():
            self._engine = None  # an index run added or removed photos: search what is there now
        engine = self._loaded(exact)
        if before is not None and engine is not before and not np.array_equal(engine.codebook, before.codebook):
            raise DatabaseError(f"{self._store.path} was rebuilt with a new codebook during this query; run it again")
        return engine

    def _result(self, rank: int, stored: str, distance: float, image_id: int) -> Result:
        return Result(rank, self._store.disk_path(stored), distance, image_id, stored)

    # --- copies -----------------------------------------------------------------------------------------------
    def duplicates(self, *, tier: int = 3, threshold: float = 1.0, progress: Progress | None = None
                   ) -> DuplicateReport:
        """Group the indexed photos that are copies of each other, in tiers: 1 identical files, 2 the same photo
        saved again (resized, recompressed, converted, rotated, mirrored), 3 near-duplicates (bursts, light crops,
        small edits). Reads the database only: no file is deleted, moved or written. The report is kept: asked for
        again with the same arguments while the database is unchanged, it is returned at once.

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
        version = self._store.data_version()  # read first: a commit during the comparison makes the next call redo it
        if self._duplicates is not None and self._duplicates[:2] == ((tier, threshold), version):
            return self._duplicates[2]
        report = find_duplicates(self._store, tier=tier, threshold=threshold, tuning=self._tuning, progress=progress)
        self._duplicates = (tier, threshold), version, report
        return report

    # --- what an index holds ----------------------------------------------------------------------------------
    def vector_index_state(self) -> str:
        """``"none"`` (the index is searched exactly: small enough), ``"current"`` (searches take candidates from an
        up-to-date vector index), ``"outdated"`` (it needs one, and it is missing or out of date: searches read
        every histogram until ``Index.add`` or ``cache_for_search`` brings it up to date) or ``"unavailable"``
        (it needs one, and usearch, the ``cbir[scale]`` extra, is not installed: searches read every histogram)."""
        engine = self._loaded()
        if engine.approximate:
            return "current"
        if not engine.outdated:
            return "none"
        return "outdated" if ann.available() else "unavailable"

    def info(self) -> dict[str, Any]:
        """Counts, settings, codebook and size of the database, as a dict of plain values."""
        store = self._store
        meta = store.meta()
        size = sum(os.path.getsize(store.path + suffix) for suffix in ("", "-wal")
                   if os.path.exists(store.path + suffix))
        with store.snapshot():
            found = vector_index.header(store)
            current = vector_index.is_current(store, found)
        return {
            "database": store.path,
            "schema_version": meta.get("schema_version"),
            **store.counts(),
            "settings": meta.get("settings"),
            "codebook": [{"hex": r["hex"], "share": r["share"]} for r in store.codebook_rows()],
            # how many images the codebook was learned from, and when (None: made by an older cbir)
            "codebook_images": meta.get("codebook_images"),
            "codebook_learned_at": meta.get("codebook_created"),
            # indexed images awaiting a histogram under the current codebook (an interrupted rebuild)
            "pending": len(store.pending_images()),
            # rows of the search's transformed matrix kept for opening fast (large indexes only), or None
            "search_cache_rows": (search_cache.header(store) or {}).get("rows"),
            # rows of the vector index file beside a very large index, whether current or not, or None; and whether
            # it describes the database as it is (else searches read every histogram until the next cbir index)
            "vector_index_rows": (found or {}).get("rows"),
            "vector_index_current": current,
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

    def full_rankings(self, image_ids: Sequence[int] | np.ndarray, *, distance: str = "qfd",
                      among: Sequence[int] | np.ndarray | None = None,
                      relevant: Sequence[Sequence[int]] | None = None,
                      not_relevant: Sequence[Sequence[int]] | None = None) -> Iterator[np.ndarray]:
        """For each of ``image_ids``, the ids of the searchable images ranked best first by ``distance`` (one of
        ``cbir.core.backends.DISTANCES``), the image itself included: what retrieval experiments measure.

        among : ids to rank (default every searchable image)
        relevant, not_relevant : relevance feedback (``qfd`` only): for each query, ids marked relevant and not
            relevant; the query is then ranked as :meth:`search` ranks ``[query, *relevant]`` with ``negative=
            not_relevant`` (with neither, as the image alone)

        Loads the raw histograms into memory at once (every distance but the quadratic form compares them
        directly). The quadratic form ranks blocks of queries at once, each block one float64 matrix product,
        in exactly the order of the exact distances (:meth:`cbir.core.backends.QuadraticFormSearch.full_rankings`);
        the others rank one query at a time as it is taken from the iterator.
        """
        engine = self._in_memory()
        search = engine.comparison(distance)
        rows = engine.rows_of(image_ids)
        among_rows = np.arange(len(engine.ids)) if among is None else np.sort(engine.rows_of(among))
        feedback = relevant is not None or not_relevant is not None
        if distance != "qfd":
            if feedback:
                raise ValueError("relevance feedback ranks by the quadratic form only (distance='qfd')")
            kept = np.zeros(len(engine.ids), bool)
            kept[among_rows] = True
            return (engine.ids[ranked[kept[ranked]]] for ranked in
                    (search.search(engine.backend.vectors[row][None], 0)[0][0] for row in rows))
        if not feedback:
            return (engine.ids[ranked] for ranked in search.full_rankings(engine.backend.vectors[rows],
                                                                            rows=among_rows))
        relevant = [()] * len(rows) if relevant is None else list(relevant)
        not_relevant = [()] * len(rows) if not_relevant is None else list(not_relevant)
        if not len(relevant) == len(not_relevant) == len(rows):
            raise ValueError(f"relevant and not_relevant must hold one list of ids per query ({len(rows)})")
        return self._feedback_rankings(engine, rows, among_rows, relevant, not_relevant)

    def _in_memory(self) -> Engine:
        """An engine with the raw histograms in memory: the loaded one if it has them and is current, else one
        loaded for experiments and kept (feedback rounds rank the same images again and again)."""
        version = self._store.data_version()
        for engine in (self._engine, self._experiments):
            if engine is not None and engine.version == version and isinstance(engine.backend.vectors, np.ndarray):
                return engine
        self._experiments = load_engine(self._store, self._ranking, tuning=self._tuning, in_memory=True)
        return self._experiments

    def _feedback_rankings(self, engine: Engine, rows: np.ndarray, among_rows: np.ndarray,
                           relevant: list[Sequence[int]], not_relevant: list[Sequence[int]],
                           block: int = 256) -> Iterator[np.ndarray]:
        backend, model = engine.backend, engine.feedback
        liked = [np.r_[row, engine.rows_of(more)] for row, more in zip(rows, relevant)]
        disliked = [engine.rows_of(less) for less in not_relevant]
        # Every example in the eigenbasis of the model once: each query's point is then cheap to make.
        needed = np.unique(np.concatenate([rows, *liked, *disliked]).astype(np.int64))
        inside = model.to_basis(backend.transform64(backend.vectors[needed]))
        where = dict(zip(needed.tolist(), range(len(needed))))
        for start in range(0, len(rows), block):
            queries = range(start, min(start + block, len(rows)))
            plain = [q for q in queries if len(liked[q]) == 1 and not len(disliked[q])]
            moved = [q for q in queries if len(liked[q]) > 1 or len(disliked[q])]
            ranked = {}
            if plain:
                ranked.update(zip(plain, backend.full_rankings(backend.vectors[rows[plain]], rows=among_rows)))
            if moved:
                points = model.from_basis([model.point_in_basis(inside[[where[r] for r in liked[q]]],
                                                                inside[[where[r] for r in disliked[q]]])
                                           for q in moved])
                ranked.update(zip(moved, backend.full_rankings(points=points, rows=among_rows)))
            for q in queries:
                yield engine.ids[ranked.pop(q)]


    # --- what a browser of the index needs --------------------------------------------------------------------
    def _image_info(self, row: tuple) -> ImageInfo:
        image_id, stored, size, mtime_ns, sha256, width, height = row
        return ImageInfo(image_id, self._store.disk_path(stored), stored, size, mtime_ns, sha256, width, height)

    def images(self, image_ids: Sequence[int]) -> list[ImageInfo]:
        """The indexed images among ``image_ids``, in that order (ids of no indexed image are left out)."""
        return [self._image_info(row) for row in self._store.image_rows(image_ids)]

    def folder(self, folder: str = "", offset: int = 0, limit: int = 100) -> Folder:
        """One page of a folder of the index (a stored path: relative to the database's folder when inside it;
        "" for the top, "/" for the root of absolute paths); each costs what that folder holds, not the index."""
        with self._store.snapshot():
            return Folder(folder, self._store.subfolders(folder),
                          [self._image_info(row) for row in self._store.image_rows_in(folder, offset, limit)],
                          self._store.count_in(folder))

    def image_count(self) -> int:
        """Images in the index now (without loading the histograms)."""
        return self._store.counts(["images"])["images"]

    def layout_vector(self, cells: Sequence[Sequence[TargetColour] | None]) -> np.ndarray:
        """Histogram of a painted layout (QBIC's sketch query): one colour target (from :func:`cbir.parse_target`)
        or None (any colour) per region of this index's layout, row by row: ``(B*K,) float32``. See
        :func:`cbir.core.colour_query.layout_histogram`."""
        engine = self._loaded()
        background = np.array([row["share"] for row in self._store.codebook_rows()], np.float64)
        targets = [None if not cell else (np.array([c.rgb for c in cell], np.uint8), [c.share for c in cell])
                   for cell in cells]
        return layout_histogram(targets, engine.lut, background, engine.settings.layout)

    def explain(self, vector: np.ndarray, image_ids: Sequence[int]) -> Explanation:
        """The distances of the images ``image_ids`` to a query histogram ``vector (B*K,)``, split exactly by block
        and colour: an :class:`Explanation`."""
        backend = self._loaded().backend
        if self._root is None or self._root[0] is not backend.similarity:
            self._root = (backend.similarity, square_root(backend.similarity))
        terms, signed = distance_terms(self.histograms(image_ids), vector, self._root[1], power=backend.power,
                                       weights=backend.weights)
        return Explanation(terms, signed, backend.weights)

    def typical_distances(self, pairs: int = 1000, seed: int = 0) -> np.ndarray:
        """Distances between ``pairs`` random pairs of indexed images, sorted: ``(pairs,) float64`` (empty for
        fewer than two images): what "near" means in this collection. From the search's float32 vectors, made
        once per load of the index."""
        engine = self._loaded()
        if self._typical is None or self._typical[0] is not engine:
            transformed = engine.transformed
            distances = np.zeros(0)
            if len(transformed) > 1:
                rng = np.random.default_rng(seed)
                a = rng.integers(0, len(transformed), pairs)
                b = (a + rng.integers(1, len(transformed), pairs)) % len(transformed)  # never a == b
                distances = np.sort(np.linalg.norm(transformed[a] - transformed[b], axis=1)).astype(np.float64)
            self._typical = (engine, distances)
        return self._typical[1]


def _examples(given: Example | Sequence[Example]) -> list[Example]:
    """The examples in ``given``: one example, or a list or tuple of them (a list of TargetColour is one colour
    query). Ids become int; anything of no known kind is refused."""
    def one(item):
        if isinstance(item, (bool, np.bool_)):
            raise ValueError(f"{item!r} is not an example: give a path, an image array, an image id or colours")
        if isinstance(item, (int, np.integer)):
            return int(item)
        if isinstance(item, (str, os.PathLike, np.ndarray)):
            return item
        if isinstance(item, (list, tuple)) and item and all(isinstance(c, TargetColour) for c in item):
            return list(item)
        raise ValueError(f"{item!r} is not an example: give a path, an image array, an image id or colours "
                         "(cbir.parse_target)")

    if isinstance(given, (list, tuple)) and not (given and all(isinstance(c, TargetColour) for c in given)):
        return [one(item) for item in given]
    return [one(given)]
