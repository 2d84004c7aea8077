"""Hostile conditions around the index database (issue 14, defects 7, 9, 10, 11 and 15): a symlinked path beside
the real one, histograms of an old codebook, full disks, queries during a rebuild, a restored backup, tampered
values, a database that may be read but not written. See docs/reliability.md."""

import os
import shutil
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from cbir import BusyError, DatabaseError, EvaluationError, Index, Tuning
from cbir.experiments.evaluate import run_experiment
from cbir.store import Store
from helpers import ROOT, rows, write_photos


@pytest.fixture
def indexed(tmp_path):
    photos = write_photos(tmp_path / "photos", 12, size=(16, 16))
    db = tmp_path / "i.db"
    with Index.open(db, create=True) as index:
        index.add(photos, settings={"colors": 8})
    return photos, db


def test_a_symlinked_database_path_is_the_same_database_to_the_writer_lock(indexed, tmp_path):
    _, db = indexed
    link = tmp_path / "link.db"
    os.symlink(db, link)
    with Store.open(db) as first, Store.open(link) as second:
        first.lock_for_writing()
        with pytest.raises(BusyError, match="another cbir index run"):
            second.lock_for_writing()


def test_histograms_of_an_old_codebook_are_found_left_out_and_made_again(indexed, cli):
    """A writer that bypassed the lock (before: through a symlinked path, during a rebuild) wrote histograms made
    with the old codebook under the new one; check said consistent and no run repaired them."""
    photos, db = indexed
    with sqlite3.connect(db) as conn:  # what such a writer leaves: two rows of the codebook before the current one
        conn.execute("UPDATE histograms SET codebook = codebook - 1 WHERE image_id IN "
                     "(SELECT id FROM images WHERE path IN ('photos/p1.png', 'photos/p2.png'))")
    code, out, _ = cli("check", "--db", db)
    assert code == 1 and "PROBLEM: other_codebook: 2 histograms made with another codebook" in out
    with Index.open(db) as index:
        assert len(index) == 10  # left out of searches
    with Index.open(db) as index:
        report = index.add(photos)
    assert (report.updated, report.unchanged) == (2, 10)
    code, out, _ = cli("check", "--db", db)
    assert code == 0, out


def test_a_rebuild_that_stops_leaves_the_old_index_as_it_was(indexed, monkeypatch):
    """Before: a rebuild deleted the index first, so a full disk (or Ctrl-C, a kill) left 0 or 512 of 1000."""
    from cbir.index import run

    photos, db = indexed
    before = rows(db, "SELECT path, vector FROM images JOIN histograms ON image_id = id ORDER BY path")
    real = run._Batches.write
    calls = []

    def full_disk(self):
        calls.append(1)
        if len(calls) == 2:
            raise DatabaseError("i.db: no space left on the disk (database or disk is full)")
        real(self)

    monkeypatch.setattr(run._Batches, "write", full_disk)
    tuning = Tuning(batch_size=4)
    with Index.open(db, tuning=tuning) as index:
        with pytest.raises(DatabaseError, match="the rebuild stopped; the index is as it was before it"):
            index.add(photos, settings={"colors": 6}, rebuild=True)
    assert rows(db, "SELECT path, vector FROM images JOIN histograms ON image_id = id ORDER BY path") == before
    assert not [name for (name,) in rows(db, "SELECT name FROM sqlite_master") if name.startswith("rebuild_")]
    monkeypatch.setattr(run._Batches, "write", real)
    with Index.open(db, tuning=tuning) as index:
        report = index.add(photos, settings={"colors": 6}, rebuild=True)
        assert report.updated == 12 and len(index.codebook_colours()[0]) == 6 and len(index) == 12


