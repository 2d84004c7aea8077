"""A first index decodes each file of the codebook's sample once (issue 13, item 8): the decode made for the
codebook's colours is kept for the file's histogram, within a memory budget, and gives the histograms the normal
path gives, bit for bit."""

import os

import numpy as np
import pytest
from helpers import index_rows, make_photo

import cbir.index.run as run
from cbir import Index, Settings
from cbir.imageio import write_image
from cbir.index import Tuning

KEEP_ALL, KEEP_NONE = Tuning(sample_keep_bytes=1 << 30), Tuning(sample_keep_bytes=0)
# min_side 100: an 800x600 JPEG is decoded at 1/4 for its histogram (200x150) and its colours pooled from block
# means of 3x3 of that decode, a 320x240 one in full and pooled from means of 5x5; the 80x60 PNGs as they are.
SETTINGS = {"colors": 12, "min_side": 100, "sample": 8, "layout": "global+3x3"}


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, size in enumerate([(600, 800), (240, 320), (600, 800), (90, 120), (240, 320), (600, 800)]):
        write_image(folder / f"j{i}.jpg", make_photo(i, size))
    for i in range(4):
        write_image(folder / f"p{i}.png", make_photo(10 + i, (60, 80)))
    return folder


def counted_decodes(monkeypatch):
    decodes = []
    real = run.decode_with_size

    def decode(data, **kwargs):
        decodes.append(kwargs["name"])
        return real(data, **kwargs)

    monkeypatch.setattr(run, "decode_with_size", decode)
    return decodes


def index_with(tmp_path, photos, name, tuning, workers=1):
    db = tmp_path / f"{name}.db"
    with Index.open(db, create=True, tuning=tuning) as index:
        report = index.add(photos, settings=SETTINGS, workers=workers)
    assert report.added == 10 and not report.failures
    return db


def test_the_sample_is_decoded_once_and_gives_the_histograms_of_the_normal_path(tmp_path, photos, monkeypatch):
    decodes = counted_decodes(monkeypatch)
    once = index_with(tmp_path, photos, "once", KEEP_ALL)
    assert len(decodes) == 10  # 8 sampled (kept) and 2 others, each decoded once
    decodes.clear()
    twice = index_with(tmp_path, photos, "twice", KEEP_NONE)
    assert len(decodes) == 18
    assert index_rows(once) == index_rows(twice)  # codebook, histograms, sizes, hashes: the same rows
    # ... and the histograms a file added later, or a query, gets: decoded and histogrammed the normal way
    with Index.open(once) as index:
        ids, paths = index.image_paths()
        stored = index.histograms(ids)
        for path, vector in zip(paths, stored):
            assert index.query_vector(path).tobytes() == vector.tobytes(), path


def test_the_sample_kept_stays_within_its_memory_budget(photos):
    files = sorted(str(p) for p in photos.iterdir())
    settings = Settings(**SETTINGS)
    *_, kept = run.learn_collection_codebook(files, settings, tuning=KEEP_ALL)
    assert len(kept) == 8
    sizes = sorted(decoded.image.nbytes for decoded in kept.values())
    budget = sizes[0] + sizes[1]  # room for the two smallest: taken in sample order while they fit
    *_, kept = run.learn_collection_codebook(files, settings, tuning=Tuning(sample_keep_bytes=budget))
    assert 1 <= len(kept) <= 2 and sum(d.image.nbytes for d in kept.values()) <= budget
    *_, kept = run.learn_collection_codebook(files, settings, tuning=KEEP_NONE)
    assert kept == {}


def test_a_file_changed_after_the_sample_read_it_is_read_again(tmp_path, photos):
    changed = photos / "j5.jpg"

    def change(done, total):
        if done == 1:  # the main pass has begun: j5 was sampled and kept
            write_image(changed, make_photo(99, (600, 800)))
            os.utime(changed, ns=(1, 1))  # a new time even on a coarse clock

    with Index.open(tmp_path / "i.db", create=True, tuning=KEEP_ALL) as index:
        index.add(photos, settings=SETTINGS, progress=change)
        ids, paths = index.image_paths()
        vector = index.histograms(ids)[[os.path.basename(p) for p in paths].index("j5.jpg")]
        assert index.query_vector(changed).tobytes() == vector.tobytes()


@pytest.mark.slow
def test_workers_keep_the_sample_and_write_what_one_process_writes(tmp_path, photos):
    one = index_with(tmp_path, photos, "one", KEEP_NONE)
    workers = index_with(tmp_path, photos, "workers", Tuning(sample_keep_bytes=1 << 30, parallel_min_files=0), 2)
    assert index_rows(workers) == index_rows(one)


def test_block_means_are_what_a_smaller_decode_holds():
    from cbir.core.codebook import block_means

    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    assert block_means(image, 1) is image
    means = block_means(image, 2)
    assert means.shape == (2, 3, 3)
    expected = image.reshape(2, 2, 3, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(means - expected).max() <= 0.5


@pytest.mark.parametrize("shape", [(384, 512), (512, 384), (750, 1000), (256, 384), (100, 1000), (60, 80), (47, 90)])
def test_the_pool_picture_keeps_a_short_side_of_48_to_95_pixels(shape):
    """The codebook's colours and the structure thumbnail come from block means of the decode made for the
    histogram, the blocks as large as keeps a short side of CODEBOOK_MIN_SIDE: a few thousand pixels, whatever the
    size and the format of the picture; a smaller picture as it is."""
    image = make_photo(2, shape)
    small = run.pool_scale(image)
    if min(shape) < run.CODEBOOK_MIN_SIDE:
        assert small is image
    else:
        factor = min(shape) // run.CODEBOOK_MIN_SIDE
        assert small.shape == (shape[0] // factor, shape[1] // factor, 3)
        assert run.CODEBOOK_MIN_SIDE <= min(small.shape[:2]) < 2 * run.CODEBOOK_MIN_SIDE
