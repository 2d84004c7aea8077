import json
import os

import numpy as np
import pytest
from helpers import ROOT, write_photos

from cbir import Index
from cbir.core.colour_query import (
    SIMILAR,
    ColourError,
    missing_shares,
    near_colours,
    parse_colour,
    parse_target,
    rank_colour_matches,
    rest_share,
)
from cbir.imageio import write_image


@pytest.mark.parametrize("text, rgb", [
    ("white", (255, 255, 255)), ("DodgerBlue", (30, 144, 255)), ("grey", (128, 128, 128)),
    ("#1e90ff", (30, 144, 255)), ("#F0a", (255, 0, 170)), ("rgb(30, 144, 255)", (30, 144, 255)),
    ("lab(100,0,0)", (255, 255, 255)), ("lab(0,0,0)", (0, 0, 0)),
])
def test_parse_colour(text, rgb):
    assert tuple(parse_colour(text)) == rgb


def test_lab_is_converted_and_clipped_to_srgb():
    grey = parse_colour("lab(53.585, 0, 0)")
    assert np.all(np.abs(grey.astype(int) - 128) <= 1)
    assert parse_colour("lab(50, 200, -200)").dtype == np.uint8  # far outside the gamut: clipped, not an error


@pytest.mark.parametrize("text", ["blurple", "#12345", "rgb(1,2)", "rgb(300,0,0)", "lab(120,0,0)", ""])
def test_bad_colours_say_how_to_write_one(text):
    with pytest.raises(ColourError) as error:
        parse_colour(text)
    assert repr(text) in str(error.value)


def test_shares_rules():
    target = parse_target(["#1e90ff:40", "white:20%"])
    assert [c.share for c in target] == [0.4, 0.2] and rest_share(target) == pytest.approx(0.4)
    assert target[0].hex == "#1e90ff"
    split = parse_target(["red:30", "blue", "green"])
    assert [c.share for c in split] == pytest.approx([0.3, 0.35, 0.35]) and rest_share(split) == pytest.approx(0)
    assert [c.share for c in parse_target(["red", "blue"])] == [0.5, 0.5]
    assert parse_target(["lab(50,20,-30)"])[0].share == 1.0


@pytest.mark.parametrize("specs, message", [
    ([], "at least one colour"), (["red:70", "blue:40"], "add up to 110%"), (["red:0"], "more than 0"),
    (["red:abc"], "not a percentage"), (["red:100", "blue"], "give every colour a percentage"),
])
def test_bad_targets(specs, message):
    with pytest.raises(ColourError, match=message):
        parse_target(specs)


def test_near_colours_against_a_naive_loop():
    """A codebook colour counts for its nearest requested colour when within ΔE 25; a requested colour with none
    that close gets its nearest codebook colour: against a plain loop over random colours."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        codebook = rng.uniform([0, -80, -80], [100, 80, 80], (12, 3))
        targets = rng.uniform([0, -80, -80], [100, 80, 80], (3, 3))
        expected = np.zeros((12, 3))
        for k, colour in enumerate(codebook):
            d = [np.linalg.norm(colour - t) for t in targets]
            if min(d) <= SIMILAR:
                expected[k, int(np.argmin(d))] = 1
        for t, target in enumerate(targets):
            if not expected[:, t].any():
                expected[int(np.argmin([np.linalg.norm(c - target) for c in codebook])), t] = 1
        assert np.array_equal(near_colours(codebook, targets), expected)


def test_missing_shares_and_ranking():
    shares = np.array([[0.5, 0.5, 0.0], [0.1, 0.1, 0.8], [0.3, 0.0, 0.7], [0.3, 0.3, 0.4]])
    near = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    missing, found = missing_shares(shares, near, [0.3, 0.2])
    assert found.tolist() == [[0.5, 0.5], [0.1, 0.1], [0.3, 0.0], [0.3, 0.3]]
    assert missing == pytest.approx([0, 0.3, 0.2, 0])
    # no share missing: first the one with more of the requested colours; ties kept in row order
    assert rank_colour_matches(missing, found, 0).tolist() == [0, 3, 2, 1]
    assert rank_colour_matches(missing, found, 2).tolist() == [0, 3]
    assert rank_colour_matches(np.zeros(3), np.zeros((3, 1)), 2).tolist() == [0, 1]


def busy_picture(seed, size=(48, 64)):
    """A picture of 8x8 tiles in random colours: a little of everything."""
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(tiles, 8, axis=0), 8, axis=1)


def test_a_colour_query_with_a_rest_finds_the_colours_not_a_busy_picture(tmp_path):
    """The README's own query, 40% dodger blue and 20% white and any rest: sky and clouds over a dark field beat
    pictures holding a little of every colour (the old design, which spread the rest over the collection's average
    colours, ranked the busy pictures first)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    sky = np.zeros((48, 64, 3), np.uint8)
    sky[:24] = (40, 140, 250)   # ΔE 5 from #1e90ff: 50%
    sky[24:36] = (250, 250, 250)  # 25% white clouds
    sky[36:] = (40, 70, 20)     # 25% dark field
    write_image(folder / "sky.png", sky)
    for i in range(6):
        write_image(folder / f"busy{i}.png", busy_picture(i))
    for i, colour in enumerate([(200, 40, 30), (230, 200, 40), (90, 60, 40)]):
        write_image(folder / f"plain{i}.png", np.full((48, 64, 3), colour, np.uint8))
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add(folder, settings={"colors": 32})
        results = index.search_colours(parse_target(["#1e90ff:40", "white:20"]), n=3)
    assert os.path.basename(results[0].path) == "sky.png"
    assert results[0].distance < results[1].distance
    assert results[0].found[0] >= 0.4 and results[0].found[1] >= 0.2