def _mount_tmpfs(folder, size):
    """A small tmpfs at ``folder`` (a full disk on demand), or skip where mounting is not allowed."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")


def _fill(folder, leave):
    """Fill the file system of ``folder`` until about ``leave`` bytes are free."""
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as handle:
        handle.truncate(0)
        handle.write(bytes(max(0, free - leave)))


@pytest.mark.slow
def test_a_full_disk_says_what_was_kept_and_keeps_the_index_usable(tmp_path, cli):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "8m")
    try:
        photos = write_photos(tmp_path / "photos", 60, size=(24, 24))
        db = disk / "i.db"
        code, out, err = cli("index", photos, "--db", db, "--workers", "1", "-q")
        assert code == 0, err
        more = write_photos(tmp_path / "more", 400, size=(24, 24))
        _fill(disk, 64 << 10)
        code, out, err = cli("index", more, "--db", db, "--workers", "1", "-q")
        assert code == 1 and "no space left on the disk" in err and "written before are kept" in err, err
        assert "if the database is damaged" not in err
        code, out, err = cli("index", photos, "--db", db, "--workers", "1", "-q", "--rebuild", "--codebook-size", "64")
        assert code == 1 and "the rebuild stopped; the index is as it was before it" in err, err
        code, out, err = cli("check", "--db", db, "--no-files")
        assert code == 0, out
        code, out, _ = cli("query", photos / "p3.png", "--db", db, "-n", "1", "--json", "--keep-self")
        assert code == 0 and '"distance": 0.0' in out
    finally:
        subprocess.run(["umount", str(disk)], check=False)


QUERY_LOOP = """
import json, sys, time
from cbir import Index
db, query, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
seen = []
while time.monotonic() < deadline:
    with Index.open(db) as index:
        results = index.search(query, n=0, skip_self=False)
        seen.append([len(results), results[0].distance, len(index.codebook_colours()[0])])
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_queries_during_a_rebuild_see_the_old_index_until_it_is_complete(tmp_path):
    """Before: they answered from the half-built index (1792 of 21000 images, the query image missing), exit 0."""
    from test_hostile_processes import hooked

    photos = write_photos(tmp_path / "photos", 60, size=(16, 16))
    db = tmp_path / "i.db"
    with Index.open(db, create=True) as index:
        index.add(photos, settings={"colors": 8})
    # sample_keep_bytes=0: the rebuild decodes each file again in its main pass, slowed by the hook
    env = hooked(tmp_path, delay=0.03, batch_size=4, sample_keep_bytes=0)
    rebuild = subprocess.Popen([sys.executable, "-m", "cbir", "index", str(photos), "--db", str(db), "--rebuild",
                                "--codebook-size", "6", "--workers", "1", "-q"], env=env, stderr=subprocess.PIPE, text=True)
    queries = subprocess.run([sys.executable, "-c", QUERY_LOOP, str(db), str(photos / "p7.png"), "2.5"],
                             capture_output=True, text=True, timeout=120)
    _, err = rebuild.communicate(timeout=120)
    assert rebuild.returncode == 0, err
    import json

    seen = json.loads(queries.stdout)
    assert seen and all(count == 60 and distance == 0.0 for count, distance, _ in seen), seen
    assert {colours for _, _, colours in seen} <= {8, 6}
    with Index.open(db) as index:
        assert len(index) == 60 and len(index.codebook_colours()[0]) == 6


def test_a_restored_backup_does_not_take_a_search_cache_made_since(tmp_path):
    """The cache was tied to a counter: a backup restored and changed as often as the original matched a cache of
    other content (a query then missed an exact match)."""
    photos = write_photos(tmp_path / "photos", 30, size=(16, 16))
    db = tmp_path / "i.db"
    large = Tuning(raw_in_memory_bytes=0, search_cache_rows=1)
    with Index.open(db, create=True, tuning=large) as index:
        index.add(photos / "p1.png", settings={"colors": 8, "layout": "global"})
    shutil.copy(db, tmp_path / "backup.db")
    more = write_photos(tmp_path / "more", 3, size=(16, 16))
    with Index.open(db, tuning=large) as index:
        index.add(more / "p0.png")  # a change, and a cache for it
    shutil.copy(tmp_path / "backup.db", db)  # restored, then changed as often, with other content
    with Index.open(db, tuning=large) as index:
        index.add(more / "p2.png", search_cache=False)
        found = index.search(more / "p2.png", n=1, skip_self=False)[0]
    assert found.distance == 0.0 and found.path.endswith("p2.png")


