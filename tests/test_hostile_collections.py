"""Hostile collections and names (issue 14, defects 12, 13 and 14): folders that cannot be listed, paths too long,
FIFOs and devices named like images, names that are not UTF-8 or hold terminal escape sequences, a deleted working
directory, settings that cannot work, 100,000-style cloud placeholders. See docs/reliability.md."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from cbir import Index, parse_colour
from cbir.errors import ColourError, SettingsError
from cbir.settings import Settings
from helpers import make_photo, rows, write_photos
from cbir.imageio import write_image


def test_fifos_and_devices_named_like_images_are_reported_not_skipped(tmp_path):
    photos = write_photos(tmp_path / "photos", 3, size=(16, 16))
    os.mkfifo(photos / "pipe.jpg")
    os.symlink("/dev/null", photos / "device.png")
    with Index.open(tmp_path / "i.db", create=True) as index:
        report = index.add(photos, settings={"colors": 8})
    assert report.added == 3
    assert sorted(report.failures) == [(str(photos / "device.png"), "is a character device, not an image file"),
                                       (str(photos / "pipe.jpg"), "is a FIFO (named pipe), not an image file")]


def _deep_folder(base, length):
    """A folder whose path is longer than ``length`` bytes (made step by step through folder descriptors, as no
    single path that long can be passed to the system)."""
    name = "d" * 200
    fd = os.open(base, os.O_RDONLY)
    depth = 0
    try:
        while len(str(base)) + depth * (len(name) + 1) <= length:
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, depth = inner, depth + 1
        with open(os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as handle:
            from cbir.imageio import encode_image

            handle.write(encode_image(make_photo(1, (8, 8)), ".png"))
    finally:
        os.close(fd)
    return os.path.join(base, *[name] * depth)


def test_a_path_too_long_to_open_is_reported(tmp_path):
    photos = write_photos(tmp_path / "photos", 2, size=(16, 16))
    deep = _deep_folder(photos, 4200)
    with Index.open(tmp_path / "i.db", create=True) as index:
        report = index.add(photos, settings={"colors": 8})
    assert report.added == 2
    [(path, reason)] = report.failures
    assert deep.startswith(path) and reason.startswith("cannot list this folder (path too long for the system)")


def _as_unprivileged(command):
    """``command`` run so that file permissions apply to it: as is for a user, without the capabilities that let
    root read anything when run as root (skips where that cannot be done)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("root reads every folder and setpriv is not there to drop that")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]


@pytest.mark.slow
def test_an_unreadable_folder_is_a_failure_and_its_images_are_kept(tmp_path):
    """Before: skipped with exit 0 and no word, and its images counted as removed."""
    photos = tmp_path / "photos"
    write_photos(photos / "open", 2, size=(16, 16))
    write_photos(photos / "locked", 2, size=(16, 16))
    db = tmp_path / "i.db"
    with Index.open(db, create=True) as index:
        assert index.add(photos, settings={"colors": 8}).added == 4
    os.chmod(photos / "locked", 0)
    try:
        done = subprocess.run(_as_unprivileged([sys.executable, "-m", "cbir", "index", str(photos), "--db", str(db)]),
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        os.chmod(photos / "locked", 0o755)
    assert done.returncode == 3, done.stderr
    assert "failed: photos/locked: cannot list this folder (Permission denied); what was indexed from it is kept" \
        in done.stderr
    assert "removed 0," in done.stdout
    assert rows(db, "SELECT count(*) FROM images") == [(4,)]


def test_a_collection_under_a_folder_whose_name_is_not_utf8_is_indexed(tmp_path):
    """The database beside the photos keeps paths relative to its folder: the odd bytes above are not stored."""
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    photos = write_photos(folder / "photos", 3, size=(16, 16))
    with Index.open(folder / "i.db", create=True) as index:
        report = index.add(photos, settings={"colors": 8})
        assert (report.added, report.failed) == (3, 0)
        assert index.search(photos / "p1.png", n=1, skip_self=False)[0].path == str(photos / "p1.png")


@pytest.mark.slow  # several seconds of CLI runs: kept out of the quick loop
def test_names_that_are_not_utf8_or_hold_escape_sequences_are_printed_safely(cli, tmp_path):
    photos = write_photos(tmp_path / "photos", 3, size=(16, 16))
    odd = os.fsdecode(b"odd\xff.png")
    write_image(photos / odd, make_photo(7, (16, 16)))
    escape = "red\x1b[31mALERT\x1b[0m\x07.png"
    write_image(photos / escape, make_photo(8, (16, 16)))
    db = tmp_path / "i.db"
    code, _, err = cli("index", photos, "--db", db, "-q")
    assert code == 3 and "odd\\xff.png: file name is not valid UTF-8" in err
    assert "\x1b" not in err
    for arguments in ([photos / odd], [photos / escape]):
        code, out, err = cli("query", *arguments, "--db", db, "-n", "2")
        assert code == 0 and "\x1b" not in out + err and "\x07" not in out + err
        code, out, err = cli("query", *arguments, "--db", db, "-n", "2", "--json")
        assert "\x1b" not in out  # JSON escapes control characters (\u001b)
        document = json.loads(out.encode("utf-8"))  # valid UTF-8, whatever the name
        assert document["query"].endswith(("/odd\\xff.png", "/" + escape))
    code, out, _ = cli("query", photos / escape, "--db", db, "-n", "1", "--keep-self")
    assert "x1b[31mALERT" in out and "\x1b" not in out  # shown escaped (TSV doubles the backslash)


@pytest.mark.slow
def test_a_name_that_is_not_utf8_on_a_strict_terminal_gives_no_traceback(tmp_path):
    photos = write_photos(tmp_path / "photos", 3, size=(16, 16))
    odd = photos / os.fsdecode(b"odd\xff.png")
    write_image(odd, make_photo(7, (16, 16)))
    db = tmp_path / "i.db"
    with Index.open(db, create=True) as index:
        index.add(photos, settings={"colors": 8})
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "cbir", "query", os.fsencode(odd), "--db", str(db), "-n", "1"],
                          capture_output=True, env=env, timeout=60)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
    assert b"xff.png" in done.stdout and b"\xff" not in done.stdout.replace(b"\\xff", b"")


