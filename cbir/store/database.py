"""The index database: SQLite through sqlite-utils.

Tables: ``meta`` (schema version and every setting that shapes a histogram), ``codebook`` (one row per colour),
``images`` (path, size, mtime, content hash, dimensions), ``histograms`` (one BLOB per image: the cube roots of
the shares in 65,535 steps, the non-zero ones only, see :mod:`cbir.store.codec`; float32 values in databases of
schema versions 1 and 2, until a rebuild), ``failures`` (path and reason) and ``structure_thumbnails`` (a 16x16
grey thumbnail per image, what finding duplicates compares besides colours; databases made before it get the table
at their next index run, and their images get thumbnails as that run reads them again). The journal is WAL, so
queries can read while an index run writes; each batch of images is written in one transaction, so an interrupted
run leaves whole images only.

Derived files beside the database (the search cache) are valid for one state of it: triggers set
``meta.search_cache_generation`` to a new random token whenever a histogram, an image id or the codebook changes
(by cbir or any other program), and :meth:`Store.change_state` names the state as ``(database id, token)``.
Outdating a derived file costs nothing: it records the state it was made from, and is ignored in any other. A
random token, not a counter: a backup restored and changed again cannot reach a state some old file was made for.

Each histogram row records the generation of the codebook it was made with (``histograms.codebook``, schema 2);
``meta.codebook_generation`` is the current one. Rows of another generation (a writer that bypassed the lock) are
left out of searches, reported by checks and made again by the next index run.

A rebuild is written beside the index, in tables of its own (``rebuild_images``...), and takes the index's place in
one transaction at its end (:meth:`Store.begin_rebuild`, :meth:`Store.finish_rebuild`; in the newest schema's form): until then queries read
the old index, and a rebuild that stops (Ctrl-C, a full disk, a kill) leaves the old index as it was.

Reading never needs write access: a database is opened read-only until :meth:`Store.lock_for_writing`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from ..errors import BusyError, DatabaseError, Remedy
from . import codec
from .lock import WriterLock

SCHEMA_VERSION = 3
# How each schema version keeps a histogram: 1 and 2 as float32 values, 3 as uint16 steps (cbir.store.codec);
# 2 added histograms.codebook, the codebook generation of each row. Every version is read; a version 1 database
# is upgraded to 2 by the first writer (one ALTER), and to 3 by a rebuild (which writes every histogram again):
# a database never mixes the two ways.
HISTOGRAM_FORMATS = {1: "float32", 2: "float32", 3: "steps"}
READABLE_VERSIONS = tuple(HISTOGRAM_FORMATS)
TABLES = {"meta", "codebook", "images", "histograms", "failures"}
# the tables a run writes, and a rebuild replaces; structure_thumbnails came later (no schema bump: a database
# made before it gets the table from its next writer, and its images get thumbnails as a run reads them again)
_WRITTEN = ("images", "histograms", "failures", "codebook", "structure")
_MAIN = {**{name: name for name in _WRITTEN}, "structure": "structure_thumbnails"}
_ASIDE = {name: f"rebuild_{_MAIN[name]}" for name in _WRITTEN}
STRUCTURE_BYTES = 256  # a 16 x 16 uint8 thumbnail, what finding duplicates compares besides colours
# Changes to what the search reads set a new random state token in the same transaction. Names, tables and events
# are fixed here, never input. An image's size or mtime being brought up to date does not change what the search
# reads. (The first triggers, named search_cache_after_*, counted instead: they are replaced when met.)
_CHANGE_TRIGGERS = {
    "changes_after_histogram_insert": "AFTER INSERT ON histograms",
    "changes_after_histogram_update": "AFTER UPDATE ON histograms",
    "changes_after_histogram_delete": "AFTER DELETE ON histograms",
    "changes_after_image_id_update": "AFTER UPDATE OF id ON images",
    "changes_after_image_delete": "AFTER DELETE ON images",
    "changes_after_codebook_insert": "AFTER INSERT ON codebook",
    "changes_after_codebook_update": "AFTER UPDATE ON codebook",
    "changes_after_codebook_delete": "AFTER DELETE ON codebook",
}
_COUNTING_TRIGGERS = [name.replace("changes_after_", "search_cache_after_") for name in _CHANGE_TRIGGERS]
_NEW_TOKEN = ("UPDATE meta SET value = '\"' || lower(hex(randomblob(16))) || '\"' "
              "WHERE key = 'search_cache_generation'")

# The change log (prepare_change_log): trigger name -> (event, ids logged). Fixed here, never input.
_LOG_TRIGGERS = {
    "histogram_changes_after_insert": ("AFTER INSERT ON histograms", ("new.image_id",)),
    "histogram_changes_after_update": ("AFTER UPDATE ON histograms", ("old.image_id", "new.image_id")),
    "histogram_changes_after_delete": ("AFTER DELETE ON histograms", ("old.image_id",)),
}


def _sqlite_errors(method):
    """Turn an SQLite error inside a Store method (a damaged file, a full disk, a read-only database) into a
    DatabaseError (BusyError when the database stayed locked) naming the database, instead of a traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as error:
            raise _database_error(self.path, error) from None

    return wrapper


