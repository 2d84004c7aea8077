"""Keeping a real photo library's index true: rebuilds that lose nothing, remove and prune, the codebook's
provenance, hidden and system files, unreadable formats, and failed commands that leave no file behind."""

import json
import os

import numpy as np
import pytest
from helpers import make_photo, rows, write_photos

from cbir import CbirError, Index
from cbir.imageio import write_image


@pytest.fixture
def two_folders(tmp_path):
    """Photos in rA and rB, indexed into one database."""
    write_photos(tmp_path / "rA", 4)
    folder = tmp_path / "rB"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"b{i}.png", make_photo(100 + i))
    db = tmp_path / "i.db"
    with Index.open(db, create=True) as index:
        index.add([tmp_path / "rA", tmp_path / "rB"], settings={"colors": 16})
    return tmp_path, db


def indexed_names(db):
    return sorted(os.path.basename(p) for (p,) in rows(db, "SELECT path FROM images"))


def test_a_rebuild_of_one_folder_keeps_and_recomputes_the_others(cli, two_folders):
    """cbir index rA --rebuild used to delete rB's images and say 'removed 0'."""
    tmp_path, db = two_folders
    before = indexed_names(db)
    code, out, err = cli("index", tmp_path / "rA", "--db", db, "--rebuild", "--codebook-size", 8)
    assert code == 0, err
    assert out.strip() == "added 0, updated 7, unchanged 0, removed 0, failed 0"
    assert indexed_names(db) == before and rows(db, "SELECT count(*) FROM histograms")[0][0] == 7
    with Index.open(db) as index:
        assert len(index.codebook_colours()[0]) == 8 and index.info()["codebook_images"] == 7
        assert index.info()["pending"] == 0


def test_a_rebuild_refuses_when_indexed_files_elsewhere_are_missing(cli, two_folders):
    tmp_path, db = two_folders
    (tmp_path / "rB" / "b1.png").unlink()
    before = rows(db, "SELECT id, path FROM images ORDER BY id")
    code, out, err = cli("index", tmp_path / "rA", "--db", db, "--rebuild")
    assert code == 1 and out == ""
    assert "1 indexed files outside" in err and "b1.png" in err and "cbir prune" in err
    assert rows(db, "SELECT id, path FROM images ORDER BY id") == before  # nothing changed
    assert cli("prune", "--db", db)[0] == 0
    assert cli("index", tmp_path / "rA", "--db", db, "--rebuild")[0] == 0
    assert indexed_names(db) == ["b0.png", "b2.png", "p0.png", "p1.png", "p2.png", "p3.png"]


def test_an_interrupted_rebuild_loses_nothing(monkeypatch, two_folders):
    """Ctrl-C after the new codebook is learned: every image stays indexed with its histogram, the old index whole
    (a rebuild is written beside it and swapped in at its end, issue 14); the next run finds nothing to do."""
    import cbir.index.run as run

    tmp_path, db = two_folders
    real = run._Batches.add
    calls = []

    def interrupted(self, item, result):
        calls.append(item)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, item, result)

    monkeypatch.setattr(run._Batches, "add", interrupted)
    with Index.open(db) as index:
        assert index.add(tmp_path / "rA", rebuild=True, workers=1).interrupted
    monkeypatch.setattr(run._Batches, "add", real)
    assert len(indexed_names(db)) == 7 and rows(db, "SELECT count(*) FROM histograms")[0][0] == 7
    with Index.open(db) as index:
        assert index.info()["pending"] == 0
        report = index.add(tmp_path / "rA", workers=1)
        assert report.updated + report.unchanged == 4 and index.info()["pending"] == 0
    assert rows(db, "SELECT count(*) FROM histograms")[0][0] == 7


def test_remove_forgets_files_and_folders_on_disk_or_not(cli, two_folders):
    tmp_path, db = two_folders
    code, out, _ = cli("remove", tmp_path / "rA" / "p1.png", tmp_path / "rB", "--db", db, "--json")
    document = json.loads(out)
    assert code == 0 and document["images"] == 4 and document["dry_run"] is False
    assert indexed_names(db) == ["p0.png", "p2.png", "p3.png"]
    (tmp_path / "rA" / "p2.png").unlink()
    assert cli("remove", tmp_path / "rA" / "p2.png", "--db", db)[0] == 0  # gone from disk already
    code, out, err = cli("remove", tmp_path / "rA" / "p0.png", tmp_path / "nowhere", "--db", db)
    assert code == 1 and "nowhere" in err and indexed_names(db) == ["p0.png", "p3.png"]  # all or nothing
    with Index.open(db) as index:
        assert index.remove(tmp_path / "rA", dry_run=True).images and len(index) == 2
        assert len(index.remove(str(tmp_path / "rA")).images) == 2
        with pytest.raises(CbirError):
            index.remove([tmp_path / "rA"])


