"""The index database: SQLite through sqlite-utils.

Tables: ``meta`` (schema version and every setting that shapes a histogram), ``codebook`` (one row per colour),
``images`` (path, size, mtime, content hash, dimensions), ``histograms`` (float32 BLOB per image),
``failures`` (path and reason) and ``structure_thumbnails`` (a 16x16 grey thumbnail per image, what finding
duplicates compares besides colours; databases made before it get the table at their next index run, and their
images get thumbnails as that run reads them again). The journal is WAL, so queries can read while an index run writes; each batch of
images is written in one transaction, so an interrupted run leaves whole images only.

Derived files beside the database (the search cache) are valid for one state of it: triggers bump
``meta.search_cache_generation`` whenever a histogram, an image id or the codebook changes (by cbir or any other
program), and :meth:`Store.change_state` names the state as ``(database id, generation)``. Outdating a derived file
costs nothing: it records the state it was made from, and is ignored in any other.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from ..errors import BusyError, DatabaseError, Remedy
from .lock import WriterLock

SCHEMA_VERSION = 1
TABLES = {"meta", "codebook", "images", "histograms", "failures"}  # every index database has these
STRUCTURE_TABLE = "structure_thumbnails"  # added later: older databases get it at their next index run
STRUCTURE_BYTES = 256  # a 16 x 16 uint8 thumbnail
# Changes to what the search reads bump the generation in the same transaction (names kept from the first version
# of the search cache, so databases made since keep their state). Names, tables and events are
# fixed here, never input. An image's size or mtime being brought up to date does not change what the search reads.
_CACHE_TRIGGERS = {
    "search_cache_after_histogram_insert": "AFTER INSERT ON histograms",
    "search_cache_after_histogram_update": "AFTER UPDATE ON histograms",
    "search_cache_after_histogram_delete": "AFTER DELETE ON histograms",
    "search_cache_after_image_id_update": "AFTER UPDATE OF id ON images",
    "search_cache_after_image_delete": "AFTER DELETE ON images",
    "search_cache_after_codebook_insert": "AFTER INSERT ON codebook",
    "search_cache_after_codebook_update": "AFTER UPDATE ON codebook",
    "search_cache_after_codebook_delete": "AFTER DELETE ON codebook",
}



def _sqlite_errors(method):
    """Turn an SQLite error inside a Store method (a damaged file, a full disk, a read-only database) into a
    DatabaseError (BusyError when the database stayed locked) naming the database, instead of a traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                raise BusyError(f"{self.path} is locked by another process ({error}); try again") from None
            raise DatabaseError(f"{self.path}: {error}", remedy=Remedy.REBUILD_IF_DAMAGED) from None

    return wrapper


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

    def __init__(self, db: sqlite_utils.Database, path: str) -> None:
        self.db = db
        self.path = path
        self.root = os.path.dirname(os.path.abspath(path))
        self._lock = WriterLock(path)
        self._structure_table = False

    # --- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False) -> Store:
        """Open the database at ``path``; with ``create``, make it (and its tables) if it does not exist."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise DatabaseError(f"{path} is a directory, not an index database", remedy=Remedy.DATABASE_FILE)
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        if not exists and not create:
            raise DatabaseError(f"no index database at {path}", remedy=Remedy.CREATE)
        try:
            db = sqlite_utils.Database(path)
            db.execute("PRAGMA busy_timeout = 10000")
            store = cls(db, path)
            names = set(db.table_names())
        except sqlite3.DatabaseError as error:
            raise DatabaseError(f"{path} is not a cbir index database ({error})") from None
        if exists and not TABLES <= names:
            db.close()
            raise DatabaseError(f"{path} is not a cbir index database (tables missing: "
                                f"{', '.join(sorted(TABLES - names))})")
        if exists:
            version = store.meta().get("schema_version")
            if version != SCHEMA_VERSION:
                db.close()
                raise DatabaseError(f"{path} has schema version {version!r}; this cbir reads version "
                                    f"{SCHEMA_VERSION}", remedy=Remedy.REBUILD)
        else:
            store._create()
        return store

    @_sqlite_errors
    def _create(self) -> None:
        db = self.db
        db.enable_wal()
        with db.atomic():
            db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db["codebook"].create({"id": int, "c0": float, "c1": float, "c2": float, "hex": str, "share": float},
                                  pk="id", if_not_exists=True)
            db["images"].create({"id": int, "path": str, "size": int, "mtime_ns": int, "sha256": str,
                                 "width": int, "height": int, "indexed_at": float}, pk="id", if_not_exists=True)
            db["images"].create_index(["path"], unique=True, if_not_exists=True)
            db["histograms"].create({"image_id": int, "vector": bytes}, pk="image_id",
                                    foreign_keys=[("image_id", "images", "id")], if_not_exists=True)
            db["failures"].create({"path": str, "reason": str, "size": int, "mtime_ns": int, "at": float},
                                  pk="path", if_not_exists=True)
            self._create_structure_table()
            self._set_meta({"schema_version": SCHEMA_VERSION})

    def _create_structure_table(self) -> None:
        self.db[STRUCTURE_TABLE].create({"image_id": int, "thumb": bytes}, pk="image_id",
                                        foreign_keys=[("image_id", "images", "id")], if_not_exists=True)

    def has_structure_table(self) -> bool:
        """Whether the database has the structure thumbnails table (made before it, it gets it when written)."""
        if not self._structure_table:  # once there, never dropped by cbir
            self._structure_table = self.db[STRUCTURE_TABLE].exists()
        return self._structure_table

    def close(self) -> None:
        self.unlock()
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one writer at a time --------------------------------------------------------------------------------
    def lock_for_writing(self) -> None:
        """Take the writer lock or raise BusyError at once; see :class:`cbir.store.lock.WriterLock`. A database
        made before the structure thumbnails gets their (empty) table."""
        self._lock.acquire()
        if not self.has_structure_table():
            try:
                with self.db.atomic():
                    self._create_structure_table()
            except sqlite3.DatabaseError as error:
                self._lock.release()
                raise DatabaseError(f"{self.path}: cannot write ({error})", remedy=Remedy.REBUILD_IF_DAMAGED) from None

    def unlock(self) -> None:
        self._lock.release()

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
        rows = list(self.db.query("SELECT id, c0, c1, c2 FROM codebook ORDER BY id"))
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
        """Rows of the codebook (id, c0, c1, c2, hex, share), in id order."""
        return list(self.db.query("SELECT id, c0, c1, c2, hex, share FROM codebook ORDER BY id"))

    @_sqlite_errors
    def replace_codebook(self, colours: np.ndarray, hexes: list[str], shares: np.ndarray,
                         meta: dict[str, Any]) -> None:
        """Store a new codebook and the metadata it was made with, dropping every histogram of the old one."""
        with self.db.atomic():
            if self.has_structure_table():
                self.db.execute(f"DELETE FROM {STRUCTURE_TABLE}")
            self.db.execute("DELETE FROM histograms")
            self.db.execute("DELETE FROM images")
            self.db.execute("DELETE FROM failures")
            self.db.execute("DELETE FROM codebook")
            self.db["codebook"].insert_all(
                {"id": i, "c0": float(c[0]), "c1": float(c[1]), "c2": float(c[2]), "hex": h, "share": float(s)}
                for i, (c, h, s) in enumerate(zip(colours, hexes, shares)))
            self._set_meta({**meta, "codebook_created": time.time()})

    # --- images ----------------------------------------------------------------------------------------------
    @_sqlite_errors
    def known_images(self) -> dict[str, tuple[int, int, int, str]]:
        """``{stored path: (id, size, mtime_ns, sha256)}`` of every indexed image."""
        return {r["path"]: (r["id"], r["size"], r["mtime_ns"], r["sha256"])
                for r in self.db.query("SELECT id, path, size, mtime_ns, sha256 FROM images")}

    @_sqlite_errors
    def images_without_structure(self) -> set[int]:
        """Ids of the indexed images that have no structure thumbnail (indexed before cbir made them)."""
        if not self.has_structure_table():
            return {row[0] for row in self.db.execute("SELECT id FROM images")}
        return {row[0] for row in self.db.execute(f"SELECT id FROM images WHERE id NOT IN "
                                                  f"(SELECT image_id FROM {STRUCTURE_TABLE})")}

    @_sqlite_errors
    def image_rows(self) -> list[tuple[int, str, int, int, str, int, int]]:
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
        for image_id, blob in self._rows_of(f"SELECT image_id, thumb FROM {STRUCTURE_TABLE}", "image_id", ids):
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
        return {r["path"]: r for r in self.db.query("SELECT * FROM failures")}

    @_sqlite_errors
    def write_batch(self, records: Iterable[tuple] = (), failures: Iterable[tuple] = (),
                    touched: Iterable[tuple] = (), removed: Iterable[str] = (),
                    new_paths: frozenset[str] | set[str] = frozenset()) -> None:
        """Write one batch in one transaction.

        records : (stored path, size, mtime_ns, sha256, width, height, vector[, thumb]); replaces any row of the
            path; the vector is float32 values, or their little-endian bytes; the structure thumbnail is 256 uint8
            values or their bytes (None or left out: none)
        failures : (stored path, reason, size, mtime_ns)
        touched : (image id, size, mtime_ns), files whose content did not change
        removed : stored paths to forget (images and failures)
        new_paths : stored paths the caller knows have no row yet (read under the writer lock): nothing to replace,
            so their three DELETEs are skipped (a quarter of the writing time of a new image)
        """
        now = time.time()
        execute = self.db.conn.execute  # straight to sqlite3: sqlite-utils' insert() costs more than the row
        with self.db.atomic():
            for path in removed:
                self._delete_path(path)
            for path, size, mtime_ns, sha256, width, height, vector, *thumb in records:
                if path not in new_paths:
                    self._delete_path(path)
                image_id = execute("INSERT INTO images (path, size, mtime_ns, sha256, width, height, indexed_at) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (path, size, mtime_ns, sha256, width, height, now)).lastrowid
                blob = vector if isinstance(vector, bytes) else np.asarray(vector, dtype="<f4").tobytes()
                execute("INSERT INTO histograms (image_id, vector) VALUES (?, ?)", (image_id, blob))
                if thumb and thumb[0] is not None:
                    blob = thumb[0] if isinstance(thumb[0], bytes) else np.asarray(thumb[0], np.uint8).tobytes()
                    # REPLACE: an older cbir removing images leaves their thumbnails behind, and SQLite may reuse an id
                    execute(f"INSERT OR REPLACE INTO {STRUCTURE_TABLE} (image_id, thumb) VALUES (?, ?)",
                            (image_id, blob))
            for image_id, size, mtime_ns in touched:
                execute("UPDATE images SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, image_id))
            for path, reason, size, mtime_ns in failures:
                if path not in new_paths:
                    self._delete_path(path)
                self.db["failures"].insert({"path": path, "reason": reason, "size": size, "mtime_ns": mtime_ns,
                                            "at": now}, replace=True)

    def _delete_path(self, path: str) -> None:
        if self.has_structure_table():
            self.db.execute(f"DELETE FROM {STRUCTURE_TABLE} WHERE image_id IN (SELECT id FROM images WHERE path = ?)",
                            [path])
        self.db.execute("DELETE FROM histograms WHERE image_id IN (SELECT id FROM images WHERE path = ?)", [path])
        self.db.execute("DELETE FROM images WHERE path = ?", [path])
        self.db.execute("DELETE FROM failures WHERE path = ?", [path])

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
            # Histograms without an image row (only a damaged database has them) are left out in the same scan.
            cursor = self.db.execute("SELECT image_id, vector FROM histograms "
                                     "WHERE image_id IN (SELECT id FROM images) ORDER BY image_id")
            while rows := cursor.fetchmany(chunk):
                ids = np.fromiter(map(itemgetter(0), rows), np.int64, len(rows))
                yield ids, self._vectors(list(map(itemgetter(1), rows)), ids, dimension)
        except sqlite3.DatabaseError as error:
            raise DatabaseError(f"{self.path}: cannot read histograms ({error})") from None

    # --- the state derived files are made from ----------------------------------------------------------------
    @_sqlite_errors
    def prepare_change_tracking(self) -> None:
        """Make sure the triggers, the generation counter and the database's id (made once: a derived file is
        valid for this database only) exist, before reading what a derived file is made from."""
        if self.change_state() is not None:
            return
        with self.db.atomic():
            for name, when in _CACHE_TRIGGERS.items():  # names and events from the fixed table above
                self.db.conn.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {when} BEGIN UPDATE meta SET value = "
                                     "CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'search_cache_generation'; "
                                     "END")
            self.db.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('search_cache_generation', '0')")
            self.db.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('database_id', ?)",
                                 [json.dumps(os.urandom(16).hex())])

    def _has_change_triggers(self) -> bool:
        names = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        return set(_CACHE_TRIGGERS) <= names

    @_sqlite_errors
    def change_state(self) -> tuple[str, int] | None:
        """``(database id, generation)`` that a derived file must carry to describe the database as it is now
        (inside a snapshot: as it is in the snapshot), or None (change tracking never prepared)."""
        meta = self.meta()
        generation, database_id = meta.get("search_cache_generation"), meta.get("database_id")
        if not isinstance(generation, int) or not isinstance(database_id, str) or not self._has_change_triggers():
            return None
        return database_id, generation

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

        dimension : expected number of float32 values per histogram, or None to skip the BLOB checks
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
            "bad_blob_size": [],
            "bad_values": [],
            "bad_structure_thumbnails": [],
            "images_without_structure": [],
        }
        if self.has_structure_table():
            found["bad_structure_thumbnails"] = listed(
                f"SELECT image_id FROM {STRUCTURE_TABLE} WHERE image_id NOT IN (SELECT id FROM images) "
                f"OR typeof(thumb) != 'blob' OR length(thumb) != ?", [STRUCTURE_BYTES])
            found["images_without_structure"] = listed(
                f"SELECT path FROM images WHERE id NOT IN (SELECT image_id FROM {STRUCTURE_TABLE})")
        else:
            found["images_without_structure"] = listed("SELECT path FROM images")
        if dimension is not None:
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
