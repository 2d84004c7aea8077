import json
from html.parser import HTMLParser

import numpy as np
import pytest
from helpers import make_photo, write_photos

from cbir.core.histogram import whole_picture_shares
from cbir.imageio import read_image, write_image
from cbir.viz.page import Picture, Section, makeup_bar, results_page

AWKWARD = "a<b>&\"c' <script>alert(1)</script>.png".replace("/", "_")


class Page(HTMLParser):
    """Collects the tags of a page, to count images and sections and find scripts."""

    def __init__(self, text):
        super().__init__()
        self.tags = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, tag, css_class=None):
        return [a for t, a in self.tags if t == tag and (css_class is None or a.get("class") == css_class)]


@pytest.fixture
def indexed(cli, tmp_path):
    folder = write_photos(tmp_path / "photos", 5)
    write_image(folder / AWKWARD, make_photo(9))
    db = tmp_path / "i.db"
    assert cli("index", folder, "--db", db, "--codebook-size", 16)[0] == 0
    return folder, db


def test_whole_picture_shares_of_layouts():
    k = 3
    two = np.array([[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1]], np.float32)
    assert whole_picture_shares(two, k, "2x2")[0] == pytest.approx([0.25, 0.25, 0.5])
    with pytest.raises(ValueError):
        whole_picture_shares(two, k, "global")
    first = np.zeros((1, 6 * k), np.float32)
    first[0, :3] = [0.2, 0.3, 0.5]
    assert whole_picture_shares(first, k, "global+center")[0] == pytest.approx([0.2, 0.3, 0.5])


def test_results_page_escapes_every_text():
    evil = '<img src=x onerror="alert(1)">&'
    picture = Picture(evil, evil, b"\xff\xd8", makeup=[("#ff0000", 0.7), ("#00ff00", 0.3)], rank=1, distance=0.5)
    page = results_page([Section(Picture(evil, evil, b"x"), [picture])], title=evil, meta=evil)
    assert evil not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    parsed = Page(page)
    assert len(parsed.all("img")) == 2 and not parsed.all("script")
    assert all(a["src"].startswith("data:image/jpeg;base64,") for a in parsed.all("img"))
    assert "Content-Security-Policy" in page
    with pytest.raises(ValueError):
        makeup_bar([("red;background:url(x)", 1.0)])


def test_html_page_for_several_queries(cli, indexed, tmp_path):
    folder, db = indexed
    page_path = tmp_path / "out" / "results.html"
    page_path.parent.mkdir()
    code, out, err = cli("query", folder / "p1.png", folder / AWKWARD, "--color", "white:30", "--db", db, "-n", 4,
                         "--html", page_path, "--json")
    assert code == 0 and err == ""
    assert len([json.loads(line) for line in out.splitlines()]) == 3  # --json: nothing but JSON on stdout
    page = page_path.read_text(encoding="utf-8")
    parsed = Page(page)
    assert [s["data-results"] for s in parsed.all("section", "query")] == ["4", "4", "4"]
    assert len(parsed.all("figure", "result")) == 12 and len(parsed.all("figure", "probe")) == 3
    assert len(parsed.all("img")) == 15 and not parsed.all("script")
    assert AWKWARD not in page and "&lt;script&gt;alert(1)&lt;_script&gt;" in page
    assert "white 30%, any colour 70%" in page
    assert len(parsed.all("div", "bar")) == 15


def test_html_page_notes_a_file_that_has_gone(cli, indexed, tmp_path):
    folder, db = indexed
    (folder / "p2.png").unlink()
    code, _, err = cli("query", folder / "p3.png", "--db", db, "-n", 0, "--html", tmp_path / "r.html")
    assert code == 0 and "wrote" in err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("cannot show:") == 1 and "no such file" in page


def test_montage_and_its_errors(cli, indexed, tmp_path):
    folder, db = indexed
    code, _, err = cli("query", folder / "p0.png", folder / "p1.png", "--db", db, "-n", 3,
                       "--montage", tmp_path / "m.png")
    assert code == 0 and f"wrote {tmp_path / 'm.png'}" in err
    sheet = read_image(tmp_path / "m.png")
    assert sheet.shape[1] > 4 * 160 and sheet.shape[0] > 2 * 120
    code, out, err = cli("query", folder / "p0.png", "--db", db, "--montage", tmp_path / "m.txt")
    assert code == 1 and out == "" and err.startswith("Error: cannot write '.txt'")
    code, _, err = cli("query", folder / "p0.png", "--db", db, "--html", tmp_path / "missing" / "r.html")
    assert code == 1 and err.startswith("Error:") and "cannot write" in err


def test_info_palette(cli, indexed, tmp_path):
    _, db = indexed
    code, out, err = cli("info", "--db", db, "--palette", tmp_path / "codebook.png", "--json")
    assert code == 0 and err == "" and json.loads(out)["images"] == 6
    swatch = read_image(tmp_path / "codebook.png")
    assert swatch.shape == (64, 800, 3)
    assert len(np.unique(swatch.reshape(-1, 3), axis=0)) >= 8
    code, _, err = cli("info", "--db", tmp_path / "none.db", "--palette", tmp_path / "x.png")
    assert code == 1 and err.startswith("Error: no index database")


def test_progress_bar_shows_counts_rate_and_eta_only_on_a_terminal():
    import io

    from rich.console import Console

    from cbir.cli.progress import ProgressBar

    for terminal, enabled, shown in [(True, True, True), (True, False, False), (False, True, False)]:
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=terminal, width=100)
        with ProgressBar("thumbnails", enabled, console) as progress:
            for done in range(1, 4):
                progress(done, 3)
        text = buffer.getvalue()
        assert ("thumbnails" in text and "3/3" in text and "/s" in text) == shown, text
        assert shown or text == ""


def test_json_is_all_that_reaches_stdout_on_every_command(cli, indexed, tmp_path):
    folder, db = indexed
    runs = [
        ("quantize", folder / "p0.png", "-k", 3, "-o", tmp_path / "q.png", "--palette", tmp_path / "s.png"),
        ("index", folder, "--db", db),
        ("query", folder / "p0.png", "--color", "red:10", "--db", db, "--html", tmp_path / "r.html",
         "--montage", tmp_path / "m.png"),
        ("info", "--db", db, "--palette", tmp_path / "c.png"),
    ]
    for args in runs:
        code, out, err = cli(*args, "--json")
        assert code == 0 and err == "", (args, err)
        assert all(json.loads(line) for line in out.splitlines()), args
