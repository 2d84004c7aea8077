"""The index database: SQLite through sqlite-utils. The only module that imports sqlite-utils.

Tables: ``meta`` (schema version and every setting that shapes a histogram), ``codebook`` (one row per colour),
``images`` (path, size, mtime, content hash, dimensions), ``histograms`` (float32 BLOB per image) and
``failures`` (path and reason). The journal is WAL, so queries can read while an index run writes; each batch of
images is written in one transaction, so an interrupted run leaves whole images only.
"""

import fcntl
import json
import os
import sqlite3
import time

import numpy as np
import sqlite_utils

from .errors import BusyError, DatabaseError

SCHEMA_VERSION = 1
TABLES = {"meta", "codebook", "images", "histograms", "failures"}


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
        relative = os.path.relpath(absolute, self.root)
        return absolute if relative.startswith(os.pardir) else relative

    def disk_path(self, stored):
        return stored if os.path.isabs(stored) else os.path.join(self.root, stored)

    # --- meta and codebook -----------------------------------------------------------------------------------
    def meta(self):
        try:
            return {row["key"]: json.loads(row["value"]) for row in self.db["meta"].rows}
        except (sqlite3.DatabaseError, ValueError) as error:
            raise DatabaseError(f"{self.path}: unreadable metadata ({error})") from None

    def _set_meta(self, values):
        self.db["meta"].upsert_all([{"key": k, "value": json.dumps(v)} for k, v in values.items()], pk="key")

    def set_meta(self, values):
        with self.db.atomic():
            self._set_meta(values)

    def codebook(self):
        """Codebook colours ``(K, 3) float32`` in the working space, or None when there is none yet."""
        rows = list(self.db.query("SELECT id, c0, c1, c2 FROM codebook ORDER BY id"))
        if not rows:
            return None
        if [r["id"] for r in rows] != list(range(len(rows))):
            raise DatabaseError(f"{self.path}: codebook rows are not numbered 0..K-1; rebuild the index")
        return np.array([[r["c0"], r["c1"], r["c2"]] for r in rows], dtype=np.float32)

    def codebook_rows(self):
        return list(self.db.query("SELECT id, c0, c1, c2, hex, share FROM codebook ORDER BY id"))

    def replace_codebook(self, lab, hexes, shares, settings):
        """Store a new codebook and its settings, dropping every histogram made with the old one."""
        with self.db.atomic():
            self.db.execute("DELETE FROM histograms")
            self.db.execute("DELETE FROM images")
            self.db.execute("DELETE FROM failures")
            self.db.execute("DELETE FROM codebook")
            self.db["codebook"].insert_all(
                {"id": i, "c0": float(c[0]), "c1": float(c[1]), "c2": float(c[2]), "hex": h, "share": float(s)}
                for i, (c, h, s) in enumerate(zip(lab, hexes, shares)))
            self._set_meta({"settings": settings, "codebook_created": time.time()})

    # --- images ----------------------------------------------------------------------------------------------
    def known_images(self):
        """``{stored path: (id, size, mtime_ns, sha256)}`` of every indexed image."""
        return {r["path"]: (r["id"], r["size"], r["mtime_ns"], r["sha256"])
                for r in self.db.query("SELECT id, path, size, mtime_ns, sha256 FROM images")}

    def known_failures(self):
        return {r["path"]: r for r in self.db.query("SELECT * FROM failures")}

    def write_batch(self, records=(), failures=(), touched=(), removed=()):
        """Write one batch in one transaction.

        records : (stored path, size, mtime_ns, sha256, width, height, float32 vector); replaces any row of the path
        failures : (stored path, reason, size, mtime_ns)
        touched : (image id, size, mtime_ns), files whose content did not change
        removed : stored paths to forget (images and failures)
        """
        now = time.time()
        with self.db.atomic():
            for path in removed:
                self._delete_path(path)
            for path, size, mtime_ns, sha256, width, height, vector in records:
                self._delete_path(path)
                # Plain SQL: sqlite-utils' insert() inspects the table on every call, 0.1 ms per image.
                image_id = self.db.execute(
                    "INSERT INTO images (path, size, mtime_ns, sha256, width, height, indexed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", [path, size, mtime_ns, sha256, width, height, now]).lastrowid
                self.db.execute("INSERT INTO histograms (image_id, vector) VALUES (?, ?)",
                                [image_id, np.asarray(vector, dtype="<f4").tobytes()])
            for image_id, size, mtime_ns in touched:
                self.db.execute("UPDATE images SET size = ?, mtime_ns = ? WHERE id = ?", [size, mtime_ns, image_id])
            for path, reason, size, mtime_ns in failures:
                self._delete_path(path)
                self.db["failures"].insert({"path": path, "reason": reason, "size": size, "mtime_ns": mtime_ns,
                                            "at": now}, replace=True)

    def _delete_path(self, path):
        self.db.execute("DELETE FROM histograms WHERE image_id IN (SELECT id FROM images WHERE path = ?)", [path])
        self.db.execute("DELETE FROM images WHERE path = ?", [path])
        self.db.execute("DELETE FROM failures WHERE path = ?", [path])

    # --- reading for search ----------------------------------------------------------------------------------
    def load_vectors(self, dimension, chunk=1 << 16):
        """Every indexed image: ids ``(N,) int64``, stored paths, vectors ``(N, dimension) float32``.

        BLOB sizes are checked, so a tampered or foreign database gives a DatabaseError instead of garbage. The
        BLOBs are copied chunk by chunk into one preallocated array (peak memory: the matrix plus one chunk), from
        two scans in rowid order (no join: a million lookups of the histogram of each image cost more than the scan).
        """
        try:
            images = self.db.execute("SELECT id, path FROM images ORDER BY id").fetchall()
            ids = np.fromiter((r[0] for r in images), dtype=np.int64, count=len(images))
            vectors = np.empty((len(images), dimension), dtype=np.float32)
            cursor = self.db.execute("SELECT image_id, vector FROM histograms ORDER BY image_id")
            filled = 0
            while rows := cursor.fetchmany(chunk):
                end = filled + len(rows)
                if end > len(ids) or any(r[0] != i for r, i in zip(rows, ids[filled:end].tolist())):
                    return self._load_vectors_joined(dimension)  # images without histograms or the reverse
                blobs = [r[1] for r in rows]
                self._check_blobs(blobs, dimension, images[filled:end])
                vectors[filled:end] = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(rows), dimension)
                filled = end
        except sqlite3.DatabaseError as error:
            raise DatabaseError(f"{self.path}: cannot read histograms ({error})") from None
        if filled != len(ids):
            return self._load_vectors_joined(dimension)
        self._check_values(vectors)
        return ids, [r[1] for r in images], vectors

    def _load_vectors_joined(self, dimension):
        """:meth:`load_vectors` for a database whose images and histograms tables do not pair up one to one."""
        try:
            rows = self.db.execute("SELECT i.id, i.path, h.vector FROM images i JOIN histograms h ON "
                                   "h.image_id = i.id ORDER BY i.id").fetchall()
        except sqlite3.DatabaseError as error:
            raise DatabaseError(f"{self.path}: cannot read histograms ({error})") from None
        blobs = [r[2] for r in rows]
        self._check_blobs(blobs, dimension, rows)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(rows), dimension).copy()
        self._check_values(vectors)
        return ids, [r[1] for r in rows], vectors

    def _check_blobs(self, blobs, dimension, rows):
        width = 4 * dimension
        if not all(isinstance(b, bytes) for b in blobs) or set(map(len, blobs)) - {width}:
            bad = next(r[1] for r, b in zip(rows, blobs) if not isinstance(b, bytes) or len(b) != width)
            raise DatabaseError(f"{self.path}: the histogram of {bad} is not {dimension} float32 values; "
                                "the database is damaged or was made by another program: rebuild it")

    def _check_values(self, vectors, chunk=1 << 16):
        for start in range(0, len(vectors), chunk):
            if not np.isfinite(vectors[start : start + chunk]).all():
                raise DatabaseError(f"{self.path}: histograms hold NaN or infinite values; rebuild the index")

    def counts(self):
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "images": one("SELECT count(*) FROM images"),
            "histograms": one("SELECT count(*) FROM histograms"),
            "failures": one("SELECT count(*) FROM failures"),
            "codebook": one("SELECT count(*) FROM codebook"),
        }