def _database_error(path, error):
    """The DatabaseError that says what an SQLite error means for the user."""
    code = getattr(error, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_BUSY:
        return BusyError(f"{path} is locked by another process ({error}); try again")
    if code == sqlite3.SQLITE_FULL or (code is not None and code & 0xFF == sqlite3.SQLITE_IOERR
                                       and "full" in str(error)):
        return DatabaseError(f"{path}: no space left on the disk ({error})", remedy=Remedy.FREE_SPACE)
    if code is not None and code & 0xFF == sqlite3.SQLITE_READONLY:
        return DatabaseError(f"{path} cannot be written here ({error})", remedy=Remedy.WRITABLE_COPY)
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
        return DatabaseError(f"{path}: the disk failed a read or write ({error}: a full disk, a file size limit or "
                             "a failing device)", remedy=Remedy.FREE_SPACE)
    return DatabaseError(f"{path}: {error}", remedy=Remedy.REBUILD_IF_DAMAGED)


def _connect_read_only(path, any_thread=False):
    """A read-only connection to an existing database (``any_thread``: usable from any one thread at a time, and
    ``query_only``); a database in WAL mode that this process may not write beside (a read-only mount, another
    user's folder, and no ``-shm`` file) is opened ``immutable``, when it has no pending ``-wal`` content that
    this would miss."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    conn = _connect(f"{uri}?mode=ro", any_thread)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as error:
        conn.close()
        try:
            pending = os.path.getsize(path + "-wal") > 0
        except OSError:
            pending = False
        if pending:
            raise DatabaseError(f"{path} cannot be read here: it has changes in {path}-wal that only a process "
                                f"allowed to write in its folder can read ({error})") from None
    return _connect(f"{uri}?mode=ro&immutable=1", any_thread)


def _connect(uri, any_thread):
    conn = sqlite3.connect(uri, uri=True, check_same_thread=not any_thread)
    if any_thread:
        conn.execute("PRAGMA query_only = 1")
    return conn


def integrity_check(path: str | os.PathLike) -> list[str] | None:
    """Messages of ``PRAGMA integrity_check`` on any SQLite file, opened read only (``["ok"]`` when sound), or
    None when the file is not an SQLite database at all."""
    try:
        conn = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.Error:
        return None
    finally:
        conn.close()


class Store:
    """An open index database. Use :meth:`open`; the constructor only keeps what it is given."""

    def __init__(self, db: sqlite_utils.Database, path: str, *, writable: bool = False,
                 tables: dict[str, str] | None = None) -> None:
        self.db = db
        self.path = path
        self.root = os.path.dirname(os.path.abspath(path))
        self._lock = WriterLock(path)
        self._writable = writable
        self._read_only = False  # opened read-only for good (Store.open(read_only=True))
        self._tables = tables or _MAIN  # names fixed in this module (the rebuild's are beside), never input
        self.created = False  # made by this open: not kept if closed with nothing stored in it
        self.histogram_format = HISTOGRAM_FORMATS[SCHEMA_VERSION]  # the version of a new database, or a rebuild's
        self._structure_table = False

    # --- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False, read_only: bool = False) -> Store:
        """Open the database at ``path``, read-only until :meth:`lock_for_writing`; with ``create``, make it (and its
        tables) if it does not exist; with ``read_only``, for good: nothing can be written through this connection
        (SQLite's ``query_only`` too), and it may be used from any one thread at a time (a server's thread pool)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise DatabaseError(f"{path} is a directory, not an index database", remedy=Remedy.DATABASE_FILE)
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        if not exists and not create:
            raise DatabaseError(f"no index database at {path}", remedy=Remedy.CREATE)
        try:
            db = sqlite_utils.Database(_connect_read_only(path, any_thread=read_only) if exists else path)
            db.execute("PRAGMA busy_timeout = 10000")
            store = cls(db, path, writable=not exists)
            store._read_only = read_only and exists
            names = set(db.table_names())
        except sqlite3.DatabaseError as error:
            raise DatabaseError(f"{path} is not a cbir index database ({error})") from None
        if exists and not TABLES <= names:
            db.close()
            raise DatabaseError(f"{path} is not a cbir index database (tables missing: "
                                f"{', '.join(sorted(TABLES - names))})")
        if exists:
            version = store.meta().get("schema_version")
            if version not in READABLE_VERSIONS or isinstance(version, bool):
                db.close()
                raise DatabaseError(f"{path} has schema version {version!r}; this cbir reads versions "
                                    f"{', '.join(map(str, READABLE_VERSIONS))}", remedy=Remedy.REBUILD)
            store.histogram_format = HISTOGRAM_FORMATS[version]
        else:
            store._create()
            store.created = True
        return store

    @_sqlite_errors
    def _create(self) -> None:
        self.db.enable_wal()
        with self.db.atomic():
            self.db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
            self._create_tables(_MAIN)
            self._set_meta({"schema_version": SCHEMA_VERSION, "codebook_generation": 0})

    def _create_tables(self, tables):
        db = self.db
        db[tables["codebook"]].create({"id": int, "c0": float, "c1": float, "c2": float, "hex": str, "share": float},
                                      pk="id", if_not_exists=True)
        db[tables["images"]].create({"id": int, "path": str, "size": int, "mtime_ns": int, "sha256": str,
                                     "width": int, "height": int, "indexed_at": float}, pk="id", if_not_exists=True)
        db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS idx_{tables['images']}_path ON {tables['images']} (path)")
        db[tables["histograms"]].create({"image_id": int, "vector": bytes, "codebook": int}, pk="image_id",
                                        foreign_keys=[("image_id", tables["images"], "id")], if_not_exists=True)
        db[tables["failures"]].create({"path": str, "reason": str, "size": int, "mtime_ns": int, "at": float},
                                      pk="path", if_not_exists=True)
        self._create_structure_table(tables)

    def _create_structure_table(self, tables) -> None:
        self.db[tables["structure"]].create({"image_id": int, "thumb": bytes}, pk="image_id",
                                            foreign_keys=[("image_id", tables["images"], "id")], if_not_exists=True)

    def has_structure_table(self) -> bool:
        """Whether the database has the structure thumbnails table (one made before it gets it from its next
        writer)."""
        if not self._structure_table:  # once there, never dropped by cbir (a rebuild puts its own in its place)
            self._structure_table = self.db[self._tables["structure"]].exists()
        return self._structure_table

    def close(self) -> None:
        """Close the database. One this open created is removed again when nothing was ever stored in it (a first
        index run that failed, say): a failed command leaves no file behind."""
        self.unlock()
        empty = self.created and not self._holds_anything()
        self.db.close()
        if empty:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path + suffix)

    def _holds_anything(self) -> bool:
        try:
            return any(self.db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
                       for table in ("codebook", "images", "failures"))  # fixed names, never input
        except sqlite3.Error:
            return True  # when in doubt, keep the file

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one writer at a time --------------------------------------------------------------------------------
    def lock_for_writing(self) -> None:
        """Take the writer lock or raise BusyError at once (see :class:`cbir.store.lock.WriterLock`); then open
        the database for writing, upgrade a version 1 database, and drop what a rebuild that stopped left."""
        if self._read_only:
            raise DatabaseError(f"{self.path} was opened read-only; nothing can be written through it")
        self._lock.acquire()
        try:
            if not self._writable:
                self.db.close()
                self.db = sqlite_utils.Database(self.path)
                self.db.execute("PRAGMA busy_timeout = 10000")
                self._writable = True
            self._upgrade()
            if self.rebuild_left_behind():
                self.discard_rebuild()
        except BaseException:
            self._lock.release()
            raise

    def unlock(self) -> None:
        self._lock.release()

    @_sqlite_errors
    def _upgrade(self) -> None:
        if not self.has_structure_table():
            with self.db.atomic():
                self._create_structure_table(_MAIN)
        if self.meta().get("schema_version") != 1:
            return
        with self.db.atomic():  # existing rows are of the codebook there is: generation 0
            self.db.execute("ALTER TABLE histograms ADD COLUMN codebook INTEGER NOT NULL DEFAULT 0")
            self._set_meta({"schema_version": 2, "codebook_generation": 0})  # float32 histograms as before

    def _has_generations(self):
        return any(row[1] == "codebook" for row in self.db.execute(f"PRAGMA table_info({self._tables['histograms']})"))

    @_sqlite_errors
    def codebook_generation(self) -> int:
        """The generation of the current codebook (each replacement adds one); histograms of another are stale."""
        generation = self.meta().get("codebook_generation", 0)
        if not isinstance(generation, int) or isinstance(generation, bool):
            raise DatabaseError(f"{self.path}: the codebook generation is not a number", remedy=Remedy.REBUILD)
        return generation

    # --- a rebuild, beside the index until it is complete ---------------------------------------------------
    @_sqlite_errors
    def begin_rebuild(self, colours: np.ndarray, hexes: list[str], shares: np.ndarray, meta: dict[str, Any]
                      ) -> Store:
        """Start a rebuild with a new codebook: a Store of the same database that writes to tables of its own,
        beside the index's, which stays as it is (to queries too) until :meth:`finish_rebuild`. Needs the writer
        lock."""
        generation = self.codebook_generation() + 1
        with self.db.atomic():
            self._drop_tables(_ASIDE)
            self._create_tables(_ASIDE)
            aside = Store(self.db, self.path, writable=True, tables=_ASIDE)
            aside._insert_codebook(colours, hexes, shares)
            self._set_meta({"rebuild": {**meta, "codebook_generation": generation, "codebook_created": time.time()}})
        return aside

    @_sqlite_errors
    def finish_rebuild(self) -> None:
        """Put the rebuilt tables in the place of the index's, with the new codebook's metadata, in one
        transaction."""
        with self.db.atomic():
            pending = self.meta()["rebuild"]
            self._drop_tables(_MAIN)
            for name in _WRITTEN:
                self.db.execute(f"ALTER TABLE {_ASIDE[name]} RENAME TO {_MAIN[name]}")
            self.db.execute(f"DROP INDEX IF EXISTS idx_{_ASIDE['images']}_path")
            self._structure_table = True
            self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_images_path ON images (path)")
            self.db.execute("DELETE FROM meta WHERE key = 'rebuild'")
            # the rebuilt histograms are in this version's form; every one changed, so no change log reaches back
            self._set_meta({**pending, "schema_version": SCHEMA_VERSION})
            self.histogram_format = HISTOGRAM_FORMATS[SCHEMA_VERSION]
            self.db.execute("DROP TABLE IF EXISTS histogram_changes")
            self.db.execute("DELETE FROM meta WHERE key = 'histogram_changes_pruned'")
            if self.db.execute("SELECT 1 FROM meta WHERE key = 'database_id'").fetchone():
                self._create_change_triggers()  # the dropped tables took theirs with them
                self.db.execute(_NEW_TOKEN)

    def discard_rebuild(self) -> None:
        """Drop the tables of a rebuild that did not finish (best effort: on a full disk this may fail too, and the
        next index run drops them)."""
        with contextlib.suppress(sqlite3.Error), self.db.atomic():
            self._drop_tables(_ASIDE)
            self.db.execute("DELETE FROM meta WHERE key = 'rebuild'")

    def rebuild_left_behind(self) -> bool:
        """Whether tables of a rebuild that stopped (a kill) are in the file; the next writer drops them."""
        return bool(set(_ASIDE.values()) & set(self.db.table_names()))

    def _drop_tables(self, tables):
        for name in ("structure", "histograms", "images", "failures", "codebook"):  # these refer to images first
            self.db.execute(f"DROP TABLE IF EXISTS {tables[name]}")

    # --- paths: relative to the database's folder when inside it, so a database moves with its photos -------
    def stored_path(self, path: str | os.PathLike) -> str:
        absolute = os.path.abspath(path)
        if absolute.startswith(self.root + os.sep):  # inside: what relpath gives, without its cost
            return absolute[len(self.root) + 1 :]
        relative = os.path.relpath(absolute, self.root)
        return absolute if relative.startswith(os.pardir) else relative

    def disk_path(self, stored: str) -> str:
        return stored if os.path.isabs(stored) else os.path.join(self.root, stored)

    # --- meta and codebook -----------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        try:
            return {row["key"]: json.loads(row["value"]) for row in self.db["meta"].rows}
        except (sqlite3.DatabaseError, ValueError, TypeError) as error:  # TypeError: a value is not text
            raise DatabaseError(f"{self.path}: unreadable metadata ({error})") from None

    def _set_meta(self, values: dict[str, Any]) -> None:
        self.db["meta"].upsert_all([{"key": k, "value": json.dumps(v)} for k, v in values.items()], pk="key")

    @_sqlite_errors
    def set_meta(self, values: dict[str, Any]) -> None:
        with self.db.atomic():
            self._set_meta(values)

    @_sqlite_errors
    def codebook(self) -> np.ndarray | None:
        """Codebook colours ``(K, 3) float32`` in the working space, or None when there is none yet."""
        rows = list(self.db.query(f"SELECT id, c0, c1, c2 FROM {self._tables['codebook']} ORDER BY id"))
        if not rows:
            return None
        if [r["id"] for r in rows] != list(range(len(rows))):
            raise DatabaseError(f"{self.path}: codebook rows are not numbered 0..K-1", remedy=Remedy.REBUILD)
        values = [[r["c0"], r["c1"], r["c2"]] for r in rows]
        if not all(isinstance(v, (int, float)) for row in values for v in row):
            raise DatabaseError(f"{self.path}: the codebook holds values that are not numbers", remedy=Remedy.REBUILD)
        colours = np.array(values, dtype=np.float32)
        if not np.isfinite(colours).all():
            raise DatabaseError(f"{self.path}: the codebook holds NaN or infinite values", remedy=Remedy.REBUILD)
        return colours

    @_sqlite_errors
    def codebook_rows(self) -> list[dict[str, Any]]:
        """Rows of the codebook (id, c0, c1, c2, hex, share), in id order; each hex a ``#rrggbb`` colour and each
        share a finite number in 0..1, else DatabaseError (a tampered row gave tracebacks and NaN distances)."""
        rows = list(self.db.query(f"SELECT id, c0, c1, c2, hex, share FROM {self._tables['codebook']} ORDER BY id"))
        for row in rows:
            hex_ok = isinstance(row["hex"], str) and len(row["hex"]) == 7 and row["hex"][0] == "#" and all(
                c in "0123456789abcdefABCDEF" for c in row["hex"][1:])
            share = row["share"]
            share_ok = isinstance(share, (int, float)) and not isinstance(share, bool) and 0 <= share <= 1
            if not (hex_ok and share_ok):
                raise DatabaseError(f"{self.path}: codebook colour {row['id']!r} has hex {row['hex']!r} and share "
                                    f"{share!r}: not a #rrggbb colour and a share in 0..1", remedy=Remedy.REBUILD)
        return rows

    @_sqlite_errors
    def replace_codebook(self, colours: np.ndarray, hexes: list[str], shares: np.ndarray,
                         meta: dict[str, Any]) -> None:
        """Store a new codebook and the metadata it was made with, dropping every histogram of the old one (a first
        index run; a rebuild goes through :meth:`begin_rebuild`)."""
        generation = self.codebook_generation() + 1
        with self.db.atomic():
            for name in ("structure", "histograms", "images", "failures", "codebook"):
                self.db.execute(f"DELETE FROM {self._tables[name]}")
            self._insert_codebook(colours, hexes, shares)
            self._set_meta({**meta, "codebook_created": time.time(), "codebook_generation": generation})

    def _insert_codebook(self, colours, hexes, shares):
        self.db[self._tables["codebook"]].insert_all(
            {"id": i, "c0": float(c[0]), "c1": float(c[1]), "c2": float(c[2]), "hex": h, "share": float(s)}
            for i, (c, h, s) in enumerate(zip(colours, hexes, shares)))

    def _generation_written(self):
        """The codebook generation of the histograms this store writes."""
        if self._tables is _ASIDE:
            return self.meta()["rebuild"]["codebook_generation"]
        return self.codebook_generation()

    # --- images ----------------------------------------------------------------------------------------------
    @_sqlite_errors
    def known_images(self) -> dict[str, tuple[int, int | None, int | None, str | None]]:
        """``{stored path: (id, size, mtime_ns, sha256)}`` of every indexed image; for an image whose histogram is
        missing or of another codebook (see the module's description) size, time and hash are None, so that an
        index run makes it again.

        Raises DatabaseError when a path is not text (a damaged or tampered database: rebuild it)."""
        t = self._tables
        current = "h.codebook = ?" if self._has_generations() else "1"
        parameters = [self._generation_written()] if self._has_generations() else []
        known = {}
        for image_id, path, size, mtime_ns, sha256, fresh in self.db.execute(
                f"SELECT i.id, i.path, i.size, i.mtime_ns, i.sha256, h.image_id IS NOT NULL AND {current} "
                f"FROM {t['images']} i LEFT JOIN {t['histograms']} h ON h.image_id = i.id", parameters):
            if not isinstance(path, str):
                raise DatabaseError(f"{self.path}: image {image_id} has a path that is not text ({path!r}); the "
                                    "database is damaged", remedy=Remedy.REBUILD)
            known[path] = (image_id, size, mtime_ns, sha256) if fresh else (image_id, None, None, None)
        return known

    @_sqlite_errors
    def pending_images(self) -> set[str]:
        """Stored paths of the indexed images that have no histogram of the current codebook (an older cbir's
        interrupted rebuild left them without one; a writer that bypassed the lock left one of another codebook):
        the next index run computes them."""
        t = self._tables
        current = "AND codebook = ?" if self._has_generations() else ""
        parameters = [self._generation_written()] if self._has_generations() else []
        return {r[0] for r in self.db.execute(f"SELECT path FROM {t['images']} WHERE id NOT IN "
                                              f"(SELECT image_id FROM {t['histograms']} WHERE 1 {current})",
                                              parameters)}

    @_sqlite_errors
    def image_id(self, stored: str) -> int | None:
        """The id of the image stored under ``stored``, or None when it is not indexed."""
        try:
            stored.encode("utf-8")
        except UnicodeEncodeError:  # a name that is not UTF-8 is never stored as such (see cbir.index.run)
            return None
        row = self.db.execute("SELECT id FROM images WHERE path = ?", [stored]).fetchone()
        return None if row is None else row[0]

    @_sqlite_errors
    def images_without_structure(self) -> set[int]:
        """Ids of the indexed images that have no structure thumbnail (indexed before cbir made them)."""
        t = self._tables
        if not self.has_structure_table():
            return {row[0] for row in self.db.execute(f"SELECT id FROM {t['images']}")}
        return {row[0] for row in self.db.execute(f"SELECT id FROM {t['images']} WHERE id NOT IN "
                                                  f"(SELECT image_id FROM {t['structure']})")}

    @_sqlite_errors
    def searchable_image_rows(self) -> list[tuple[int, str, int, int, str, int, int]]:
        """``(id, stored path, size, mtime_ns, sha256, width, height)`` of every image that has a histogram, by id."""
        return [tuple(row) for row in self.db.execute(
            "SELECT id, path, size, mtime_ns, sha256, width, height FROM images "
            "WHERE id IN (SELECT image_id FROM histograms) ORDER BY id")]

    @_sqlite_errors
    def structure_thumbnails(self, ids: Iterable[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Structure thumbnails of some images, in the order of ``ids``: ``(len(ids), 256) uint8`` and whether each
        image has one, ``(len(ids),) bool``. A thumbnail of the wrong size or type is a DatabaseError."""
        ids = np.asarray(ids, np.int64).ravel()
        thumbs = np.zeros((len(ids), STRUCTURE_BYTES), np.uint8)
        present = np.zeros(len(ids), bool)
        if not self.has_structure_table() or not len(ids):
            return thumbs, present
        row_of = {image_id: row for row, image_id in enumerate(ids.tolist())}
        for image_id, blob in self._rows_of("SELECT image_id, thumb FROM structure_thumbnails", "image_id", ids):
            row = row_of.get(image_id)
            if row is None:
                continue
            if not isinstance(blob, bytes) or len(blob) != STRUCTURE_BYTES:
                raise DatabaseError(f"{self.path}: the structure thumbnail of image {image_id} "
                                    f"({self._describe_image(image_id)}) is not {STRUCTURE_BYTES} bytes; the database "
                                    "is damaged or was made by another program", remedy=Remedy.REBUILD)
            thumbs[row] = np.frombuffer(blob, np.uint8)
            present[row] = True
        return thumbs, present

    @_sqlite_errors
    def known_failures(self) -> dict[str, dict[str, Any]]:
        """``{stored path: row}`` of every file that could not be indexed (path, reason, size, mtime_ns, at)."""
        rows = {r["path"]: r for r in self.db.query(f"SELECT * FROM {self._tables['failures']}")}
        if not all(isinstance(path, str) for path in rows):
            raise DatabaseError(f"{self.path}: a failed path is not text; the database is damaged",
                                remedy=Remedy.REBUILD)
        return rows

    @_sqlite_errors
    def write_batch(self, records: Iterable[tuple] = (), failures: Iterable[tuple] = (),
                    touched: Iterable[tuple] = (), removed: Iterable[str] = (),
                    new_paths: frozenset[str] | set[str] = frozenset()) -> None:
        """Write one batch in one transaction.

        records : (stored path, size, mtime_ns, sha256, width, height, vector[, thumb]); replaces any row of the
            path; the vector is float32 shares, or their little-endian bytes, made with the current codebook (kept as
            :meth:`stored_form` says); the structure thumbnail is 256 uint8 values or their bytes (None or left out:
            none)
        failures : (stored path, reason, size, mtime_ns)
        touched : (image id, size, mtime_ns), files whose content did not change
        removed : stored paths to forget (images and failures)
        new_paths : stored paths the caller knows have no row yet (read under the writer lock): nothing to replace,
            so their three DELETEs are skipped (a quarter of the writing time of a new image)
        """
        now = time.time()
        t = self._tables
        execute = self.db.conn.execute  # straight to sqlite3: sqlite-utils' insert() costs more than the row
        with self.db.atomic():
            generation = self._generation_written()
            for path in removed:
                self._delete_path(path)
            for path, size, mtime_ns, sha256, width, height, vector, *thumb in records:
                if path not in new_paths:
                    self._delete_path(path)
                image_id = execute(f"INSERT INTO {t['images']} (path, size, mtime_ns, sha256, width, height, "
                                   "indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (path, size, mtime_ns, sha256, width, height, now)).lastrowid
                execute(f"INSERT INTO {t['histograms']} (image_id, vector, codebook) VALUES (?, ?, ?)",
                        (image_id, self._blob(vector), generation))
                if thumb and thumb[0] is not None:
                    blob = thumb[0] if isinstance(thumb[0], bytes) else np.asarray(thumb[0], np.uint8).tobytes()
                    # REPLACE: an older cbir removing images leaves their thumbnails behind, and SQLite may reuse an id
                    execute(f"INSERT OR REPLACE INTO {t['structure']} (image_id, thumb) VALUES (?, ?)",
                            (image_id, blob))
            for image_id, size, mtime_ns in touched:
                execute(f"UPDATE {t['images']} SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, image_id))
            for path, reason, size, mtime_ns in failures:
                if path not in new_paths:
                    self._delete_path(path)
                self.db[t["failures"]].insert({"path": path, "reason": reason, "size": size, "mtime_ns": mtime_ns,
                                               "at": now}, replace=True)

    def _blob(self, vector: np.ndarray | bytes) -> bytes:
        """A histogram's BLOB in this database's format."""
        if self.histogram_format == "float32":
            return vector if isinstance(vector, bytes) else np.asarray(vector, dtype="<f4").tobytes()
        shares = np.frombuffer(vector, "<f4") if isinstance(vector, bytes) else vector
        return codec.encode(codec.quantise(shares))

    def stored_form(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors (..., D)`` shares as they read back once stored in this database: ``float32`` (rounded as
        :mod:`cbir.store.codec` says in a database of schema version 3). A query is compared in this form, as stored images are."""
        if self.histogram_format == "float32":
            return np.asarray(vectors, np.float32)
        return codec.stored_form(vectors)

    def _delete_path(self, path: str) -> None:
        t = self._tables
        if self.has_structure_table():
            self.db.execute(f"DELETE FROM {t['structure']} WHERE image_id IN (SELECT id FROM {t['images']} "
                            "WHERE path = ?)", [path])
        self.db.execute(f"DELETE FROM {t['histograms']} WHERE image_id IN (SELECT id FROM {t['images']} "
                        "WHERE path = ?)", [path])
        self.db.execute(f"DELETE FROM {t['images']} WHERE path = ?", [path])
        self.db.execute(f"DELETE FROM {t['failures']} WHERE path = ?", [path])

    # --- reading for search ----------------------------------------------------------------------------------
    @_sqlite_errors
    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the database (``PRAGMA data_version``);
        inside :meth:`snapshot` it stays that of the snapshot."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def histogram_chunks(self, dimension: int, chunk: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored histogram in image-id order, as ``(ids (n,) int64, vectors (n, dimension) float32)``
        chunks of at most ``chunk`` rows (one scan, so a caller can transform a million rows without holding them
        all). Histograms whose image row is missing are left out; BLOB sizes and values are checked, so a tampered
        or foreign database gives a DatabaseError instead of garbage.

        The default chunk is about 8 MiB of vectors: buffers that size are reused by the allocator, larger ones
        (64 MiB at K = 256) are fresh memory every time, and their page faults made opening 1M x 256 twice as slow.
        """
        chunk = chunk or max(64, (8 << 20) // (4 * dimension))
        try:
            # Histograms without an image row (only a damaged database has them), or made with another codebook (a
            # writer that bypassed the lock), are left out in the same scan.
            current, parameters = ("AND codebook = ?", [self.codebook_generation()]) if self._has_generations() \
                else ("", [])
            cursor = self.db.execute("SELECT image_id, vector FROM histograms WHERE image_id IN (SELECT id FROM images) "
                                     f"{current} ORDER BY image_id", parameters)
            while rows := cursor.fetchmany(chunk):
                ids = np.fromiter(map(itemgetter(0), rows), np.int64, len(rows))
                yield ids, self._vectors(list(map(itemgetter(1), rows)), ids, dimension)
        except sqlite3.DatabaseError as error:
            raise DatabaseError(f"{self.path}: cannot read histograms ({error})") from None

    # --- the state derived files are made from ----------------------------------------------------------------
    @_sqlite_errors
    def prepare_change_tracking(self) -> None:
        """Make sure the triggers, the state token and the database's id (made once: a derived file is valid for
        this database only) exist, before reading what a derived file is made from. Needs the writer lock."""
        if self.change_state() is not None:
            return
        with self.db.atomic():
            for name in _COUNTING_TRIGGERS:  # the first version's, which counted
                self.db.conn.execute(f"DROP TRIGGER IF EXISTS {name}")
            self._create_change_triggers()
            self.db.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('search_cache_generation', '0')")
            self.db.conn.execute(_NEW_TOKEN)
            self.db.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('database_id', ?)",
                                 [json.dumps(os.urandom(16).hex())])

    def _create_change_triggers(self):
        for name, when in _CHANGE_TRIGGERS.items():  # names and events from the fixed table above
            self.db.conn.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {when} BEGIN {_NEW_TOKEN}; END")

    def _has_change_triggers(self) -> bool:
        names = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        return set(_CHANGE_TRIGGERS) <= names

    @_sqlite_errors
    def change_state(self) -> tuple[str, str] | None:
        """``(database id, state token)`` that a derived file must carry to describe the database as it is now
        (inside a snapshot: as it is in the snapshot), or None (change tracking never prepared)."""
        meta = self.meta()
        token, database_id = meta.get("search_cache_generation"), meta.get("database_id")
        if not isinstance(token, str) or not isinstance(database_id, str) or not self._has_change_triggers():
            return None
        return database_id, token

    # --- which histograms changed: the log a derived file is brought up to date from ----------------------------
    @_sqlite_errors
    def prepare_change_log(self) -> None:
        """Start logging, from now on, the image id of every histogram inserted, replaced or deleted (by cbir or any
        other program: triggers), so a derived file can be brought up to date from the rows that changed instead of
        read whole again. Does nothing when the log exists."""
        with self.db.atomic():
            self.db.conn.execute("CREATE TABLE IF NOT EXISTS histogram_changes "
                                 "(seq INTEGER PRIMARY KEY AUTOINCREMENT, image_id INTEGER NOT NULL)")
            for name, (when, ids) in _LOG_TRIGGERS.items():  # names, events and values from the fixed table
                inserts = " ".join(f"INSERT INTO histogram_changes (image_id) VALUES ({i});" for i in ids)
                self.db.conn.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {when} BEGIN {inserts} END")

    @_sqlite_errors
    def drop_change_log(self) -> None:
        """Stop logging changed histograms and forget the log (no derived file needs it)."""
        with self.db.atomic():
            for name in _LOG_TRIGGERS:
                self.db.conn.execute(f"DROP TRIGGER IF EXISTS {name}")
            self.db.conn.execute("DROP TABLE IF EXISTS histogram_changes")
            self.db.conn.execute("DELETE FROM meta WHERE key = 'histogram_changes_pruned'")

    @_sqlite_errors
    def change_log(self) -> tuple[int, int] | None:
        """``(first, last)``: the log holds every change numbered ``first + 1 .. last`` (changes up to ``first`` were
        pruned), or None when there is no log (or it is incomplete: a trigger is missing)."""
        names = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        if not set(_LOG_TRIGGERS) <= names or "histogram_changes" not in self.db.table_names():
            return None
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'histogram_changes'").fetchone()
        pruned = self.meta().get("histogram_changes_pruned", 0)
        return (pruned if isinstance(pruned, int) else 0), (row[0] if row else 0)

    @_sqlite_errors
    def changed_images(self, after: int) -> np.ndarray:
        """Ids of the images whose histogram was inserted, replaced or deleted after change number ``after``:
        ``(n,) int64``, ascending."""
        return np.array([r[0] for r in self.db.execute("SELECT DISTINCT image_id FROM histogram_changes "
                                                       "WHERE seq > ? ORDER BY image_id", [int(after)])], np.int64)

    @_sqlite_errors
    def prune_change_log(self, upto: int) -> None:
        """Forget the changes numbered up to ``upto`` (a derived file has taken them in)."""
        with self.db.atomic():
            self.db.conn.execute("DELETE FROM histogram_changes WHERE seq <= ?", [int(upto)])
            self.db.conn.execute("INSERT INTO meta (key, value) VALUES ('histogram_changes_pruned', ?) ON CONFLICT "
                                 "(key) DO UPDATE SET value = CAST(max(CAST(value AS INTEGER), "
                                 "CAST(excluded.value AS INTEGER)) AS TEXT)", [str(int(upto))])

    @_sqlite_errors
    def searchable_ids(self, ids: Iterable[int] | np.ndarray | None = None) -> np.ndarray:
        """Ids of the images that have a histogram (of ``ids`` when given, else of all): ``(n,) int64``,
        ascending."""
        # as the search reads them: histograms of another codebook generation left out
        current, parameters = ("h.codebook = ?", [self.codebook_generation()]) if self._has_generations() \
            else ("1", [])
        select = f"SELECT h.image_id FROM histograms h JOIN images i ON i.id = h.image_id WHERE {current}"
        if ids is None:
            rows = self.db.execute(f"{select} ORDER BY h.image_id", parameters)
        else:
            rows = self.db.execute(f"{select} AND h.image_id IN (SELECT value FROM json_each(?)) "
                                   "ORDER BY h.image_id", [*parameters, json.dumps(np.asarray(ids, np.int64).tolist())])
        return np.array([r[0] for r in rows], np.int64)

    @_sqlite_errors
    def image_count_bound(self) -> int:
        """At least the number of image rows, without counting them: the largest id (ids are positive and distinct;
        one step down the id b-tree, where ``count(*)`` reads the whole table: 1.2 s at a million rows, cold)."""
        return self.db.execute("SELECT coalesce(max(id), 0) FROM images").fetchone()[0]

    @_sqlite_errors
    def image_ids(self) -> np.ndarray:
        """Ids of every image row, ascending: ``(n,) int64`` (read from the small path index, not the
        histograms)."""
        return np.sort(np.array([r[0] for r in self.db.execute("SELECT id FROM images")], np.int64))

    @_sqlite_errors
    def sample_histograms(self, count: int, dimension: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """About ``count`` histograms of images drawn at random (all of them when there are fewer): ``(ids (n,)
        int64, vectors (n, dimension) float32)``. Reads only the rows drawn, by id."""
        low, high, total = self.db.execute("SELECT min(id), max(id), count(*) FROM images").fetchone()
        if not total:
            return np.zeros(0, np.int64), np.zeros((0, dimension), np.float32)
        if total <= count:
            return self.load_vectors(dimension)
        drawn = np.unique(np.random.default_rng(seed).integers(low, high + 1, count))
        # a few thousand ids per read: many more would make histograms_of scan the whole table
        ids = np.concatenate([self.searchable_ids(part) for part in np.array_split(drawn, len(drawn) // 4096 + 1)])
        return ids, np.concatenate([self.histograms_of(part, dimension)
                                    for part in np.array_split(ids, len(ids) // 4096 + 1)])

    def load_vectors(self, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """Every stored histogram at once: ids ``(N,) int64``, vectors ``(N, dimension) float32``."""
        chunks = list(self.histogram_chunks(dimension))
        ids = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
        vectors = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros((0, dimension), np.float32)
        return ids, vectors

    @_sqlite_errors
    def histograms_of(self, ids: Iterable[int] | np.ndarray, dimension: int) -> np.ndarray:
        """Histograms of some images, in the order of ``ids``: ``(len(ids), dimension) float32``."""
        ids = np.asarray(ids, np.int64).ravel()
        return self._vectors(self._in_order("SELECT image_id, vector FROM histograms", "image_id", ids, "histogram"),
                             ids, dimension)

    @_sqlite_errors
    def paths_of(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """Stored paths of some images, in the order of ``ids``: a list of str."""
        paths = self._in_order("SELECT id, path FROM images", "id", np.asarray(ids, np.int64).ravel(), "path")
        if not all(isinstance(p, str) for p in paths):
            raise DatabaseError(f"{self.path}: an image path is not text; the database is damaged",
                                remedy=Remedy.REBUILD)
        return paths

    def _in_order(self, select, key, ids, what):
        """Second column of the rows of ``select`` whose ``key`` is in ``ids``, in the order of ``ids``."""
        found = dict(self._rows_of(select, key, ids))
        try:
            return [found[i] for i in ids.tolist()]
        except KeyError as missing:
            raise DatabaseError(f"{self.path}: image {missing} has no {what} (the database changed during the query, "
                                "or is damaged)", remedy=Remedy.CHECK) from None

    def _rows_of(self, select, key, ids, scan_above=10_000):
        """Rows of ``select`` whose ``key`` is in ``ids``: looked up one by one (ids passed as one JSON
        parameter), or for many ids one scan of the whole table."""
        if len(ids) > scan_above:
            wanted = set(ids.tolist())
            return (row for row in self.db.execute(select) if row[0] in wanted)
        return self.db.execute(f"{select} WHERE {key} IN (SELECT value FROM json_each(?))", [json.dumps(ids.tolist())])

    def _vectors(self, blobs, ids, dimension):
        """BLOBs as ``(len(blobs), dimension) float32``, refusing any of the wrong type or size, or holding
        negative, NaN or infinite values."""
        if self.histogram_format == "steps":
            try:
                return codec.dequantise(codec.decode(blobs, dimension))
            except codec.BlobError as error:
                bad = int(ids[error.position])
                raise DatabaseError(f"{self.path}: the histogram of image {bad} ({self._describe_image(bad)}) is not "
                                    f"{dimension} shares; the database is damaged or was made by another program",
                                    remedy=Remedy.REBUILD) from None
        width = 4 * dimension
        try:
            joined = b"".join(blobs)  # TypeError when one is not a BLOB (text, a number, NULL)
            lengths = np.fromiter(map(len, blobs), np.int64, len(blobs))
        except TypeError:
            joined, lengths = b"", np.array([len(b) if isinstance(b, bytes) else -1 for b in blobs])
        if (lengths != width).any():
            bad = int(ids[np.argmax(lengths != width)])
            raise DatabaseError(f"{self.path}: the histogram of image {bad} ({self._describe_image(bad)}) is not "
                                f"{dimension} float32 values; the database is damaged or was made by another "
                                "program", remedy=Remedy.REBUILD)
        vectors = np.frombuffer(joined, "<f4").reshape(len(blobs), dimension).astype(np.float32, copy=False)
        if not np.isfinite(vectors).all() or (vectors < 0).any():
            raise DatabaseError(f"{self.path}: histograms hold negative, NaN or infinite values", remedy=Remedy.REBUILD)
        return vectors

    def _describe_image(self, image_id):
        row = self.db.execute("SELECT path FROM images WHERE id = ?", [image_id]).fetchone()
        return repr(row[0]) if row else "no image row"

    @_sqlite_errors
    def counts(self, tables: Iterable[str] = ("images", "histograms", "failures", "codebook")) -> dict[str, int]:
        """Rows of each of ``tables``: a dict."""
        unknown = set(tables) - TABLES
        if unknown:
            raise ValueError(f"unknown tables {sorted(unknown)}; choose from {sorted(TABLES)}")
        # Table names from the fixed set above only, never from input.
        return {table: self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}

    # --- consistent reads and checks -------------------------------------------------------------------------
    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run the reads inside in one read transaction: an index run committing meanwhile (WAL) is not seen
        half, e.g. a new codebook with the old histograms. Nests: an inner snapshot joins the outer one."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as error:
            raise DatabaseError(f"{self.path}: cannot read ({error})") from None
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.rollback()  # read only: nothing to keep

    @_sqlite_errors
    def integrity(self) -> list[str]:
        """Messages of ``PRAGMA integrity_check``: ``["ok"]`` for a sound file."""
        return [row[0] for row in self.db.execute("PRAGMA integrity_check").fetchall()]

    @_sqlite_errors
    def consistency(self, dimension: int | None = None, limit: int = 20) -> dict[str, list]:
        """Rows that contradict each other, each as a list of at most ``limit`` image paths or ids.

        dimension : expected number of shares per histogram, or None to skip the BLOB checks
        Returns a dict: histograms without an image, images without a histogram, paths both indexed and failed,
        histograms of the wrong size or type, histograms holding negative, NaN or infinite values, paths that are
        not text, structure thumbnails without an image or of the wrong size or type (image ids), and images
        without a structure thumbnail (indexed before cbir kept them: not damage).
        """
        def listed(sql, parameters=()):
            return [row[0] for row in self.db.execute(sql + " LIMIT ?", [*parameters, limit]).fetchall()]

        found = {
            "orphan_histograms": listed("SELECT image_id FROM histograms WHERE image_id NOT IN "
                                        "(SELECT id FROM images)"),
            "images_without_histogram": listed("SELECT path FROM images WHERE id NOT IN "
                                               "(SELECT image_id FROM histograms)"),
            "indexed_and_failed": listed("SELECT path FROM failures WHERE path IN (SELECT path FROM images)"),
            "paths_not_text": listed("SELECT id FROM images WHERE typeof(path) != 'text'"),
            "other_codebook": listed("SELECT i.path FROM images i JOIN histograms h ON h.image_id = i.id "
                                     "WHERE h.codebook IS NOT ?", [self.codebook_generation()])
            if self._has_generations() else [],
            "bad_blob_size": [],
            "bad_values": [],
            "bad_structure_thumbnails": [],
            "images_without_structure": [],
        }
        if self.has_structure_table():
            found["bad_structure_thumbnails"] = listed(
                "SELECT image_id FROM structure_thumbnails WHERE image_id NOT IN (SELECT id FROM images) "
                "OR typeof(thumb) != 'blob' OR length(thumb) != ?", [STRUCTURE_BYTES])
            found["images_without_structure"] = listed(
                "SELECT path FROM images WHERE id NOT IN (SELECT image_id FROM structure_thumbnails)")
        else:
            found["images_without_structure"] = listed("SELECT path FROM images")
        if dimension is not None and self.histogram_format == "steps":
            # every BLOB decoded on its own (a check reads them all anyway); steps are shares by construction
            for path, blob in self.db.execute("SELECT i.path, h.vector FROM images i JOIN histograms h "
                                              "ON h.image_id = i.id"):
                try:
                    codec.decode([blob], dimension)
                except codec.BlobError:
                    found["bad_blob_size"].append(path)
                    if len(found["bad_blob_size"]) >= limit:
                        break
        elif dimension is not None:
            found["bad_blob_size"] = listed("SELECT i.path FROM images i JOIN histograms h ON h.image_id = i.id "
                                            "WHERE typeof(h.vector) != 'blob' OR length(h.vector) != ?",
                                            [4 * dimension])
            cursor = self.db.execute("SELECT i.path, h.vector FROM images i JOIN histograms h ON h.image_id = i.id "
                                     "WHERE typeof(h.vector) = 'blob' AND length(h.vector) = ?", [4 * int(dimension)])
            for path, blob in cursor:
                vector = np.frombuffer(blob, dtype="<f4")
                if not np.isfinite(vector).all() or (vector < 0).any():
                    found["bad_values"].append(path)
                    if len(found["bad_values"]) >= limit:
                        break
        return found

    @_sqlite_errors
    def image_files(self) -> list[tuple[str, int, int]]:
        """``[(stored path, size, mtime_ns)]`` of every indexed image."""
        return [(r[0], r[1], r[2]) for r in self.db.execute("SELECT path, size, mtime_ns FROM images "
                                                            "WHERE typeof(path) = 'text'")]

    # --- browsing: folders as stored paths see them -----------------------------------------------------------
    _IMAGE_COLUMNS = "id, path, size, mtime_ns, sha256, width, height"

    @_sqlite_errors
    def image_rows(self, ids: Iterable[int]) -> list[tuple]:
        """``(id, path, size, mtime_ns, sha256, width, height)`` of the images among ``ids``, in that order; ids
        with no image are left out."""
        ids = [int(i) for i in ids]
        rows = {row[0]: row for row in self.db.execute(
            f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE id IN (SELECT value FROM json_each(?))",
            [json.dumps(ids)])}
        return [rows[i] for i in ids if i in rows]

    def _rows_directly_in(self, prefix: str) -> Iterator[tuple]:
        """Image rows directly in the folder whose paths start with ``prefix``, by path: a walk along the path
        index that jumps over each subfolder in one lookup, so a folder costs what it holds itself."""
        low, high = _prefix_range(prefix)
        after = False  # ">=" at a start or after a jump, ">" after the last row seen
        while True:
            # Rows are stepped one at a time as they are taken (no LIMIT, no fetchall): a jump costs one lookup.
            cursor = self.db.conn.execute(f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE path "
                                          f"{'>' if after else '>='} ? AND path < ? ORDER BY path", [low, high])
            try:
                for row in cursor:
                    rest = row[1][len(prefix):]
                    if "/" in rest:  # the first path in a subfolder: go on after all of it ("0" follows "/")
                        low, after = prefix + rest[: rest.index("/")] + "0", False
                        break
                    yield row
                else:
                    return
            finally:
                cursor.close()

    @_sqlite_errors
    def image_rows_in(self, folder: str, offset: int, limit: int) -> list[tuple]:
        """Rows (as :meth:`image_rows`) of the images directly in the stored folder ``folder`` ("" for the top,
        "/" for the root of absolute paths), by path, ``limit`` of them from ``offset``."""
        return list(itertools.islice(self._rows_directly_in(_folder_prefix(folder)), offset, offset + limit))

    @_sqlite_errors
    def count_in(self, folder: str) -> int:
        """How many images are directly in the stored folder ``folder``."""
        return sum(1 for _ in self._rows_directly_in(_folder_prefix(folder)))

    @_sqlite_errors
    def subfolders(self, folder: str, limit: int = 10_000) -> list[str]:
        """Names of the folders directly in the stored folder ``folder``, sorted ("/" at the top for absolute
        paths): one lookup of the path index per subfolder, jumping from each to the next."""
        prefix = _folder_prefix(folder)
        low, high = _prefix_range(prefix)
        names = []
        while len(names) < limit:
            row = self.db.execute("SELECT path FROM images WHERE path >= ? AND path < ? AND "
                                  "instr(substr(path, ?), '/') > 0 ORDER BY path LIMIT 1",
                                  [low, high, len(prefix) + 1]).fetchone()
            if row is None:
                break
            name = row[0][len(prefix):].split("/", 1)[0]
            names.append(name or "/")  # "" before the first "/" of an absolute path: the folder "/"
            low = prefix + name + "0"  # "0" follows "/": past every path in that subfolder
        return names


def _folder_prefix(folder: str) -> str:
    """What the stored paths in a stored folder start with: "" for the top, "/" for the root of absolute paths."""
    return folder if not folder or folder.endswith("/") else folder + "/"


def _prefix_range(prefix: str) -> tuple[str, str]:
    """``(low, high)``: the strings that start with ``prefix`` are those with ``low <= s < high``."""
    return prefix, prefix + "\U0010ffff"