@pytest.mark.slow
def test_a_deleted_working_directory_is_a_clear_error(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    script = "import os, sys; os.rmdir(sys.argv[1]); from cbir.__main__ import main; sys.argv = ['cbir', 'info']; main()"
    done = subprocess.run([sys.executable, "-c", script, str(gone)], capture_output=True, text=True, timeout=60,
                          cwd=gone)
    assert done.returncode == 1 and done.stderr.startswith("Error: the current folder no longer exists"), done.stderr


def test_values_that_cannot_work_are_refused_up_front(cli, tmp_path):
    with pytest.raises(ColourError):
        parse_colour("lab(50,-9e399,9e399)")
    with pytest.raises(SettingsError, match="sigma must be positive and finite"):
        Settings(sigma=float("inf"))
    with pytest.raises(SettingsError, match="seed must be"):
        Settings(seed=-1)
    photo = tmp_path / "p.png"
    write_image(photo, make_photo(1, (16, 16)))
    code, _, err = cli("quantize", photo, "-k", "4", "--seed", "-1", "-o", tmp_path / "q.png")
    assert code == 2 and "Traceback" not in err
    code, _, err = cli("index", tmp_path, "--db", tmp_path / "i.db", "--sigma", "inf", "-q")
    assert code == 1 and "sigma must be positive and finite" in err
    photos = write_photos(tmp_path / "photos", 101, size=(8, 8))
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add(photos, settings={"colors": 4})
    # a whole ranking as pictures (before: 8 GB for -n 0 --montage): the first 100 results are drawn (issue 13)
    code, _, err = cli("query", photo, "--db", tmp_path / "i.db", "-n", "0", "--montage", tmp_path / "m.png")
    assert code == 0 and "the pictures show the first 100 results" in err


@pytest.mark.slow  # 2,000 files
def test_cloud_placeholders_do_not_hide_the_photos_beside_them(tmp_path):
    """2,000 empty .jpg files (cloud placeholders) beside 3 photos: before, the 1000 sampled files were all
    placeholders, "none could be read", and the photos could never be indexed."""
    photos = write_photos(tmp_path / "photos", 3, size=(16, 16))
    for i in range(2000):
        (photos / f"placeholder{i:04d}.jpg").touch()
    with Index.open(tmp_path / "i.db", create=True) as index:
        report = index.add(photos, settings={"colors": 8})
    assert (report.added, report.failed, report.codebook_learned) == (3, 2000, True)


@pytest.mark.parametrize("meta", ["CREATE TABLE meta(value)", "CREATE TABLE meta(a, b, c)",
                                  "CREATE VIEW meta AS SELECT 1 AS key, 2 AS value",
                                  "CREATE TABLE meta(key, value); INSERT INTO meta VALUES (x'ff', NULL)"])
def test_check_reports_a_foreign_meta_table(cli, tmp_path, meta):
    import sqlite3

    photos = write_photos(tmp_path / "photos", 3, size=(16, 16))
    db = tmp_path / "i.db"
    with Index.open(db, create=True) as index:
        index.add(photos, settings={"colors": 8})
    with sqlite3.connect(db) as conn:
        conn.executescript(f"DROP TABLE meta; {meta};")
    code, out, err = cli("check", "--db", db)
    assert code == 1 and "problems found" in out and "Traceback" not in out + err
