"""Histogram BLOBs of schema 3 (cbir.store.codec) against a byte-by-byte reader, what the rounding costs, and older
databases (float32 BLOBs) read as they are and converted by a rebuild."""

import numpy as np
import pytest
from helpers import naive_shares, rows, schema_1_database, write_photos

from cbir import Index
from cbir.store import codec


def random_histograms(count, dimension, seed=0):
    """Histograms with many zero shares, a few tiny ones (one pixel in 12 million) and some whole ones."""
    rng = np.random.default_rng(seed)
    shares = rng.random((count, dimension)) * (rng.random((count, dimension)) < 0.4)
    shares[:, 0] = 1 / 12e6
    shares[0] = 0
    shares[1] = 0
    shares[1, -1] = 1
    return shares / np.maximum(shares.sum(1, keepdims=True), 1e-300)


@pytest.mark.parametrize("dimension", [1, 9, 80, 1280])
def test_blobs_decode_as_a_byte_by_byte_reader_reads_them(dimension):
    shares = random_histograms(20, dimension)
    blobs = [codec.encode(codec.quantise(s)) for s in shares]
    decoded = codec.dequantise(codec.decode(blobs, dimension))
    expected = np.array([naive_shares(b, dimension) for b in blobs])
    np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(decoded, codec.stored_form(shares))
    assert codec.decode([], dimension).shape == (0, dimension)


def test_rounding_keeps_four_significant_digits_of_every_cube_root():
    shares = random_histograms(50, 128, seed=1)
    stored = codec.stored_form(shares).astype(np.float64)
    assert ((stored > 0) == (shares > 0)).all()  # no share lost or made up, down to one pixel in 12 million
    roots, stored_roots = np.cbrt(shares), np.cbrt(stored)
    assert np.abs(stored_roots - roots).max() <= 0.5 / codec.STEPS + 1e-7
    assert codec.stored_form(codec.stored_form(shares)).tolist() == stored.astype(np.float32).tolist()  # stable


def test_empty_and_whole_shares_survive_exactly():
    assert codec.stored_form(np.array([0.0, 1.0, 0.5])).tolist()[:2] == [0.0, 1.0]
    assert codec.stored_form(np.array([0.5]))[0] == pytest.approx(0.5, rel=5e-5)


@pytest.mark.parametrize("values", [[-0.1], [np.nan], [1.5], [np.inf]])
def test_values_that_are_not_shares_are_refused(values):
    with pytest.raises(ValueError, match="shares"):
        codec.quantise(np.array(values))


def test_blobs_that_lie_are_refused_with_their_position():
    good = codec.encode(codec.quantise(np.array([0.5, 0, 0.25, 0, 0, 0, 0, 0, 0.25])))
    cases = {
        "is not a BLOB": [good, "text"],
        "shorter than its bitmap": [good, b"\x01"],
        "another length": [good, good[:-1]],
        "another length ": [good, good + b"\x01\x00"],
        "another length  ": [good, good[:1] + bytes([good[1] | 0x80]) + good[2:] + b"\x01\x00"],  # bit 15 of 9
    }
    for reason, blobs in cases.items():
        with pytest.raises(codec.BlobError, match=reason.strip()) as caught:
            codec.decode(blobs, 9)
        assert caught.value.position == 1


def test_an_indexed_photo_finds_itself_at_distance_zero(tmp_path):
    folder = write_photos(tmp_path / "photos", 4, size=(61, 83))  # odd sizes: shares that are not round
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add([folder], settings={"colors": 16})
        best = index.search(folder / "p2.png", n=1, skip_self=False)[0]
        assert best.path.endswith("p2.png") and best.distance == 0.0
        np.testing.assert_array_equal(index.query_vector(folder / "p2.png"), index.histograms([best.image_id])[0])


def test_an_older_database_keeps_float32_until_a_rebuild_converts_it(tmp_path):
    folder = write_photos(tmp_path / "photos", 5, size=(24, 32))
    db = schema_1_database(tmp_path / "old.db")
    with Index.open(db) as index:
        index.add([folder], settings={"colors": 8})
        assert index.search(folder / "p1.png", n=1, skip_self=False)[0].distance == 0.0
    assert rows(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]  # generations added
    assert {len(blob) for (blob,) in rows(db, "SELECT vector FROM histograms")} == {4 * 80}  # float32 kept
    with Index.open(db) as index:
        index.add([folder], rebuild=True)
        assert index.search(folder / "p1.png", n=1, skip_self=False)[0].distance == 0.0
    assert rows(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]
    for (blob,) in rows(db, "SELECT vector FROM histograms"):
        assert len(blob) < 4 * 80 and naive_shares(blob, 80).sum() == pytest.approx(10, rel=1e-3)  # 10 blocks
    assert Index.check(db).ok
