"""The index database: SQLite through sqlite-utils. The only module that imports sqlite-utils.

Tables: ``meta`` (schema version and every setting that shapes a histogram), ``codebook`` (one row per colour),
``images`` (path, size, mtime, content hash, dimensions), ``histograms`` (float32 BLOB per image) and
``failures`` (path and reason). The journal is WAL, so queries can read while an index run writes; each batch of
images is written in one transaction, so an interrupted run leaves whole images only.

A large index also keeps ``search_cache``: the search's transformed matrix in ~8 MiB row chunks, so opening reads
it instead of recomputing it. It is derived data: triggers empty it (and drop its ``meta`` key) whenever a
histogram, an image or the codebook changes, by cbir or any other program, so a cache that is there is current.
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
CACHE_CHUNK_BYTES = 8 << 20
# Any change to what the search reads drops the cache in the same transaction. Names, tables and events are fixed
# here, never input. An image's size or mtime being brought up to date does not change what the search reads.
_CACHE_TRIGGERS = {
    "search_cache_drop_on_histogram_insert": "AFTER INSERT ON histograms",
    "search_cache_drop_on_histogram_update": "AFTER UPDATE ON histograms",
    "search_cache_drop_on_histogram_delete": "AFTER DELETE ON histograms",
    "search_cache_drop_on_image_id_update": "AFTER UPDATE OF id ON images",
    "search_cache_drop_on_image_delete": "AFTER DELETE ON images",
    "search_cache_drop_on_codebook_insert": "AFTER INSERT ON codebook",
    "search_cache_drop_on_codebook_update": "AFTER UPDATE ON codebook",
    "search_cache_drop_on_codebook_delete": "AFTER DELETE ON codebook",
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
            # Debian builds SQLite with secure_delete on: freeing a dropped search cache then rewrote it all in zeros
            # (0.55 s for 100 MB). FAST still zeroes deleted rows when that costs no extra writes.
            db.execute("PRAGMA secure_delete = FAST")
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

    # --- the search's transformed matrix, cached -------------------------------------------------------------
    @_sqlite_errors
    def search_cache(self, key, dimension):
        """The cached transformed matrix made with ``key``: ``(ids (N,) int64, vectors (N, dimension) float32)``,
        or None when there is none for this key (never made, dropped by a change, made for other settings, or
        not what its header says: the caller then computes the matrix from the histograms, which it derives from).
        Call inside :meth:`snapshot` together with the reads it must agree with."""
        if not self.has_search_cache(key, dimension):
            return None
        rows = self.meta()["search_cache"]["rows"]
        ids, vectors = np.empty(rows, np.int64), np.empty((rows, dimension), np.float32)
        filled = 0
        for id_blob, vector_blob in self.db.execute("SELECT ids, vectors FROM search_cache ORDER BY chunk"):
            n = len(id_blob) // 8 if isinstance(id_blob, bytes) else -1
            whole = isinstance(vector_blob, bytes) and len(vector_blob) == 4 * n * dimension
            if n < 0 or filled + n > rows or not whole:
                return None
            ids[filled : filled + n] = np.frombuffer(id_blob, "<i8")
            vectors[filled : filled + n] = np.frombuffer(vector_blob, "<f4").reshape(n, dimension)
            filled += n
        if filled != rows or (rows > 1 and not (np.diff(ids) > 0).all()):
            return None
        return ids, vectors

    @_sqlite_errors
    def has_search_cache(self, key, dimension):
        """Whether a search cache made with ``key`` for ``dimension`` values per row is there (read nothing else)."""
        if "search_cache" not in self.db.table_names():
            return False
        header = self.meta().get("search_cache")
        return (isinstance(header, dict) and header.get("key") == key and header.get("dimension") == dimension
                and isinstance(header.get("rows"), int) and header["rows"] >= 0)

    @_sqlite_errors
    def write_search_cache(self, key, ids, vectors, version, progress=None):
        """Store the transformed matrix ``vectors (N, D) float32`` of the images ``ids (N,) int64`` (ascending),
        made with ``key`` from what the database held at ``version`` (:meth:`data_version` in the snapshot it was
        read in). Written only if no other connection has committed since: returns whether it was written.
        ``progress(rows written)`` is called after each chunk."""
        ids, vectors = np.asarray(ids, "<i8"), np.asarray(vectors, "<f4")
        conn = self.db.conn
        with self.db.atomic():
            conn.execute("CREATE TABLE IF NOT EXISTS search_cache (chunk INTEGER PRIMARY KEY, ids BLOB, vectors BLOB)")
            for name, when in _CACHE_TRIGGERS.items():
                conn.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {when} BEGIN "
                             "DELETE FROM search_cache; DELETE FROM meta WHERE key = 'search_cache'; END")
            conn.execute("DELETE FROM search_cache")  # a write first: from here on no other writer can commit
            conn.execute("DELETE FROM meta WHERE key = 'search_cache'")
            if self.data_version() != version:
                return False  # another writer committed after the matrix was read: it is not current
            rows = max(1, CACHE_CHUNK_BYTES // max(1, vectors.itemsize * vectors.shape[1]))
            for chunk, start in enumerate(range(0, len(ids), rows)):
                conn.execute("INSERT INTO search_cache (chunk, ids, vectors) VALUES (?, ?, ?)",
                             (chunk, ids[start : start + rows].tobytes(), vectors[start : start + rows].tobytes()))
                if progress:
                    progress(min(start + rows, len(ids)))
            self._set_meta({"search_cache": {"key": key, "rows": len(ids), "dimension": int(vectors.shape[1])}})
        return True

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
