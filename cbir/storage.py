"""The index database: SQLite through sqlite-utils. The only module that imports sqlite-utils.

Tables: ``meta`` (schema version and every setting that shapes a histogram), ``codebook`` (one row per colour),
``images`` (path, size, mtime, content hash, dimensions), ``histograms`` (float32 BLOB per image) and
``failures`` (path and reason). The journal is WAL, so queries can read while an index run writes; each batch of
images is written in one transaction, so an interrupted run leaves whole images only.

A large index also has a search cache beside it, ``<database>-search-cache``: the search's transformed matrix, so
opening reads it instead of recomputing it. It is derived data, valid for one state of the database: triggers
bump ``meta.search_cache_generation`` whenever a histogram, an image id or the codebook changes (by cbir or any
other program), and a cache file made at another generation, or for another database, is ignored. Outdating it
costs nothing (nothing to delete), and it is replaced atomically (written aside, then renamed).
"""

import contextlib
import fcntl
import functools
import json
import os
import sqlite3
import time
from operator import itemgetter
from pathlib import Path

import numpy as np
import sqlite_utils

from .errors import BusyError, DatabaseError

SCHEMA_VERSION = 1
TABLES = {"meta", "codebook", "images", "histograms", "failures"}
# Changes to what the search reads bump the cache generation in the same transaction. Names, tables and events are
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
_CACHE_MAGIC = b"cbir search cache 1\n"
_CACHE_COPY_ROWS = 1 << 13  # rows per read or write of the cache file: bounded buffers


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
            raise DatabaseError(f"{self.path}: {error}; if the database is damaged, rebuild it with: "
                                f"cbir index PHOTOS_DIR --db {self.path} --rebuild") from None

    return wrapper


