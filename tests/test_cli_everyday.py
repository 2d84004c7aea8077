"""The command line as a new user meets it: output a script can use, paths never cut, plain help, usage errors,
bounded and linked results pages."""

import csv
import io
import json
import os
import re

import numpy as np
import pytest
from helpers import make_photo, write_photos

from cbir import Index
from cbir.cli import docgen
from cbir.imageio import write_image


@pytest.fixture
def long_paths(tmp_path):
    """Photos in a folder with a long name, two of them whose names differ only at the end."""
    folder = tmp_path / ("a folder with a rather long name for holiday photos " * 2).strip() / "another level"
    folder.mkdir(parents=True)
    for i, name in enumerate(["IMG_0001 beach at sunset with the family.png", "IMG_0001 beach at sunset with the "
                              "friends.png", "short.png"]):
        write_image(folder / name, make_photo(i))
    db = tmp_path / "i.db"
    with Index.open(db, create=True) as index:
        index.add(folder, settings={"colors": 8}, workers=1)
    return folder, db


def test_paths_are_never_cut_and_a_pipe_gets_plain_text(cli, long_paths):
    """cbir query IMG > out.txt used to draw an 80-column table with every long path cut to 'folder/anot…'."""
    folder, db = long_paths
    query = folder / "short.png"
    code, out, err = cli("query", query, "--db", db)  # stdout is not a terminal here: tab-separated text
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "query\trank\tdistance\tpath" and "…" not in out
    paths = [line.split("\t")[3] for line in lines[1:]]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir() if p.name != "short.png")
    code, out, _ = cli("query", query, "--db", db, "--format", "paths")
    assert sorted(out.splitlines()) == sorted(paths) and all(os.path.exists(p) for p in out.splitlines())
    code, out, _ = cli("query", query, "--db", db, "--format", "csv")
    assert [row["path"] for row in csv.DictReader(io.StringIO(out))] == paths
    code, out, _ = cli("query", query, "--db", db, "--format", "table")
    assert "…" not in out and "query: " in out
    flat = re.sub(r"[\s│┃|]", "", out)  # a path folds over lines in a narrow table, never loses a character
    assert all(re.sub(r"\s", "", p) in flat for p in paths)
    code, out, _ = cli("query", query, "--db", db, "--format", "json")
    assert [r["path"] for r in json.loads(out)["results"]] == paths
    code, out, err = cli("query", query, "--db", db, "--json", "--format", "csv")
    assert code == 2 and "disagree" in err


def test_tsv_escapes_what_would_break_a_line():
    from cbir.cli.output import _tsv_field

    assert _tsv_field("a\tb\nc\\d") == "a\\tb\\nc\\\\d"


def test_version_help_and_completion(cli):
    from cbir import __version__

    code, out, err = cli("--version")
    assert code == 0 and out.strip() == f"cbir {__version__}"  # it exited 2, 'Missing command'
    code, out, _ = cli("-h")
    assert code == 0 and "--install-completion" in out and "Commands:" in out
    code, out, _ = cli("query", "-h")
    assert code == 0 and " query [OPTIONS] [IMAGE...]\n" in out.splitlines(keepends=True)[0]


def test_help_names_values_plainly_everywhere(cli):
    """No {image}, <list[Path]> or <int range>; --colors no longer means two things; the --db default said once."""
    texts = [docgen.help_text()] + [docgen.help_text(name) for name in docgen.commands()]
    for text in texts:
        assert not re.search(r"\{\w+\}|<list\[|<int|<float|<path>|<str>", text), text
    index_help = docgen.help_text("index")
    assert "--codebook-size K" in index_help and "--colors" not in index_help
    assert "--colors" not in docgen.help_text("quantize") and "-q, --quiet" in docgen.help_text("quantize")
    assert index_help.count("cbir.db") == 1


@pytest.mark.parametrize("args", [
    ("index", "{photos}", "--layout", "diagonal"), ("index", "{photos}", "--space", "hsv"),
    ("index", "{photos}", "--power", "2"), ("index", "{photos}", "--sigma", "0"),
    ("index", "{photos}", "--codebook-size", "1"), ("query", "{photos}/p0.png", "--kernel", "box"),
    ("query", "--color", "blurple"), ("query", "{photos}/p0.png", "--format", "xml"),
    ("query", "{photos}/p0.png", "-n", "-1"), ("quantize", "{photos}/p0.png", "--space", "hsv"),
    ("quantize", "{photos}/p0.png", "--sweep", "a,b"), ("evaluate", "{photos}", "--labels", "x.csv", "--distance", "cos"),
    ("evaluate", "{photos}", "--labels", "x.csv", "--layout", "4x4"), ("remove", "--db", "{db}"),
])
def test_bad_option_values_are_usage_errors_in_every_command(cli, tmp_path, args):
    photos = write_photos(tmp_path / "photos", 2)
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db)
    code, out, err = cli(*(a.format(photos=photos, db=db) for a in args), "--db", db) if "--db" not in args else \
        cli(*(a.format(photos=photos, db=db) for a in args))
    assert code == 2 and out == "", (args, err)


@pytest.mark.slow
def test_a_full_ranking_page_is_bounded(cli, tmp_path):
    """-n 0 --html wrote every result (36 MB, a contact sheet 31,235 px tall over Wang): at most PAGE_LIMIT now."""
    from cbir.cli.pictures import PAGE_LIMIT

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(PAGE_LIMIT + 5):
        write_image(photos / f"p{i:03d}.png", np.full((8, 8, 3), (i * 7 % 256, i * 13 % 256, i * 29 % 256), np.uint8))
    db = tmp_path / "i.db"
    assert cli("index", photos, "--db", db, "--workers", 1)[0] == 0
    code, out, err = cli("query", photos / "p000.png", "--db", db, "-n", 0, "--html", tmp_path / "r.html",
                         "--montage", tmp_path / "m.png")
    assert code == 0 and len(out.splitlines()) == PAGE_LIMIT + 5  # the ranking on stdout is whole
    assert f"the pictures show the first {PAGE_LIMIT} results" in err
    assert (tmp_path / "r.html").read_text().count('<figure class="result"') == PAGE_LIMIT


def test_results_page_links_files_names_the_query_and_keeps_absolute_paths_out(cli, tmp_path):
    photos = write_photos(tmp_path / "photos", 4)
    db = tmp_path / "i.db"
    cli("index", photos, "--db", db)
    pages = tmp_path / "pages"
    pages.mkdir()
    page = pages / "r.html"
    assert cli("query", photos / "p1.png", "--db", db, "--html", page)[0] == 0
    text = page.read_text()
    assert "<title>cbir: p1.png</title>" in text
    assert str(tmp_path) not in text  # no absolute path of the user's files in a page meant to be passed on
    links = re.findall(r'<a href="([^"]+)"', text)
    assert len(links) == 3 and all((pages / link).resolve().exists() for link in links)
    assert re.search(r'class="likeness"[^>]*>\d+%<', text)  # a percentage a person reads beside the distance
    assert 'class="other"' in text  # shares under 0.5% drawn as "other colours", not a white gap
    assert cli("query", photos / "p1.png", "--db", db, "--html", page, "--absolute-paths")[0] == 0
    links = re.findall(r'<a href="([^"]+)"', page.read_text())
    assert all(link.startswith("file:///") and os.path.exists(link[7:]) for link in links)
