"""What the web app reads through Index: read-only opening, images by id, folders page by page, painted layouts,
the exact split of a distance, the collection's typical distances."""

import numpy as np
import pytest

from cbir import Index, parse_target
from cbir.errors import DatabaseError
from cbir.imageio import write_image
from helpers import make_photo


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    """An index of photos in nested folders, with sibling names that sort around "a/" ("a-2", "a.x", "a0.png")."""
    root = tmp_path_factory.mktemp("nested")
    layout = ["a/1.png", "a/2.png", "a/b/3.png", "a/c/d/4.png", "a.x/5.png", "a-2/6.png", "a0.png", "top.png"]
    for i, name in enumerate(layout):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_image(root / name, make_photo(i))
    db = root / "photos.db"
    with Index.open(db, create=True) as index:
        index.add(root, settings={"colors": 16})
    return db


def test_a_read_only_index_searches_and_cannot_write(nested, tmp_path):
    write_image(tmp_path / "new.png", make_photo(42))
    before = nested.read_bytes()
    with Index.open(nested, read_only=True) as index:
        assert index.image_count() == 8 and len(index.search_vectors(index.histograms([1]), 3)[0]) == 3
        with pytest.raises(DatabaseError, match="read-only"):
            index.add(tmp_path)
        assert index.image_count() == 8
    assert nested.read_bytes() == before


def test_folders_list_subfolders_and_their_own_images(nested):
    with Index.open(nested, read_only=True) as index:
        top = index.folder("")
        assert top.subfolders == ["a-2", "a.x", "a"] and [i.stored_path for i in top.images] == ["a0.png", "top.png"]
        a = index.folder("a")
        assert a.subfolders == ["b", "c"] and a.count == 2
        assert [i.stored_path for i in a.images] == ["a/1.png", "a/2.png"]
        assert [i.stored_path for i in index.folder("a", offset=1, limit=5).images] == ["a/2.png"]
        assert index.folder("a/c").subfolders == ["d"] and index.folder("a/c").count == 0
        assert index.folder("nowhere") == index.folder("nowhere", 0, 1)  # empty, not an error
        assert index.folder("nowhere").count == 0


def test_images_by_id_in_the_order_asked(nested):
    with Index.open(nested, read_only=True) as index:
        infos = index.images([3, 1, 999])
        assert [i.image_id for i in infos] == [3, 1]
        first = infos[1]
        assert first.path == str(nested.parent / first.stored_path)
        assert len(first.sha256) == 64 and first.width == 56 and first.height == 40 and first.size > 0


def test_a_painted_layout_of_a_photos_own_colours_finds_it(tmp_path):
    folder = tmp_path / "grids"
    folder.mkdir()
    rng = np.random.default_rng(5)
    palettes = [rng.integers(0, 256, (9, 3)) for _ in range(5)]
    for i, colours in enumerate(palettes):
        write_image(folder / f"g{i}.png", np.repeat(np.repeat(colours.reshape(3, 3, 3), 20, 0), 20, 1).astype(np.uint8))
    with Index.open(tmp_path / "g.db", create=True) as index:
        index.add(folder, settings={"colors": 48})
        cells = [parse_target(["#%02x%02x%02x:100" % tuple(c)]) for c in palettes[2]]
        best = index.search_vectors([index.layout_vector(cells)], 2)[0]
        assert best[0].stored_path.endswith("g2.png") and best[0].distance < best[1].distance
        with pytest.raises(ValueError, match="9 regions"):
            index.layout_vector(cells[:4])


def test_explain_splits_each_distance_exactly(nested):
    with Index.open(nested, read_only=True) as index:
        query = index.histograms([1])[0]
        results = index.search_vectors([query], 0)[0]
        explanation = index.explain(query, [r.image_id for r in results])
        np.testing.assert_allclose(np.sqrt(explanation.terms.sum(axis=(1, 2))), [r.distance for r in results],
                                   rtol=1e-6, atol=1e-9)
        assert explanation.terms.shape[1] == 10 and explanation.weights.tolist()[0] == 1.0


def test_typical_distances_are_sorted_pair_distances(nested):
    with Index.open(nested, read_only=True) as index:
        typical = index.typical_distances(pairs=500)
        assert typical.shape == (500,) and (np.diff(typical) >= 0).all() and typical[0] > 0
        ids = [i.image_id for i in index.images(range(1, 9))]
        pairs = {round(r.distance, 4) for ranking in index.search_vectors(index.histograms(ids), 0)
                 for r in ranking if r.distance > 0}  # every distance between two different photos
        assert len(set(np.round(typical, 4))) > 10
        assert all(min(abs(t - p) for p in pairs) < 1e-3 for t in typical)  # float32 vectors: near, not equal
