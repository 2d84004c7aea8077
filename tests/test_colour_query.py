import json

import numpy as np
import pytest
from helpers import write_photos

from cbir import Index
from cbir.core.colour_query import (
    ColourError,
    parse_colour,
    parse_target,
    rest_share,
    target_histogram,
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


def test_target_histogram_puts_shares_on_the_lut_colour_and_spreads_the_rest():
    lut = np.zeros(1 << 18, np.int32)
    lut[-1] = 2  # white -> colour 2, everything else -> colour 0
    background = np.array([1.0, 1.0, 2.0, 0.0])
    hist = target_histogram(np.array([[255, 255, 255]], np.uint8), [0.6], lut, background, n_blocks=3)
    assert hist.dtype == np.float32 and hist.shape == (12,)
    assert hist[:4] == pytest.approx([0.1, 0.1, 0.6 + 0.2, 0.0])
    assert np.array_equal(hist[:4], hist[4:8]) and np.array_equal(hist[:4], hist[8:])
    with pytest.raises(ValueError):
        target_histogram(np.array([[0, 0, 0]], np.uint8), [1.2], lut, background)


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
    assert cli("index", painted, "--db", db, "--colors", 16, "--layout", layout)[0] == 0
    code, out, err = cli("query", "--color", "dodgerblue:40", "--color", "white:60", "--db", db, "--json", "-n", 3)
    assert code == 0 and err == ""
    document = json.loads(out)
    assert document["query"] == "dodgerblue 40%, white 60%"
    assert [c["hex"] for c in document["colors"]] == ["#1e90ff", "#ffffff"] and document["any_color"] == 0
    assert document["results"][0]["path"].endswith("flag.png")
    if layout == "global":  # with regions, the painted flag is not the same mix in every region
        assert document["results"][0]["distance"] == 0.0
    # with a rest of "any colour" the painted picture still ranks first
    code, out, _ = cli("query", "--color", "#1e90ff:30", "--color", "white:50", "--db", db, "--json", "-n", 1)
    assert json.loads(out)["results"][0]["path"].endswith("flag.png")


def test_colour_and_image_queries_together_and_table_output(cli, painted, tmp_path):
    db = tmp_path / "i.db"
    cli("index", painted, "--db", db, "--colors", 16)
    code, out, _ = cli("query", painted / "p1.png", "--color", "white", "--db", db, "--json", "-n", 2)
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and [d["query"] for d in lines] == ["white 100%", str(painted / "p1.png")]
    code, out, _ = cli("query", "--color", "white:50", "--db", db, "-n", 2)
    assert code == 0 and "query: white 50%, any colour 50%" in out


def test_colour_query_errors(cli, painted, tmp_path):
    db = tmp_path / "i.db"
    cli("index", painted, "--db", db, "--colors", 16)
    code, out, err = cli("query", "--db", db)
    assert code == 2 and out == "" and "--color" in err
    code, out, err = cli("query", "--color", "blurple:20", "--db", db)
    assert code == 1 and out == "" and err.startswith("Error: 'blurple' is not a colour")
    code, out, err = cli("query", "--color", "red:80", "--color", "blue:80", "--db", db)
    assert code == 1 and "at most 100" in err


def test_colour_vector_for_block_layouts(painted, tmp_path):
    with Index.open(tmp_path / "g.db", create=True) as index:
        index.add([painted], settings={"colors": 8, "layout": "global+2x2"})
        target = parse_target(["white:50", "navy:50"])
        vector = index.colour_vector(target)
        assert vector.shape == (5 * 8,)
        assert np.allclose(vector.reshape(5, 8).sum(1), 1) and np.allclose(vector.reshape(5, 8), vector[:8])
        assert index.search_vectors([vector], 1)[0][0].path.endswith(".png")
