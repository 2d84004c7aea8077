import json
import os
import sqlite3

import pytest
from helpers import make_photo, rows, write_photos

from cbir import DatabaseError, Index
from cbir.core.histogram import n_blocks
from cbir.imageio import write_image
from cbir.settings import Settings


@pytest.fixture
def photos(tmp_path):
    folder = write_photos(tmp_path / "photos", 6)
    (folder / "sub").mkdir()
    write_image(folder / "sub" / "q.jpg", make_photo(10))
    return folder


def test_index_then_query_ranks_itself_first_at_distance_zero_when_kept(cli, photos, tmp_path):
    db = tmp_path / "i.db"
    code, out, err = cli("index", photos, "--db", db, "--codebook-size", 16)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "added 7, updated 0, unchanged 0, removed 0, failed 0"
    code, out, err = cli("query", photos / "p3.png", "--db", db, "--json", "-n", 3, "--keep-self")
    assert code == 0 and err == ""
    document = json.loads(out)
    assert document["query"] == str(photos / "p3.png")
    assert [r["rank"] for r in document["results"]] == [1, 2, 3]
    first = document["results"][0]
    assert first["path"].endswith("p3.png") and first["distance"] == 0.0
    distances = [r["distance"] for r in document["results"]]
    assert distances == sorted(distances)


def test_an_indexed_query_file_is_left_out_of_its_own_results(cli, photos, tmp_path):
    """--skip-self is the default: the query file, when indexed, does not take result 1 at distance 0; n results
    still come back. A query file that is not indexed loses nothing."""
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db, "--codebook-size", 16)
    code, out, _ = cli("query", photos / "p3.png", "--db", db, "--json", "-n", 3)
    results = json.loads(out)["results"]
    assert code == 0 and len(results) == 3 and not any(r["path"].endswith("p3.png") for r in results)
    assert results[0]["distance"] > 0 and [r["rank"] for r in results] == [1, 2, 3]
    code, out, _ = cli("query", photos / "p3.png", "--db", db, "--json", "-n", 0)
    assert len(json.loads(out)["results"]) == 6
    outside = tmp_path / "copy.png"
    outside.write_bytes((photos / "p3.png").read_bytes())
    code, out, _ = cli("query", outside, "--db", db, "--json", "-n", 1)
    assert json.loads(out)["results"][0]["path"].endswith("p3.png")
    with Index.open(db) as index:
        assert not any(r.path.endswith("p3.png") for r in index.search(photos / "p3.png", n=3))
        assert index.search(photos / "p3.png", n=1, skip_self=False)[0].distance == 0


def test_query_json_lines_and_full_ranking(cli, photos, tmp_path):
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db, "--codebook-size", 16)
    code, out, _ = cli("query", photos / "p0.png", photos / "p1.png", "--db", db, "--json", "-n", 0)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    assert all(len(json.loads(line)["results"]) == 6 for line in lines)  # all but the query file itself


def test_table_output(cli, photos, tmp_path):
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db, "--codebook-size", 16)
    code, out, _ = cli("query", photos / "p2.png", "--db", db, "-n", 2)
    assert code == 0 and "rank" in out and "p2.png" in out


def test_incremental_add_modify_delete(cli, photos, tmp_path):
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db, "--codebook-size", 16)
    code, out, _ = cli("index", photos, "--db", db)
    assert out.strip() == "added 0, updated 0, unchanged 7, removed 0, failed 0"
    write_image(photos / "new.png", make_photo(20))
    write_image(photos / "p1.png", make_photo(21))
    os.utime(photos / "p1.png", ns=(1, 1))  # a different mtime even on coarse clocks
    (photos / "p2.png").unlink()
    os.utime(photos / "p3.png", ns=(2, 2))  # touched, same content
    code, out, _ = cli("index", photos, "--db", db)
    assert code == 0
    assert out.strip() == "added 1, updated 1, unchanged 5, removed 1, failed 0"
    assert rows(db, "SELECT count(*) FROM images")[0][0] == 7
    assert rows(db, "SELECT count(*) FROM histograms")[0][0] == 7
    with Index.open(db) as index:
        assert index.search(str(photos / "p1.png"), n=1, skip_self=False)[0].path.endswith("p1.png")
        assert index.search(str(photos / "p1.png"), n=1, skip_self=False)[0].distance == 0.0


def test_a_corrupt_file_among_good_ones_is_reported_and_skipped(cli, photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "empty.png").write_bytes(b"")
    db = tmp_path / "i.db"
    code, out, err = cli("index", photos, "--db", db, "--codebook-size", 16)
    assert code == 3
    assert "failed 2" in out
    assert "broken.jpg" in err and "empty.png" in err and "Traceback" not in err
    assert rows(db, "SELECT count(*) FROM images")[0][0] == 7
    reasons = dict(rows(db, "SELECT path, reason FROM failures"))
    assert set(os.path.basename(p) for p in reasons) == {"broken.jpg", "empty.png"}
    # fixed on disk: indexed next time, and the failure is gone
    write_image(photos / "broken.jpg", make_photo(30))
    (photos / "empty.png").unlink()
    code, out, _ = cli("index", photos, "--db", db)
    assert code == 0 and out.strip() == "added 1, updated 0, unchanged 7, removed 0, failed 0"
    assert rows(db, "SELECT count(*) FROM failures")[0][0] == 0