def integrity_check(path):
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

    def __init__(self, db, path):
        self.db = db
        self.path = path
        self.root = os.path.dirname(os.path.abspath(path))
        self._lock = None

    # --- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path, *, create=False):
        """Open the database at ``path``; with ``create``, make it (and its tables) if it does not exist."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise DatabaseError(f"{path} is a directory; pass the database file with --db")
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        if not exists and not create:
            raise DatabaseError(f"no index database at {path}; create one with: cbir index PHOTOS_DIR --db {path}")
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
                                    f"{SCHEMA_VERSION}; rebuild it with: cbir index PHOTOS_DIR --db {path} --rebuild")
        else:
            store._create()
        return store

    @_sqlite_errors
    def _create(self):
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
            self._set_meta({"schema_version": SCHEMA_VERSION})

    def close(self):
        self.unlock()
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- one writer at a time --------------------------------------------------------------------------------
    def lock_for_writing(self):
        """Take the writer lock (a lock file beside the database) or raise BusyError at once."""
        handle = open(self.path + ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise BusyError(f"another cbir index run is writing to {self.path}; wait for it to finish") from None
        self._lock = handle

    def unlock(self):
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # --- paths: relative to the database's folder when inside it, so a database moves with its photos -------
    def stored_path(self, path):
        absolute = os.path.abspath(path)
        if absolute.startswith(self.root + os.sep):  # inside: what relpath gives, without its 10 us of work
            return absolute[len(self.root) + 1 :]
        relative = os.path.relpath(absolute, self.root)
        return absolute if relative.startswith(os.pardir) else relative

    def disk_path(self, stored):
        return stored if os.path.isabs(stored) else os.path.join(self.root, stored)

    # --- meta and codebook -----------------------------------------------------------------------------------
    def meta(self):
        try:
            return {row["key"]: json.loads(row["value"]) for row in self.db["meta"].rows}
        except (sqlite3.DatabaseError, ValueError, TypeError) as error:  # TypeError: a value is not text
            raise DatabaseError(f"{self.path}: unreadable metadata ({error})") from None

    def _set_meta(self, values):
        self.db["meta"].upsert_all([{"key": k, "value": json.dumps(v)} for k, v in values.items()], pk="key")

    @_sqlite_errors
    def set_meta(self, values):
        with self.db.atomic():
            self._set_meta(values)

    @_sqlite_errors
    def codebook(self):
        """Codebook colours ``(K, 3) float32`` in the working space, or None when there is none yet."""
        rows = list(self.db.query("SELECT id, c0, c1, c2 FROM codebook ORDER BY id"))
        if not rows:
            return None
        if [r["id"] for r in rows] != list(range(len(rows))):
            raise DatabaseError(f"{self.path}: codebook rows are not numbered 0..K-1; rebuild the index")
        values = [[r["c0"], r["c1"], r["c2"]] for r in rows]
        if not all(isinstance(v, (int, float)) for row in values for v in row):
            raise DatabaseError(f"{self.path}: the codebook holds values that are not numbers; rebuild the index")
        colours = np.array(values, dtype=np.float32)
        if not np.isfinite(colours).all():
            raise DatabaseError(f"{self.path}: the codebook holds NaN or infinite values; rebuild the index")
        return colours

    @_sqlite_errors
    def codebook_rows(self):
        return list(self.db.query("SELECT id, c0, c1, c2, hex, share FROM codebook ORDER BY id"))

    @_sqlite_errors
    def replace_codebook(self, colours, hexes, shares, meta):
        """Store a new codebook and the metadata it was made with, dropping every histogram of the old one."""
        with self.db.atomic():
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
    def known_images(self):
        """``{stored path: (id, size, mtime_ns, sha256)}`` of every indexed image."""
        return {r["path"]: (r["id"], r["size"], r["mtime_ns"], r["sha256"])
                for r in self.db.query("SELECT id, path, size, mtime_ns, sha256 FROM images")}

    @_sqlite_errors
    def known_failures(self):
        return {r["path"]: r for r in self.db.query("SELECT * FROM failures")}

    @_sqlite_errors
    def write_batch(self, records=(), failures=(), touched=(), removed=(), new_paths=frozenset()):
        """Write one batch in one transaction.

        records : (stored path, size, mtime_ns, sha256, width, height, vector); replaces any row of the path; the
            vector is float32 values, or their little-endian bytes
        failures : (stored path, reason, size, mtime_ns)
        touched : (image id, size, mtime_ns), files whose content did not change
        removed : stored paths to forget (images and failures)
        new_paths : stored paths the caller knows have no row yet (read under the writer lock): nothing to replace,
            so their three DELETEs are skipped (a quarter of the writing time of a new image)
        """
        now = time.time()
        execute = self.db.conn.execute  # sqlite-utils' execute() adds 2 us per call, and insert() 0.1 ms
        with self.db.atomic():
            for path in removed:
                self._delete_path(path)
            for path, size, mtime_ns, sha256, width, height, vector in records:
                if path not in new_paths:
                    self._delete_path(path)
                image_id = execute("INSERT INTO images (path, size, mtime_ns, sha256, width, height, indexed_at) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (path, size, mtime_ns, sha256, width, height, now)).lastrowid
                blob = vector if isinstance(vector, bytes) else np.asarray(vector, dtype="<f4").tobytes()
                execute("INSERT INTO histograms (image_id, vector) VALUES (?, ?)", (image_id, blob))
            for image_id, size, mtime_ns in touched:
                execute("UPDATE images SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, image_id))
            for path, reason, size, mtime_ns in failures:
                if path not in new_paths:
                    self._delete_path(path)
                self.db["failures"].insert({"path": path, "reason": reason, "size": size, "mtime_ns": mtime_ns,
                                            "at": now}, replace=True)

    def _delete_path(self, path):
        self.db.execute("DELETE FROM histograms WHERE image_id IN (SELECT id FROM images WHERE path = ?)", [path])
        self.db.execute("DELETE FROM images WHERE path = ?", [path])
        self.db.execute("DELETE FROM failures WHERE path = ?", [path])

    # --- reading for search ----------------------------------------------------------------------------------
    @_sqlite_errors
    def data_version(self):
        """A number that changes whenever another connection commits to the database (``PRAGMA data_version``);
        inside :meth:`snapshot` it stays that of the snapshot."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def histogram_chunks(self, dimension, chunk=None):
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

    # --- the search's transformed matrix, cached beside the database --------------------------------------
    @property
    def search_cache_path(self):
        return self.path + "-search-cache"

    @_sqlite_errors
    def prepare_search_cache(self):
        """Make sure the triggers, the generation counter and the database's id (made once: a cache file is valid
        for this database only) exist, before reading what a cache is made from."""
        if self.search_cache_state() is not None:
            return
        with self.db.atomic():
            for name, when in _CACHE_TRIGGERS.items():
                self.db.conn.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {when} BEGIN UPDATE meta SET value = "
                                     "CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'search_cache_generation'; "
                                     "END")
            self.db.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('search_cache_generation', '0')")
            self.db.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('database_id', ?)",
                                 [json.dumps(os.urandom(16).hex())])

    def _has_cache_triggers(self):
        names = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        return set(_CACHE_TRIGGERS) <= names

    @_sqlite_errors
    def search_cache_state(self):
        """``(database id, generation)`` a cache file must carry to be current now (inside a snapshot: for the
        snapshot), or None (never prepared)."""
        meta = self.meta()
        generation, database_id = meta.get("search_cache_generation"), meta.get("database_id")
        if not isinstance(generation, int) or not isinstance(database_id, str) or not self._has_cache_triggers():
            return None
        return database_id, generation

    def search_cache_header(self, key=None, dimension=None):
        """The header of the current cache file (a dict with ``rows``, ``dimension``, ``key``), or None when there is
        none that describes this database as it is now (and, if given, made with ``key`` for ``dimension``)."""
        try:
            with open(self.search_cache_path, "rb") as handle:
                return self._current_header(handle, key, dimension)
        except (OSError, ValueError):
            return None

    def _current_header(self, handle, key, dimension):
        """The header at the start of ``handle`` if it is current (and for ``key`` and ``dimension`` when given),
        else None. ValueError when it is not a cache file's header."""
        if handle.read(len(_CACHE_MAGIC)) != _CACHE_MAGIC:
            raise ValueError("not a cbir search cache")
        length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(length)) if 0 < length < 1 << 16 else None
        if not (isinstance(header, dict) and isinstance(header.get("rows"), int) and header["rows"] >= 0
                and isinstance(header.get("dimension"), int) and header["dimension"] > 0):
            raise ValueError("bad search cache header")
        state = self.search_cache_state()
        current = state is not None and (header.get("database_id"), header.get("generation")) == state
        wanted = key is None or (header.get("key") == key and header["dimension"] == dimension)
        return header if current and wanted else None

    def search_cache(self, key, dimension):
        """The cached transformed matrix made with ``key``: ``(ids (N,) int64, vectors (N, dimension) float32)``,
        or None when there is none for this database as it is now (never made, made before a change, for other
        settings, or not what its header says: the caller then computes the matrix from the histograms, which it
        derives from). Call inside :meth:`snapshot` together with the reads it must agree with."""
        try:
            with open(self.search_cache_path, "rb") as handle:
                header = self._current_header(handle, key, dimension)
                if header is None:
                    return None
                rows = header["rows"]
                if os.fstat(handle.fileno()).st_size != handle.tell() + rows * (8 + 4 * dimension):
                    return None
                ids, vectors = np.empty(rows, "<i8"), np.empty((rows, dimension), "<f4")
                handle.readinto(memoryview(ids).cast("B"))
                for start in range(0, rows, _CACHE_COPY_ROWS):
                    handle.readinto(memoryview(vectors[start : start + _CACHE_COPY_ROWS]).cast("B"))
        except (OSError, ValueError):
            return None
        if rows > 1 and not (np.diff(ids) > 0).all():
            return None
        return ids.astype(np.int64, copy=False), vectors.astype(np.float32, copy=False)

    def write_search_cache(self, key, ids, vectors, state, progress=None):
        """Store the transformed matrix ``vectors (N, D) float32`` of the images ``ids (N,) int64`` (ascending),
        made with ``key`` from the database at ``state`` (:meth:`search_cache_state` in the snapshot the
        histograms were read in). Written aside and renamed into place; ``progress(rows written)`` after each
        block of rows. A state that is gone by then makes a file that is never used."""
        ids, vectors = np.ascontiguousarray(ids, "<i8"), np.ascontiguousarray(vectors, "<f4")
        header = json.dumps({"key": key, "rows": len(ids), "dimension": int(vectors.shape[1]),
                             "database_id": state[0], "generation": state[1]}).encode()
        partial = self.search_cache_path + ".partial"
        try:
            with open(partial, "wb") as handle:
                handle.write(_CACHE_MAGIC + len(header).to_bytes(8, "little") + header)
                handle.write(memoryview(ids).cast("B"))
                for start in range(0, len(ids), _CACHE_COPY_ROWS):
                    handle.write(memoryview(vectors[start : start + _CACHE_COPY_ROWS]).cast("B"))
                    if progress:
                        progress(min(start + _CACHE_COPY_ROWS, len(ids)))
            os.replace(partial, self.search_cache_path)
        except OSError as error:
            raise DatabaseError(f"cannot write the search cache {self.search_cache_path} ({error.strerror})") from None
        finally:
            if os.path.exists(partial):
                os.unlink(partial)

    def drop_search_cache(self):
        """Remove the cache file, if any (a small index needs none)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.search_cache_path)

    def load_vectors(self, dimension):
        """Every stored histogram at once: ids ``(N,) int64``, vectors ``(N, dimension) float32``."""
        chunks = list(self.histogram_chunks(dimension))
        ids = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
        vectors = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros((0, dimension), np.float32)
        return ids, vectors

    @_sqlite_errors
    def histograms_of(self, ids, dimension):
        """Histograms of some images, in the order of ``ids``: ``(len(ids), dimension) float32``."""
        ids = np.asarray(ids, np.int64).ravel()
        return self._vectors(self._in_order("SELECT image_id, vector FROM histograms", "image_id", ids, "histogram"),
                             ids, dimension)

    @_sqlite_errors
    def paths_of(self, ids):
        """Stored paths of some images, in the order of ``ids``: a list of str."""
        paths = self._in_order("SELECT id, path FROM images", "id", np.asarray(ids, np.int64).ravel(), "path")
        if not all(isinstance(p, str) for p in paths):
            raise DatabaseError(f"{self.path}: an image path is not text; the database is damaged: rebuild it")
        return paths

    def _in_order(self, select, key, ids, what):
        """Second column of the rows of ``select`` whose ``key`` is in ``ids``, in the order of ``ids``."""
        found = dict(self._rows_of(select, key, ids))
        try:
            return [found[i] for i in ids.tolist()]
        except KeyError as missing:
            raise DatabaseError(f"{self.path}: image {missing} has no {what} (the database changed during the query, "
                                "or is damaged: run cbir check)") from None

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
                                "program: rebuild it")
        vectors = np.frombuffer(joined, "<f4").reshape(len(blobs), dimension).astype(np.float32, copy=False)
        if not np.isfinite(vectors).all() or (vectors < 0).any():
            raise DatabaseError(f"{self.path}: histograms hold negative, NaN or infinite values; rebuild the index")
        return vectors

    def _describe_image(self, image_id):
        row = self.db.execute("SELECT path FROM images WHERE id = ?", [image_id]).fetchone()
        return repr(row[0]) if row else "no image row"

    @_sqlite_errors
    def counts(self, tables=("images", "histograms", "failures", "codebook")):
        """Rows of each of ``tables``: a dict."""
        unknown = set(tables) - TABLES
        if unknown:
            raise ValueError(f"unknown tables {sorted(unknown)}; choose from {sorted(TABLES)}")
        # Table names from the fixed set above only, never from input.
        return {table: self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}

    # --- consistent reads and checks -------------------------------------------------------------------------
    @contextlib.contextmanager
    def snapshot(self):
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
    def integrity(self):
        """Messages of ``PRAGMA integrity_check``: ``["ok"]`` for a sound file."""
        return [row[0] for row in self.db.execute("PRAGMA integrity_check").fetchall()]

    @_sqlite_errors
    def consistency(self, dimension=None, limit=20):
        """Rows that contradict each other, each as a list of at most ``limit`` image paths or ids.

        dimension : expected number of float32 values per histogram, or None to skip the BLOB checks
        Returns a dict: histograms without an image, images without a histogram, paths both indexed and failed,
        histograms of the wrong size or type, histograms holding negative, NaN or infinite values, and paths
        that are not text.
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
        }
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
    def image_files(self):
        """``[(stored path, size, mtime_ns)]`` of every indexed image."""
        return [(r[0], r[1], r[2]) for r in self.db.execute("SELECT path, size, mtime_ns FROM images "
                                                            "WHERE typeof(path) = 'text'")]
