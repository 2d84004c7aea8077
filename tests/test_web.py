"""cbir serve through Starlette's test client: pages, the JSON API, thumbnails, limits and errors.

In-process (no server, no browser); the real-browser test is tests/test_web_browser.py.
"""

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
from starlette.testclient import TestClient  # noqa: E402

from cbir import Index  # noqa: E402
from cbir.core.colour_query import parse_target  # noqa: E402
from cbir.imageio import write_image  # noqa: E402
from cbir.web.app import create_app  # noqa: E402
from cbir.web.security import CSP  # noqa: E402
from helpers import make_photo  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "sample_index"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A copy of the shipped sample index and its photos (thumbnails get written beside the copy)."""
    folder = tmp_path_factory.mktemp("sample")
    shutil.copytree(SAMPLE / "images", folder / "images")
    shutil.copy(SAMPLE / "index.db", folder / "index.db")
    return folder / "index.db"


@pytest.fixture(scope="module")
def client(sample):
    with TestClient(create_app(str(sample)), base_url="http://127.0.0.1") as client:
        yield client


def put(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, image)


def image_id(db, name):
    with Index.open(db) as index:
        return next(i.image_id for i in index.folder("images", 0, 100).images if i.stored_path.endswith(name))


def upload(client, data, name="query.jpg", url="/api/search", **fields):
    return client.post(url, files={"image": (name, data, "image/jpeg")}, data=fields)


@pytest.mark.parametrize("url", ["/", "/?folder=images", "/image/1", "/example", "/colour", "/layout", "/duplicates",
                                 "/search?like=1", "/search?color=%231e90ff:40&color=white:20",
                                 "/search?layout=skyblue,skyblue,skyblue,,,,green,green,green",
                                 "/search?pick=%23ff0000&share=30&pick=%23000000&share="])
def test_every_page_answers_with_a_strict_policy(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "http" not in CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in response.text and " style=" not in response.text  # nothing inline for the CSP to stop


def test_upload_finds_the_same_photo_first(client):
    data = (SAMPLE / "images" / "kodim23.jpg").read_bytes()
    results = upload(client, data, n="5").json()["results"]
    assert len(results) == 5
    assert results[0]["path"].endswith("kodim23.jpg") and results[0]["distance"] == pytest.approx(0, abs=1e-6)
    assert results[0]["similarity"] == 1.0
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]


def test_api_rankings_are_the_library_rankings(client, sample):
    """The API ranks as the Index does, for examples and for colours, with the paths the index stores."""
    with Index.open(sample) as index:
        kodim = image_id(sample, "kodim05.jpg")
        expected = index.search_vectors(index.histograms([kodim]), 8)[0]
        colour = index.search_colours(parse_target(["#1e90ff:40", "white:20"]), 5)
    got = client.get(f"/api/search?like={kodim}&n=7").json()["results"]
    assert [r["id"] for r in got] == [r.image_id for r in expected if r.image_id != kodim][:7]  # the example left out
    got = client.get("/api/search?color=%231e90ff:40&color=white:20&n=5").json()
    assert [(r["id"], r["path"]) for r in got["results"]] == [(r.image_id, r.stored_path) for r in colour]
    assert [r["distance"] for r in got["results"]] == pytest.approx([r.distance for r in colour])
    assert got["query"]["kind"] == "colour"


def test_more_like_these_not_like_those_is_the_feedback_engine(client, sample):
    """Marked results go to Index.search (issue 16's relevance feedback), the marked photos left out of the page."""
    with Index.open(sample) as index:
        feedback = index.search([3, 7], 5 + 3, negative=[11])
        target = parse_target(["#1e90ff:40"])
        with_colour = index.search([target, 7], 5 + 1)
    got = client.get("/api/search?like=3&like=7&unlike=11&n=5").json()
    assert got["query"]["feedback"] and got["query"]["like"] == [3, 7] and got["query"]["unlike"] == [11]
    assert [r["id"] for r in got["results"]] == [r.image_id for r in feedback if r.image_id not in (3, 7, 11)][:5]
    assert [r["distance"] for r in got["results"]] == pytest.approx(
        [r.distance for r in feedback if r.image_id not in (3, 7, 11)][:5])
    got = client.get("/api/search?color=%231e90ff:40&like=7&n=5").json()
    assert got["query"]["kind"] == "colour" and got["query"]["params"] == [["color", "#1e90ff:40"]]
    assert [r["id"] for r in got["results"]] == [r.image_id for r in with_colour if r.image_id != 7][:5]
    page = client.get("/search?color=%231e90ff:40&like=7&unlike=2").text
    for hidden in ('name="color" value="#1e90ff:40"', 'name="like" value="7"', 'name="unlike" value="2"'):
        assert hidden in page  # the next round keeps the query and the marks


def test_feedback_after_an_upload_starts_from_the_uploaded_picture(client):
    first = upload(client, (SAMPLE / "images" / "kodim23.jpg").read_bytes(), n="3").json()
    (key, token), = first["query"]["params"]
    assert key == "upload" and first["query"]["kind"] == "upload"
    liked = first["results"][1]["id"]
    again = client.get(f"/api/search?upload={token}&like={liked}&n=5").json()
    assert again["query"]["feedback"] and liked not in [r["id"] for r in again["results"]]
    assert again["results"][0]["path"].endswith("kodim23.jpg")  # the upload itself still leads


def test_a_layout_is_refined_by_the_marked_photos_alone(client):
    got = client.get("/api/search?layout=red,red,red,,,,,,&like=4&n=3").json()
    assert "marked photos rank" in got["query"]["note"] and 4 not in [r["id"] for r in got["results"]]


def test_why_splits_the_distance_by_region(client):
    results = client.get("/api/search?like=3&n=4").json()["results"]
    for result in results:
        regions = result["why"]["regions"]
        assert len(regions) == 10  # global+3x3: overall and nine regions
        assert sum(regions) == pytest.approx(1.0)
        assert sum(result["why"]["colours"].values()) == pytest.approx(1.0)
        assert result["why"]["reasons"] and all(r["share"] > 0 for r in result["why"]["reasons"])
        assert all(r["text"].startswith(("more ", "less ")) for r in result["why"]["reasons"])
    similarities = [r["similarity"] for r in results]
    assert similarities == sorted(similarities, reverse=True) and all(0 <= s <= 1 for s in similarities)


def test_layout_search_puts_a_photo_painted_that_way_first(tmp_path):
    """Paint the 3x3 grid in the colours of a photo made of nine flat cells: that photo ranks first, at distance 0
    when its colours are codebook colours."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(3)
    palettes = [rng.integers(0, 256, (9, 3)) for _ in range(6)]
    for i, colours in enumerate(palettes):
        cells = np.repeat(np.repeat(colours.reshape(3, 3, 3), 30, axis=0), 30, axis=1).astype(np.uint8)
        put(folder / f"grid{i}.png", cells)
    db = tmp_path / "grid.db"
    with Index.open(db, create=True) as index:
        index.add([str(folder)])
    with TestClient(create_app(str(db)), base_url="http://127.0.0.1") as client:
        painted = ",".join("#%02x%02x%02x" % tuple(c) for c in palettes[4])
        results = client.get("/api/search", params={"layout": painted, "n": 3}).json()["results"]
    assert results[0]["path"].endswith("grid4.png")
    assert results[0]["distance"] < results[1]["distance"]


def test_folders_are_browsed_page_by_page(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    for i in range(7):
        put(folder / ("a/b" if i < 3 else "a") / f"p{i}.png", make_photo(i))
    put(folder / "top.png", make_photo(9))
    db = tmp_path / "nested.db"
    with Index.open(db, create=True) as index:
        index.add([str(folder)])
    monkeypatch.setattr("cbir.web.app.PAGE", 2)
    with TestClient(create_app(str(db)), base_url="http://127.0.0.1") as client:
        top = client.get("/api/folder", params={"folder": "photos"}).json()
        assert top["subfolders"] == [{"name": "a", "folder": "photos/a"}] and top["count"] == 1
        a1 = client.get("/api/folder", params={"folder": "photos/a"}).json()
        a2 = client.get("/api/folder", params={"folder": "photos/a", "page": 2}).json()
        assert a1["count"] == 4 and a1["pages"] == 2 and a1["subfolders"][0]["name"] == "b"
        assert [i["name"] for i in a1["images"] + a2["images"]] == ["p3.png", "p4.png", "p5.png", "p6.png"]
        assert client.get("/api/folder", params={"folder": "photos/a", "page": 3}).status_code == 404
        assert [c["name"] for c in a1["parents"]] == ["photos", "a"]


def test_thumbnails_are_cached_by_content_and_remade_when_a_photo_changes(tmp_path):
    folder = tmp_path / "photos"
    put(folder / "one.png", make_photo(1, size=(300, 400)))
    put(folder / "two.png", make_photo(2, size=(300, 400)))
    db = tmp_path / "t.db"
    with Index.open(db, create=True) as index:
        index.add([str(folder)])
        one = next(i for i in index.folder("photos").images if i.stored_path.endswith("one.png"))
    cache = Path(str(db) + "-thumbnails")
    with TestClient(create_app(str(db)), base_url="http://127.0.0.1") as client:
        first = client.get(f"/image/{one.image_id}/thumb")
        assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
        kept = list(cache.rglob("*.jpg"))
        assert [p.name for p in kept] == [f"{one.sha256}-240.jpg"]
        assert client.get(f"/image/{one.image_id}/thumb").content == first.content
        put(folder / "one.png", make_photo(7, size=(300, 400)))  # changed, not indexed again yet
        changed = client.get(f"/image/{one.image_id}/thumb")
        assert changed.status_code == 200 and changed.content != first.content
        assert len(list(cache.rglob("*.jpg"))) == 2


def test_images_are_served_by_id_only(client, sample):
    assert client.get("/image/99999/thumb").status_code == 404
    for url in ["/image/..%2F..%2Fetc%2Fpasswd/thumb", "/image/1/..%2F..%2Findex.db", "/static/..%2F..%2Findex.py",
                "/image/-1/thumb"]:
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"root:" not in response.content and b"SQLite format" not in response.content


def test_an_unreadable_photo_gives_a_placeholder_not_a_failure(tmp_path):
    folder = tmp_path / "photos"
    put(folder / "gone.png", make_photo(1))
    put(folder / "fifo.png", make_photo(2))
    db = tmp_path / "g.db"
    with Index.open(db, create=True) as index:
        index.add([str(folder)])
        ids = {os.path.basename(i.stored_path): i.image_id for i in index.folder("photos").images}
    (folder / "gone.png").unlink()
    (folder / "fifo.png").unlink()
    os.mkfifo(folder / "fifo.png")  # would block a reader forever
    with TestClient(create_app(str(db)), base_url="http://127.0.0.1") as client:
        for name in ("gone.png", "fifo.png"):
            response = client.get(f"/image/{ids[name]}/thumb")
            assert response.status_code == 404 and response.headers["content-type"] == "image/svg+xml"
        assert client.get(f"/image/{ids['fifo.png']}").status_code == 200  # the page itself still shows


def png_declaring(width, height):
    """A tiny PNG whose header declares width x height pixels (a decompression bomb's lie)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_uploads_are_limited_in_bytes_and_pixels(sample):
    with TestClient(create_app(str(sample), max_upload_bytes=200_000, max_upload_pixels=1_000_000),
                    base_url="http://127.0.0.1") as client:
        big = upload(client, b"\xff\xd8" + b"\0" * 300_000)
        assert big.status_code == 413 and "larger than" in big.json()["error"]
        bomb = upload(client, png_declaring(40_000, 40_000), "bomb.png")
        assert bomb.status_code == 413 and "40000x40000" in bomb.json()["error"]
        for data in (b"", b"not an image at all", (SAMPLE / "images" / "kodim23.jpg").read_bytes()[:5000]):
            response = upload(client, data)
            assert response.status_code == 415, data[:20]
            assert "Traceback" not in response.text
        assert client.post("/api/search", data={"n": "3"}).status_code == 400  # no file
        page = upload(client, b"junk", url="/search")
        assert page.status_code == 415 and page.headers["content-type"].startswith("text/html")

        def chunks():  # no Content-Length: refused as it streams in
            for _ in range(100):
                yield b"x" * 10_000

        streamed = client.post("/api/search", content=chunks(),
                               headers={"content-type": "multipart/form-data; boundary=b"})
        assert streamed.status_code == 413


@pytest.mark.parametrize("url, status, words", [
    ("/image/424242", 404, "no indexed image with id 424242"),
    ("/api/images/424242", 404, "no indexed image"),
    ("/search?color=notacolour", 400, "notacolour"),
    ("/api/search?color=red:80&color=blue:50", 400, "add up to"),
    ("/api/search?like=1&n=5000", 400, "n must be"),
    ("/api/search?like=abc", 400, "image ids"),
    ("/api/search?layout=red,,,,,,,,&color=red", 400, "one kind of search"),
    ("/api/search?like=1&unlike=1", 400, "both like and unlike"),
    ("/api/search?unlike=2", 400, "ask for one kind"),
    ("/api/search?upload=forgotten", 410, "upload it again"),
    ("/api/search?layout=red,,,,,,,,&unlike=2", 400, "mark at least one photo as like"),
    ("/api/search?layout=red,blue", 400, "9 cells"),
    ("/api/search", 400, "ask for one kind"),
    ("/nowhere", 404, "no such page"),
    ("/?page=zero", 400, "page must be"),
])
def test_bad_requests_get_a_clear_answer_and_status(client, url, status, words):
    response = client.get(url)
    assert response.status_code == status
    text = response.json()["error"] if url.startswith("/api/") else response.text
    assert words in text and "Traceback" not in response.text


def test_a_failure_inside_gives_500_without_a_traceback(sample, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals /etc/shadow")

    with TestClient(create_app(str(sample)), base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        monkeypatch.setattr(client.app.state.pages, "folder", broken)
        for url in ("/", "/api/folder"):
            response = client.get(url)
            assert response.status_code == 500
            assert "secret" not in response.text and "Traceback" not in response.text


def test_other_host_names_are_refused(client):
    """A page elsewhere whose name resolves to 127.0.0.1 (DNS rebinding) cannot read the index."""
    assert client.get("/api/info", headers={"host": "attacker.example"}).status_code == 400
    assert client.get("/api/info", headers={"host": "localhost:8000"}).status_code == 200


def test_every_text_is_escaped(tmp_path):
    folder = tmp_path / "<b>photos"
    name = "<img src=x onerror=alert(1)>&amp;\"'.png"
    put(folder / name, make_photo(3))
    put(folder / "plain.png", make_photo(4))
    db = tmp_path / "x.db"
    with Index.open(db, create=True) as index:
        index.add([str(folder)])
        tricky = next(i.image_id for i in index.folder("<b>photos").images if "onerror" in i.stored_path)
    with TestClient(create_app(str(db)), base_url="http://127.0.0.1") as client:
        for url in ["/?folder=%3Cb%3Ephotos", f"/image/{tricky}", f"/search?like={tricky}",
                    "/search?color=%3Cscript%3E", "/?folder=%3Cscript%3Ealert(1)%3C/script%3E"]:
            text = client.get(url).text
            assert "<script>" not in text and "<b>" not in text and "<img src=x" not in text, url
        assert "&lt;img src=x onerror=alert(1)&gt;&amp;amp;&#34;&#39;.png" in client.get(f"/image/{tricky}").text


def test_the_server_never_writes_the_database_and_sees_new_commits(tmp_path):
    folder = tmp_path / "photos"
    for i in range(4):
        put(folder / f"p{i}.png", make_photo(i))
    db = tmp_path / "live.db"
    with Index.open(db, create=True) as index:
        index.add([str(folder)])
    before = db.read_bytes()
    with TestClient(create_app(str(db)), base_url="http://127.0.0.1") as client:
        assert client.get("/api/info").json()["images"] == 4
        assert len(client.get("/api/search?like=1&n=10").json()["results"]) == 3
        client.get("/api/images/1"), client.get("/?folder=photos"), client.get("/image/1/thumb")
        assert db.read_bytes() == before
        put(folder / "new.png", make_photo(11))
        with Index.open(db) as writer:  # an index run while the server runs
            writer.add([str(folder)])
        assert client.get("/api/info").json()["images"] == 5
        found = client.get("/api/search?like=1&n=10").json()["results"]
        assert any(r["path"].endswith("new.png") for r in found)


def test_the_api_documents_what_it_returns(client):
    """The fields docs/web.md lists are the fields the API returns."""
    info = client.get("/api/info").json()
    assert {"database", "images", "layout", "grid", "regions", "codebook"} <= set(info)
    result = client.get("/api/search?like=2&n=1").json()["results"][0]
    assert {"id", "path", "name", "rank", "distance", "similarity", "thumb", "makeup", "why"} <= set(result)
    image = client.get("/api/images/2").json()
    assert {"id", "path", "width", "height", "sha256", "makeup", "regions", "thumb"} <= set(image)


def test_listening_beyond_this_machine_must_be_asked_for():
    from cbir.web.server import allowed_hosts, listening_socket, url_of

    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "[::1]", "localhost"]
    assert "192.168.1.5" in allowed_hosts("192.168.1.5") and "evil.example" not in allowed_hosts("192.168.1.5")
    assert allowed_hosts("0.0.0.0") == ["*"]  # every address: the user chose to be reachable by any name
    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.getsockname()[0] == "127.0.0.1" and url_of(sock).startswith("http://127.0.0.1:")