def test_evaluate_refuses_to_rebuild_a_database_that_holds_other_photos(indexed, tmp_path):
    photos, db = indexed
    labelled = write_photos(tmp_path / "labelled", 4, size=(16, 16))
    (tmp_path / "labels.csv").write_text("path,label\np0.png,a\np1.png,a\np2.png,b\np3.png,b\n")
    with pytest.raises(EvaluationError, match="12 images that are not in the labels file"):
        run_experiment(labelled, tmp_path / "labels.csv", db=db, rebuild=True)
    assert rows(db, "SELECT count(*) FROM images") == [(12,)]


@pytest.mark.parametrize("change, what", [
    ("UPDATE codebook SET share = 'abc' WHERE id = 3", "share 'abc'"),
    ("UPDATE codebook SET hex = 'zz' WHERE id = 3", "hex 'zz'"),
    ("UPDATE codebook SET share = NULL WHERE id = 3", "share None"),
])
def test_a_tampered_codebook_is_an_error_everywhere_and_a_finding_of_check(indexed, cli, tmp_path, change, what):
    _, db = indexed
    with sqlite3.connect(db) as conn:
        conn.execute(change)
    for command in (["query", "--color", "red:50"], ["info", "--palette", tmp_path / "palette.png"], ["check"]):
        code, out, err = cli(*command, "--db", db)
        assert code == 1 and "Traceback" not in out + err, (command, out, err)
        assert what in out + err and "nan" not in out, (command, out, err)


@pytest.mark.parametrize("path", ["x'00ff'", "NULL"])
def test_an_image_path_that_is_not_text_stops_an_index_run_clearly_and_a_rebuild_mends_it(indexed, cli, path):
    photos, db = indexed
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE images SET path = {path} WHERE id = 2")
    code, _, err = cli("index", photos, "--db", db, "-q")
    assert code == 1 and "has a path that is not text" in err and "Traceback" not in err
    code, out, err = cli("index", photos, "--db", db, "-q", "--rebuild")
    assert code == 0 and "failed 0" in out and rows(db, "SELECT count(*) FROM images") == [(12,)], err
    assert cli("check", "--db", db)[0] == 0


def test_settings_that_cannot_work_are_not_stored(indexed, cli):
    photos, db = indexed
    code, _, err = cli("index", photos, "--db", db, "--sigma", "inf", "-q")
    assert code == 1 and "sigma must be positive and finite" in err
    assert cli("query", photos / "p1.png", "--db", db, "-n", "1")[0] == 0


def _read_only_copy(source, folder):
    """``source`` (and its -wal, if any) copied into ``folder``, then files and folder made read-only."""
    folder.mkdir()
    for suffix in ("", "-wal"):
        if os.path.exists(f"{source}{suffix}"):
            shutil.copy(f"{source}{suffix}", folder / f"index.db{suffix}")
    for name in os.listdir(folder):
        os.chmod(folder / name, 0o444)
    os.chmod(folder, 0o555)
    return folder / "index.db"


@pytest.mark.slow
def test_a_database_that_may_be_read_but_not_written_answers_queries(tmp_path):
    """Before: "not a cbir index database (attempt to write a readonly database)"; the shipped sample index is in WAL
    mode, so the README's quick start failed without write access."""
    from test_hostile_collections import _as_unprivileged

    sample = _read_only_copy(ROOT / "sample_index" / "index.db", tmp_path / "sample")
    assert open(sample, "rb").read(20)[18:20] == b"\x02\x02"  # WAL mode
    query = ROOT / "sample_index" / "images" / "kodim01.jpg"
    try:
        done = subprocess.run(_as_unprivileged([sys.executable, "-m", "cbir", "query", str(query), "--db", str(sample),
                                                "-n", "3"]), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "Error" not in done.stderr, done.stderr
        done = subprocess.run(_as_unprivileged([sys.executable, "-m", "cbir", "index", str(query.parent), "--db",
                                                str(sample), "-q"]), capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "cannot be written here" in done.stderr, done.stderr
    finally:
        os.chmod(tmp_path / "sample", 0o755)
