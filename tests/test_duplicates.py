"""Finding copies: Index.duplicates and `cbir duplicates` on photos made for the purpose."""

import hashlib
import json
import os
import shutil
import sqlite3

import cv2
import numpy as np
import pytest
from helpers import KODAK, require
from helpers import smooth_photo as make_photo

from cbir import CbirError, DatabaseError, Index, Tuning
from cbir.imageio import read_image, write_image

COPIES = {  # file name: how it relates to original.png, and how it looks next to it
    "copy of original.png": (1, "as is"),
    "small.jpg": (2, "as is"),
    "turned.jpg": (2, "rotated 90° anticlockwise"),
    "mirrored.png": (2, "mirrored"),
    "brighter.jpg": (3, "as is"),
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A library (original.png, five copies of it, COPIES, and eight other photos, the original the oldest file)
    and its index photos.db beside it, made once for the module: tests that change them use :func:`fresh`."""
    root = tmp_path_factory.mktemp("library")
    folder = root / "photos"
    folder.mkdir()
    original = make_photo(100, size=(120, 160))
    write_image(folder / "original.png", original)
    shutil.copy(folder / "original.png", folder / "copy of original.png")
    write_image(folder / "small.jpg", cv2.resize(original, (80, 60), interpolation=cv2.INTER_AREA))
    write_image(folder / "turned.jpg", np.rot90(original))
    write_image(folder / "mirrored.png", original[:, ::-1])
    write_image(folder / "brighter.jpg", np.clip(original * 1.15, 0, 255).astype(np.uint8))
    for i in range(8):
        write_image(folder / f"other{i}.png", make_photo(200 + i, size=(120, 160)))
    os.utime(folder / "original.png", (1e9, 1e9))
    with Index.open(root / "photos.db", create=True) as index:
        index.add(folder)
    return root


@pytest.fixture
def library(indexed):
    return indexed / "photos"


@pytest.fixture
def fresh(indexed, tmp_path):
    """A copy of the library and its index to change: (photos folder, database)."""
    shutil.copytree(indexed / "photos", tmp_path / "photos", copy_function=shutil.copy2)
    shutil.copy(indexed / "photos.db", tmp_path / "photos.db")
    return tmp_path / "photos", tmp_path / "photos.db"


def state(folder):
    """Every file with its bytes' hash, size and modification time."""
    return {p: (hashlib.sha256((folder / p).read_bytes()).hexdigest(), (folder / p).stat().st_size,
                (folder / p).stat().st_mtime_ns) for p in sorted(os.listdir(folder))}


def names(group):
    return [os.path.basename(m.path) for m in group.members]


def test_the_copies_of_a_photo_form_one_group_in_tiers(indexed):
    library = indexed / "photos"
    before = state(library)
    with Index.open(indexed / "photos.db") as index:
        report = index.duplicates()
    assert state(library) == before  # nothing deleted, moved or written
    assert report.images == 14 and report.without_structure == 0 and len(report.groups) == 1
    group = report.groups[0]
    assert group.tier == 3 and group.label == "near-duplicates"
    assert names(group)[0] == "original.png" and "oldest" in group.why  # same pixels and size as its copy
    found = {os.path.basename(m.path): (m.relation, m.symmetry) for m in group.members[1:]}
    assert found == COPIES
    for member in group.members[1:]:
        assert member.distance <= 1 and member.colour_distance >= 0 and member.structure_distance >= 0
    assert {(os.path.basename(p.path), os.path.basename(p.other)) for p in report.pairs if p.tier == 1} == \
        {("original.png", "copy of original.png")} or {("copy of original.png", "original.png")}


def test_tiers_and_threshold_narrow_the_groups(indexed):
    with Index.open(indexed / "photos.db") as index:
        identical = index.duplicates(tier=1)
        saved = index.duplicates(tier=2)
        strict = index.duplicates(threshold=0.05)
    assert [sorted(names(g)) for g in identical.groups] == [["copy of original.png", "original.png"]]
    assert identical.groups[0].tier == 1 and identical.groups[0].label == "identical files"
    assert [sorted(names(g)) for g in saved.groups] == [sorted(set(COPIES) - {"brighter.jpg"} | {"original.png"})]
    assert saved.groups[0].tier == 2
    assert "brighter.jpg" not in names(strict.groups[0]) and strict.groups[0].tier == 2


def test_the_largest_photo_is_the_keeper(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = make_photo(5, size=(90, 120))
    write_image(folder / "big.png", photo)
    write_image(folder / "half.png", cv2.resize(photo, (60, 45), interpolation=cv2.INTER_AREA))
    os.utime(folder / "half.png", (1e9, 1e9))  # older, but smaller
    with Index.open(tmp_path / "p.db", create=True) as index:
        index.add(folder)
        group = index.duplicates().groups[0]
    assert names(group) == ["big.png", "half.png"] and group.why == "most pixels (120x90)"


def test_bad_arguments_and_too_loose_thresholds(indexed):
    with Index.open(indexed / "photos.db") as index:
        for bad in (dict(tier=0), dict(tier=4), dict(threshold=0), dict(threshold=5)):
            with pytest.raises(ValueError):
                index.duplicates(**bad)
    with Index.open(indexed / "photos.db", tuning=Tuning(duplicates_pairs_limit=2)) as index:
        with pytest.raises(CbirError, match="lower the threshold"):
            index.duplicates()


def test_a_database_made_before_structure_thumbnails(fresh):
    library, db = fresh
    with sqlite3.connect(db) as conn:  # what an older cbir made: no such table
        conn.execute("DROP TABLE structure_thumbnails")
    with Index.open(db) as index:
        report = index.duplicates()
        assert report.without_structure == 14 and [g.tier for g in report.groups] == [1]
        again = index.add(library)  # the next index run reads every file once more
        assert again.updated == 14 and again.unchanged == 0
        assert index.duplicates().groups[0].tier == 3
        assert index.add(library).unchanged == 14  # and only once


def test_forgotten_files_take_their_thumbnails_with_them(fresh):
    library, db = fresh
    with Index.open(db) as index:
        (library / "small.jpg").unlink()
        index.add(library)
        assert "small.jpg" not in names(index.duplicates().groups[0])
    with sqlite3.connect(db) as conn:
        orphans = conn.execute("SELECT count(*) FROM structure_thumbnails WHERE image_id NOT IN "
                               "(SELECT id FROM images)").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM structure_thumbnails").fetchone()[0]
    assert orphans == 0 and rows == 13


def test_a_rebuild_keeps_structure_thumbnails_and_remove_drops_them(fresh):
    library, db = fresh
    with Index.open(db) as index:
        before = [names(g) for g in index.duplicates().groups]
        index.add(library, rebuild=True, settings={"colors": 32})  # written aside, swapped in at its end
        assert [names(g) for g in index.duplicates().groups] == before
        index.remove(library / "small.jpg")
        assert "small.jpg" not in names(index.duplicates().groups[0])
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = conn.execute("SELECT count(*) FROM structure_thumbnails WHERE image_id IN (SELECT id FROM images)")
        assert rows.fetchone()[0] == 13 and not [t for t in tables if t.startswith("rebuild_")]


def test_the_report_is_made_once_until_the_database_changes(fresh):
    library, db = fresh
    with Index.open(db, read_only=True) as viewer:  # as the web app holds one
        first = viewer.duplicates()
        assert viewer.duplicates() is first and viewer.duplicates(tier=2) is not first  # other arguments: another
        shutil.copy(library / "other0.png", library / "copy of other0.png")
        with Index.open(db) as writer:  # another connection commits
            writer.add(library)
        again = viewer.duplicates()
        assert again is not first and ["other0.png", "copy of other0.png"] in [names(g) for g in again.groups]


def test_duplicates_through_a_read_only_index(indexed):
    with Index.open(indexed / "photos.db", read_only=True) as index:
        assert index.duplicates(tier=1).groups[0].tier == 1


def test_cli_formats(cli, indexed, tmp_path):
    db = indexed / "photos.db"
    code, out, err = cli("duplicates", "--db", db, "--json")
    assert code == 0 and err == ""
    document = json.loads(out)
    group = document["groups"][0]
    assert document["images"] == 14 and group["tier"] == 3 and group["kind"] == "near-duplicates"
    assert group["members"][0]["role"] == "keeper" and group["members"][0]["path"].endswith("original.png")
    assert {os.path.basename(m["path"]): m["relation"] for m in group["members"][1:]}["turned.jpg"] == "saved again"
    joined = {frozenset((os.path.basename(p["path"]), os.path.basename(p["other"]))): p["tier"]
              for p in document["pairs"]}
    assert joined[frozenset(("original.png", "copy of original.png"))] == 1
    assert joined[frozenset(("original.png", "mirrored.png"))] == 2 and max(joined.values()) == 3
    code, out, _ = cli("duplicates", "--db", db, "--format", "paths")
    assert code == 0 and sorted(os.path.basename(line) for line in out.splitlines()) == sorted(COPIES)
    code, out, _ = cli("duplicates", "--db", db, "--format", "tsv", "--tier", "1")
    lines = out.splitlines()
    assert lines[0].split("\t")[:4] == ["group", "tier", "kind", "role"] and len(lines) == 3
    code, out, _ = cli("duplicates", "--db", db, "--format", "csv")
    assert code == 0 and len(out.splitlines()) == 7 and out.splitlines()[1].startswith("1,3,near-duplicates,keeper")
    code, out, _ = cli("duplicates", "--db", db, "--format", "table")
    assert code == 0 and "near-duplicates (tier 3), 6 files" in out and "original.png" in out


def test_cli_page(cli, indexed, tmp_path):
    db = indexed / "photos.db"
    page = tmp_path / "dups.html"
    code, _, err = cli("duplicates", "--db", db, "--html", page, "--format", "paths")
    text = page.read_text()
    assert code == 0 and f"wrote {page}" in err
    assert 'data-members="6"' in text and "Content-Security-Policy" in text and "<script" not in text
    assert text.count('class="keeper"') == 1 and "rotated 90° anticlockwise" in text


def test_cli_errors(cli, indexed, tmp_path):
    db = indexed / "photos.db"
    assert cli("duplicates", "--db", db, "--threshold", "0")[0] == 2
    assert cli("duplicates", "--db", db, "--tier", "4")[0] == 2
    assert cli("duplicates", "--db", db, "--json", "--format", "csv")[0] == 2
    code, _, err = cli("duplicates", "--db", tmp_path / "none.db")
    assert code == 1 and err.startswith("Error: no index database")
    code, _, err = cli("duplicates", "--db", db, "--html", tmp_path / "missing" / "x.html")
    assert code == 1 and err.startswith("Error:")


@pytest.mark.slow
def test_kodak_copies_saved_again_are_tier_2_and_nothing_else_groups(tmp_path):
    kodak = require(KODAK)
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(1, 9):
        photo = read_image(kodak / f"kodim{k:02d}.png")
        write_image(folder / f"{k}.png", photo)
        if k <= 4:
            h, w = photo.shape[:2]
            write_image(folder / f"{k}_half.jpg", cv2.resize(photo, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
            write_image(folder / f"{k}_180.jpg", photo[::-1, ::-1])
            write_image(folder / f"{k}_flip.jpg", photo[::-1])
    with Index.open(tmp_path / "k.db", create=True) as index:
        index.add(folder)
        report = index.duplicates()
    assert sorted(sorted(names(g)) for g in report.groups) == \
        [sorted([f"{k}.png", f"{k}_half.jpg", f"{k}_180.jpg", f"{k}_flip.jpg"]) for k in range(1, 5)]
    assert all(g.tier == 2 for g in report.groups)
    symmetry = {os.path.basename(m.path): m.symmetry for g in report.groups for m in g.members}
    assert symmetry["1_180.jpg"] == "rotated 180°" and symmetry["1_flip.jpg"] == "flipped upside down"


def test_a_tampered_thumbnail_is_found_by_check_and_refused(fresh):
    _, db = fresh
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE structure_thumbnails SET thumb = x'00ff' WHERE image_id = (SELECT min(id) FROM images)")
    finding = {f.name: f for f in Index.check(db, files=False).findings}["structure_thumbnails"]
    assert not finding.ok and "wrong size" in finding.detail
    with Index.open(db) as index, pytest.raises(DatabaseError, match="structure thumbnail"):
        index.duplicates()
