"""What several test modules share: synthetic photos, the shared data sets, database peeks.

Fixtures live in conftest.py; the messy collection of test_reliability.py in helpers/corpus.py.
"""

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from cbir.imageio import write_image

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
KODAK = SHARED / "kodak"
WANG = SHARED / "wang1000"


def require(path):
    """Skip the test cleanly when the shared measurement data is absent."""
    if not path.exists():
        pytest.skip(f"{path} is not available (shared measurement data)")
    return path


def make_photo(seed, size=(40, 56)):
    """A synthetic photo: a few coloured blobs on a tinted background, different for every seed."""
    rng = np.random.default_rng(seed)
    image = np.empty((*size, 3), np.uint8)
    image[:] = rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    for _ in range(4):
        cy, cx, r = rng.integers(0, size[0]), rng.integers(0, size[1]), rng.integers(5, 20)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def smooth_photo(seed, size=(120, 160)):
    """A photo-like picture: smooth random colour fields with a little noise. (Pictures of a few flat colours, like
    make_photo's, learn a codebook of near-identical colours that JPEG noise moves between.)"""
    import cv2  # here, not at the top: cbir must be imported first to set OpenCV's pixel limit (cbir.imageio)

    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.normal(0, 1, (5, 6, 3)).astype(np.float32), (size[1], size[0]),
                       interpolation=cv2.INTER_CUBIC)
    field = (field - field.min()) / (field.max() - field.min()) * 220 + 15
    return np.clip(field + rng.normal(0, 3, field.shape), 0, 255).astype(np.uint8)


def write_photos(folder, count, size=(40, 56)):
    """``count`` synthetic photos p0.png, p1.png ... in ``folder`` (made if needed); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_image(folder / f"p{i}.png", make_photo(i, size))
    return folder


def rows(db, sql):
    """Rows of an SQL query on a database file, read with plain sqlite3."""
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def index_rows(db):
    """Every row an index run writes, ids included (times excluded): two runs wrote the same database when these
    are equal."""
    with sqlite3.connect(db) as conn:
        return {table: conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall() for table, columns in (
            ("images", "id, path, size, mtime_ns, sha256, width, height"), ("histograms", "image_id, vector"),
            ("failures", "path, reason, size, mtime_ns"), ("codebook", "id, c0, c1, c2, hex, share"),
            ("structure_thumbnails", "image_id, thumb"))}


def naive_shares(blob, dimension):
    """A histogram BLOB of a schema-3 database read byte by byte (the reference for cbir.store.codec):
    ``(dimension,) float32`` shares ``(q / 65535)^3``."""
    bitmap = (dimension + 7) // 8
    out, values = np.zeros(dimension, np.float32), blob[bitmap:]
    taken = 0
    for i in range(dimension):
        if blob[i // 8] >> (i % 8) & 1:
            q = values[2 * taken] | values[2 * taken + 1] << 8
            out[i] = np.float32((q / 65535) ** 3)
            taken += 1
    assert 2 * taken == len(values), "the BLOB holds other values than its bitmap says"
    return out


def schema_1_database(path):
    """An empty database of schema version 1 (histograms as float32 values), as cbir made them before version 2:
    cbir keeps reading and writing those (the first writer adds the codebook generations: version 2)."""
    from cbir.store import Store

    store = Store.open(path, create=True)
    store.created = False  # kept although empty
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE histograms DROP COLUMN codebook")  # version 2 added it
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    return path


def committed_images(db):
    """Images committed so far, read as any other process would (0 while the database is being created)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0