def test_a_far_colour_is_named_on_stderr(cli):
    """blue is far from every colour of the sample's codebook: the query says what it is matched as."""
    db = ROOT / "sample_index" / "index.db"
    code, out, err = cli("query", "--color", "blue:30", "--color", "white:10", "--db", db, "-n", 2,
                         "--format", "paths")
    assert code == 0 and len(out.splitlines()) == 2
    assert "note: blue is matched as #2a3656, ΔE 115" in err and "white" not in err
    code, out, err = cli("query", "--color", "blue:30", "--db", db, "-n", 1, "-q")
    assert code == 0 and err == ""


@pytest.fixture
def painted(tmp_path):
    """Photos plus one painted exactly 40% dodger blue and 60% white."""
    folder = write_photos(tmp_path / "photos", 5)
    flag = np.full((40, 50, 3), 255, np.uint8)
    flag[:16] = (30, 144, 255)
    write_image(folder / "flag.png", flag)
    return folder


@pytest.mark.parametrize("layout", ["global", "global+3x3"])
def test_colour_query_finds_the_picture_painted_in_those_colours(cli, painted, tmp_path, layout):
    db = tmp_path / "i.db"
    assert cli("index", painted, "--db", db, "--codebook-size", 16, "--layout", layout)[0] == 0
    code, out, err = cli("query", "--color", "dodgerblue:40", "--color", "white:60", "--db", db, "--json", "-n", 3)
    assert code == 0 and err == ""
    document = json.loads(out)
    assert document["query"] == "dodgerblue 40%, white 60%"
    assert [c["hex"] for c in document["colors"]] == ["#1e90ff", "#ffffff"] and document["any_color"] == 0
    assert document["results"][0]["path"].endswith("flag.png")
    if layout == "global":  # with regions, the painted flag is not the same mix in every region
        # 0 but for the rounding of stored shares (65,535 cube-root steps, cbir.store.codec)
        assert document["results"][0]["distance"] < 1e-4
    # with a rest of "any colour" the painted picture still ranks first
    code, out, _ = cli("query", "--color", "#1e90ff:30", "--color", "white:50", "--db", db, "--json", "-n", 1)
    assert json.loads(out)["results"][0]["path"].endswith("flag.png")


def test_colour_and_image_queries_together_and_table_output(cli, painted, tmp_path):
    db = tmp_path / "i.db"
    cli("index", painted, "--db", db, "--codebook-size", 16)
    code, out, _ = cli("query", painted / "p1.png", "--color", "white", "--db", db, "--json", "-n", 2)
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and [d["query"] for d in lines] == ["white 100%", str(painted / "p1.png")]
    code, out, _ = cli("query", "--color", "white:50", "--db", db, "-n", 2, "--format", "table")
    assert code == 0 and "query: white 50%, any colour 50%" in out


def test_colour_query_errors(cli, painted, tmp_path):
    db = tmp_path / "i.db"
    cli("index", painted, "--db", db, "--codebook-size", 16)
    code, out, err = cli("query", "--db", db)
    assert code == 2 and out == "" and "--color" in err
    # a colour that cannot be read is a bad option value: a usage error (exit 2), as --layout foo is
    code, out, err = cli("query", "--color", "blurple:20", "--db", db)
    assert code == 2 and out == "" and "'blurple' is not a colour" in err and "--color" in err
    code, out, err = cli("query", "--color", "red:80", "--color", "blue:80", "--db", db)
    assert code == 2 and "at most 100" in err