def test_query_on_missing_or_empty_database_is_a_clear_error(cli, photos, tmp_path):
    code, out, err = cli("query", photos / "p0.png", "--db", tmp_path / "missing.db")
    assert code == 1 and out == "" and err.startswith("Error: no index database")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli("index", empty, "--db", tmp_path / "e.db")
    assert code == 1 and err.startswith("Error: no image files") and not (tmp_path / "e.db").exists()
    with Index.open(tmp_path / "e.db", create=True) as index:  # made, and something stored in it, but no codebook
        index._store.write_batch(failures=[("x.png", "unreadable", 1, 1)])
    code, _, err = cli("query", photos / "p0.png", "--db", tmp_path / "e.db")
    assert code == 1 and err.startswith("Error:") and "index some photos first" in err
    assert not (tmp_path / "missing.db").exists()


def test_bad_query_image_is_a_clear_error(cli, photos, tmp_path):
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db, "--codebook-size", 16)
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    code, out, err = cli("query", tmp_path / "bad.jpg", "--db", db)
    assert code == 1 and out == "" and err.startswith("Error:") and "bad.jpg" in err


def test_other_codebook_size_needs_rebuild_and_rebuild_works(cli, photos, tmp_path):
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db, "--codebook-size", 16)
    code, _, err = cli("index", photos, "--db", db, "--codebook-size", 32)
    assert code == 1 and "--rebuild" in err and "colors=16" in err
    code, out, _ = cli("index", photos, "--db", db, "--codebook-size", 32, "--rebuild")
    assert code == 0 and out.strip() == "added 0, updated 7, unchanged 0, removed 0, failed 0"
    with Index.open(db) as index:
        assert len(index.codebook_colours()[0]) == 32
        assert index.histograms(index.image_paths()[0]).shape == (7, 32 * n_blocks(Settings().layout))


@pytest.mark.parametrize("tampering, message", [
    ("UPDATE meta SET value = '99' WHERE key = 'schema_version'", "schema version 99"),  # another schema version
    ("UPDATE histograms SET vector = x'0000' WHERE image_id = 1", "damaged"),  # a histogram BLOB of the wrong size
])
def test_database_of_another_schema_or_tampered_is_a_clear_error(cli, photos, tmp_path, tampering, message):
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db, "--codebook-size", 16)
    with sqlite3.connect(db) as conn:
        conn.execute(tampering)
    code, _, err = cli("query", photos / "p0.png", "--db", db)
    assert code == 1 and message in err


def test_foreign_database_is_refused(cli, photos, tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    code, _, err = cli("query", photos / "p0.png", "--db", db)
    assert code == 1 and "not a cbir index database" in err
    (tmp_path / "text.db").write_text("hello, not sqlite")
    code, _, err = cli("info", "--db", tmp_path / "text.db")
    assert code == 1 and err.startswith("Error:")


@pytest.mark.parametrize("name", ["with space.png", "quo'te\".png", "ünïcødé-写真.png"])
def test_awkward_path_names_round_trip(cli, tmp_path, name):
    folder = tmp_path / "odd dir"
    folder.mkdir()
    write_image(folder / name, make_photo(1))
    write_image(folder / "other.png", make_photo(2))
    db = tmp_path / "i.db"
    assert cli("index", folder, "--db", db, "--codebook-size", 8)[0] == 0
    code, out, _ = cli("query", folder / name, "--db", db, "--json", "--keep-self")
    assert code == 0
    assert os.path.basename(json.loads(out)["results"][0]["path"]) == name


def test_info_reports_counts_and_settings(cli, photos, tmp_path):
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db, "--codebook-size", 16)
    code, out, _ = cli("info", "--db", db, "--json")
    info = json.loads(out)
    assert code == 0 and info["images"] == 7 and info["failures"] == 0
    assert len(info["codebook"]) == 16 and info["settings"]["colors"] == 16 and info["bytes"] > 0
    code, out, _ = cli("info", "--db", db)
    assert "images: 7 indexed" in out


def test_python_api_searches_by_array_and_by_path(photos, tmp_path):
    from cbir import read_image

    with Index.open(tmp_path / "i.db", create=True) as index:
        report = index.add([photos], settings={"colors": 16})
        assert report.added == 7 and report.failed == 0
        by_path = index.search(str(photos / "p4.png"), n=3, skip_self=False)
        by_array = index.search(read_image(photos / "p4.png"), n=3)
        assert [r.path for r in by_path] == [r.path for r in by_array]
        assert by_path[0].distance == 0.0
    with pytest.raises(DatabaseError):
        Index.open(tmp_path / "nope.db")


def test_db_from_environment_variable(cli, photos, tmp_path):
    db = tmp_path / "env.db"
    code, _, _ = cli("index", photos, "--codebook-size", 8, env={"CBIR_DB": str(db)})
    assert code == 0 and db.exists()