def test_prune_forgets_a_renamed_folder_and_check_advises_it(cli, two_folders):
    """mv rB pics: the old entries used to stay, and cbir check advised indexing a folder that is gone."""
    tmp_path, db = two_folders
    (tmp_path / "rB").rename(tmp_path / "pics")
    code, out, err = cli("check", "--db", db)
    assert code == 1 and "cbir prune" in out + err
    code, out, _ = cli("prune", "--db", db, "--dry-run")
    assert code == 0 and out.strip().splitlines()[-1] == "would forget 3 images and 0 failed files"
    assert len(indexed_names(db)) == 7
    code, out, _ = cli("prune", "--db", db, "--json")
    assert code == 0 and json.loads(out)["images"] == 3 and indexed_names(db)[0] == "p0.png"
    assert cli("check", "--db", db)[0] == 0
    with Index.open(db) as index:
        assert index.prune().images == []


def test_the_codebook_records_its_sample_and_warns_when_outgrown(cli, tmp_path):
    """Two grey images, then many colour photos: the 2-image codebook used to stay without a word."""
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(2):
        write_image(grey / f"g{i}.png", np.full((30, 40, 3), 100 + 40 * i, np.uint8))
    db = tmp_path / "i.db"
    code, out, err = cli("index", grey, "--db", db)
    assert code == 0 and "warning" not in err
    code, out, _ = cli("info", "--db", db)
    assert "learned from 2 images on " in out
    write_photos(tmp_path / "colour", 6)
    code, out, err = cli("index", tmp_path / "colour", "--db", db)
    assert code == 0
    assert "the codebook was learned from 2 images and the index now holds 8" in err and "--rebuild" in err
    code, out, _ = cli("index", tmp_path / "colour", "--db", db, "--json")
    assert json.loads(out)["codebook_outgrown"] == {"learned_from": 2, "images": 8}
    code, out, err = cli("index", tmp_path / "colour", "--db", db, "--rebuild")
    assert code == 0 and "warning" not in err
    assert json.loads(cli("info", "--db", db, "--json")[1])["codebook_images"] == 8


def test_hidden_and_system_files_are_skipped_unless_asked(cli, tmp_path):
    photos = write_photos(tmp_path / "photos", 3)
    for hidden in (".git/objects", "@eaDir/p0.png", ".thumbnails"):
        write_photos(photos / hidden, 1)
    (photos / "._p1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS: could never be read
    write_photos(photos / "Screenshots", 2)
    db = tmp_path / "i.db"
    code, out, err = cli("index", photos, "--db", db, "--exclude", "Screenshots")
    assert code == 0, err  # the AppleDouble file used to fail every run (exit 3)
    assert indexed_names(db) == ["p0.png", "p1.png", "p2.png"]
    code, out, err = cli("index", photos, "--db", db, "--include-hidden")
    assert code == 3 and "._p1.png" in err  # asked for: the AppleDouble file is read, and fails
    assert out.strip() == "added 5, updated 0, unchanged 3, removed 0, failed 1"
    code, out, err = cli("index", photos, "--db", db, "--exclude", "*/p0.png", "--exclude", "Screenshots")
    assert code == 0 and "removed 5" in out  # hidden and excluded files leave the index again ("*/p0.png": not p0.png)
    assert indexed_names(db) == ["p0.png", "p1.png", "p2.png"]


def test_unreadable_image_formats_are_counted_and_named(cli, tmp_path):
    photos = write_photos(tmp_path / "photos", 2)
    (photos / "IMG_1.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (photos / "DSC_2.nef").write_bytes(b"II*\x00 raw")
    db = tmp_path / "i.db"
    code, out, err = cli("index", photos, "--db", db)
    assert code == 0 and out.strip() == "added 2, updated 0, unchanged 0, removed 0, failed 0, skipped 2"
    assert "skipped: " in err and "IMG_1.HEIC: HEIC images cannot be read by cbir" in err and "DSC_2.nef" in err
    code, out, _ = cli("index", photos, "--db", db, "--json")
    assert sorted(os.path.basename(s["path"]) for s in json.loads(out)["skipped"]) == ["DSC_2.nef", "IMG_1.HEIC"]


def test_a_failed_first_index_leaves_no_database_and_no_lock_file(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    db = tmp_path / "new.db"
    code, out, err = cli("index", tmp_path / "empty", "--db", db)
    assert code == 1 and err.startswith("Error: no image files")
    code, out, err = cli("index", tmp_path / "missing", "--db", db)
    assert code == 1 and "no such file" in err
    assert sorted(os.listdir(tmp_path)) == ["empty"]
    write_photos(tmp_path / "photos", 2)
    assert cli("index", tmp_path / "photos", "--db", db)[0] == 0
    assert sorted(os.listdir(tmp_path)) == ["empty", "new.db", "photos"]  # no zero-byte new.db.lock beside it


def test_every_output_path_is_checked_before_the_work(cli, tmp_path):
    photos = write_photos(tmp_path / "photos", 3)
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db)
    for option in ("--html", "--montage"):
        code, out, err = cli("query", photos / "p0.png", "--db", db, option, tmp_path / "no" / "such" / "out.png")
        assert code == 1 and out == "" and "does not exist" in err
