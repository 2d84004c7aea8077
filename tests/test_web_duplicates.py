"""The duplicates page of cbir serve and its JSON twin /api/duplicates (Index.duplicates, issue 17), in-process."""

import shutil

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
from starlette.testclient import TestClient  # noqa: E402

from cbir import Index  # noqa: E402
from cbir.imageio import write_image  # noqa: E402
from cbir.web import app as web_app  # noqa: E402
from cbir.web.app import create_app  # noqa: E402
from cbir.web.security import CSP  # noqa: E402
from helpers import smooth_photo as make_photo  # noqa: E402

HOSTILE = "<img src=x onerror=alert(1)>&amp;\"'.png"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A library: a photo, an identical copy of it under a hostile name, a copy turned by 180 degrees, four other
    photos and an identical copy of one of them; its index; a client of the app serving it. Yields (client, photos folder, files before)."""
    root = tmp_path_factory.mktemp("web-duplicates")
    folder = root / "photos"
    folder.mkdir()
    photo = make_photo(5, size=(120, 160))
    write_image(folder / "a.png", photo)
    shutil.copy(folder / "a.png", folder / HOSTILE)
    write_image(folder / "turned.png", np.ascontiguousarray(photo[::-1, ::-1]))
    for i in range(4):
        write_image(folder / f"other{i}.png", make_photo(20 + i, size=(120, 160)))
    shutil.copy(folder / "other0.png", folder / "other0 again.png")
    with Index.open(root / "d.db", create=True) as index:
        index.add(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with TestClient(create_app(str(root / "d.db")), base_url="http://127.0.0.1") as client:
        yield client, folder, before


def test_the_copies_of_a_photo_are_one_group_keeper_first(served):
    client, folder, before = served
    got = client.get("/api/duplicates").json()
    pair, group = got["groups"]
    assert got["tier"] == 3 and got["images"] == 8 and got["count"] == 2 and got["tiers"] == {"1": 1, "2": 1, "3": 0}
    assert [m["name"] for m in pair["members"]] == ["other0.png", "other0 again.png"] and pair["tier"] == 1
    assert group["tier"] == 2
    assert [m["name"] for m in group["members"]][1:] == sorted([HOSTILE, "turned.png"], key=lambda n: n != HOSTILE)
    assert group["members"][0]["name"] == "a.png" and group["members"][0]["role"] == "keeper" and group["why"]
    turned = group["members"][2]
    assert turned["relation"] == "saved again" and turned["symmetry"] == "rotated 180°"
    assert turned["thumb"].startswith(f"/image/{turned['id']}/thumb")
    assert {"id", "path", "name", "width", "height", "size", "thumb", "relation", "symmetry", "distance"} <= set(turned)
    assert client.get(turned["thumb"]).headers["content-type"] == "image/jpeg"
    only_identical = client.get("/api/duplicates?tier=1").json()["groups"]
    assert [[m["name"] for m in g["members"]] for g in only_identical] == [["a.png", HOSTILE],
                                                                          ["other0.png", "other0 again.png"]]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing deleted, moved or written


def test_the_page_is_escaped_linked_from_every_page_and_strict(served):
    client, _, _ = served
    page = client.get("/duplicates?tier=2&threshold=0.5")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    text = page.text
    assert "saved again" in text and "rotated 180°" in text and 'class="card keeper"' in text
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;&amp;amp;&#34;&#39;.png" in text
    assert "<script>" not in text and " style=" not in text
    assert '<option value="2" selected>' in text and 'value="0.5"' in text
    assert '<a href="/duplicates">Duplicates</a>' in client.get("/").text


@pytest.mark.parametrize("query, words", [
    ("tier=4", "tier must be 1, 2 or 3"), ("tier=x", "tier must be"), ("threshold=abc", "threshold must be"),
    ("threshold=0", "threshold must be"), ("threshold=nan", "threshold must be"), ("threshold=9", "at most 4"),
    ("page=0", "page must be"), ("page=2", "does not exist"), ("path=/etc/passwd&tier=9", "tier must be"),
])
def test_bad_requests_are_refused_clearly(served, query, words):
    client, _, _ = served
    answer = client.get(f"/api/duplicates?{query}")
    assert answer.status_code in (400, 404) and words in answer.json()["error"]
    assert client.get(f"/duplicates?{query}").status_code == answer.status_code


def test_many_groups_come_a_page_at_a_time(served, monkeypatch):
    client, _, _ = served
    monkeypatch.setattr(web_app, "GROUPS_PAGE", 1)
    first, second = (client.get(f"/api/duplicates?tier=1&page={p}").json() for p in (1, 2))
    assert first["pages"] == second["pages"] == 2 and (first["page"], second["page"]) == (0, 1)
    assert [g["members"][0]["name"] for g in first["groups"] + second["groups"]] == ["a.png", "other0.png"]
    page = client.get("/duplicates?tier=1").text
    assert 'rel="next" href="/duplicates?tier=1&amp;threshold=1.0&amp;page=2"' in page and 'rel="prev"' not in page
