"""The numerics of finding duplicates (cbir.core.duplicates), against naive references."""

import itertools

import numpy as np
import pytest

from cbir.core import duplicates as dup
from cbir.core.histogram import histogram, lookup_table, n_blocks
from helpers import make_photo


@pytest.mark.parametrize("layout", ["global", "2x2", "3x3", "center", "global+2x2", "global+3x3", "global+center"])
def test_a_rotated_or_mirrored_photo_has_the_permuted_histogram(layout):
    image = make_photo(3, size=(60, 60))
    codebook = np.random.default_rng(0).uniform([0, -60, -60], [100, 60, 60], (12, 3))
    lut = lookup_table(codebook)
    base = histogram(image, lut, 12, layout).reshape(n_blocks(layout), 12)
    perms = dup.block_permutations(layout)
    for g in range(8):
        moved = histogram(np.ascontiguousarray(dup.apply_symmetry(image, g)), lut, 12, layout)
        np.testing.assert_array_equal(moved.reshape(-1, 12), base[perms[g]])


def test_an_asymmetric_region_map_is_refused():
    with pytest.raises(ValueError, match="rotation and mirroring"):
        dup.region_permutations(np.array([[0, 0, 1], [0, 0, 1], [2, 2, 2]]))


def test_symmetries_compose_and_undo():
    x = np.arange(12).reshape(3, 4)
    shapes = {dup.apply_symmetry(x, g).tobytes() for g in range(8)}
    assert len(shapes) == 8  # eight different pictures of an asymmetric one
    for g in range(8):
        np.testing.assert_array_equal(dup.apply_symmetry(dup.apply_symmetry(x, g), dup.inverse_symmetry(g)), x)
    assert dup.symmetry_name(0) == "as is" and dup.symmetry_name(6) == "flipped upside down"
    np.testing.assert_array_equal(dup.apply_symmetry(x, 3), np.rot90(x, -1))  # named clockwise
    assert dup.symmetry_name(3) == "rotated 90° clockwise"


def test_the_thumbnail_of_a_rotated_photo_is_the_rotated_thumbnail():
    image = make_photo(5, size=(64, 96))
    thumb = dup.structure_thumbnail(image).reshape(16, 16)
    perms = dup.thumbnail_permutations()
    for g in range(8):
        moved = dup.structure_thumbnail(np.ascontiguousarray(dup.apply_symmetry(image, g)))
        assert np.abs(moved.astype(int) - thumb.ravel()[perms[g]]).max() <= 1  # rounding only
        np.testing.assert_array_equal(dup.apply_symmetry(thumb, g).ravel(), thumb.ravel()[perms[g]])


def test_structure_ignores_brightness_and_contrast_and_flat_pictures_have_none():
    image = make_photo(7, size=(48, 48)).astype(np.float32)
    brighter = np.clip(image * 0.8 + 30, 0, 255).astype(np.uint8)
    a, b = dup.structure_vectors(np.stack([dup.structure_thumbnail(image.astype(np.uint8)),
                                           dup.structure_thumbnail(brighter)]))
    assert np.linalg.norm(a - b) < 0.05 and abs(np.linalg.norm(a) - 1) < 1e-5
    flat = dup.structure_thumbnail(np.full((30, 40, 3), 90, np.uint8))
    assert not flat.any() and not dup.structure_vectors(flat[None]).any()


def naive_distances(colour, structure, i, j, perms):
    """Every symmetry spelled out, in float64."""
    side = int(np.sqrt(structure.shape[1]))
    shape_perms = dup.thumbnail_permutations(side)
    c = [min(np.linalg.norm(colour[b].astype(float) - colour[a][perms[g]]) for g in range(8)) for a, b in zip(i, j)]
    e = [min(np.linalg.norm(structure[b].astype(float) - structure[a][shape_perms[g]]) for g in range(8))
         for a, b in zip(i, j)]
    return np.array(c), np.array(e)


def clustered(n, seed=0, blocks=10, k=8, side=8):
    """Random colour and structure vectors, with near copies (some rotated) of a few of them."""
    rng = np.random.default_rng(seed)
    colour = rng.random((n, blocks, k), dtype=np.float32) * 3
    structure = dup.structure_vectors(rng.integers(0, 256, (n, side * side)).astype(np.uint8))
    perms = dup.block_permutations("global+3x3")
    shape_perms = dup.thumbnail_permutations(side)
    for row in range(n // 2, n):
        src, g = rng.integers(0, n // 2), rng.integers(0, 8)
        colour[row] = colour[src][perms[g]] + rng.normal(0, 0.1, (blocks, k)) * rng.random()
        structure[row] = structure[src][shape_perms[g]] + rng.normal(0, 0.02, side * side)
    colour[n // 2 : n // 2 + n // 10] = rng.random((n // 10, blocks, k)) * 3  # edits: new colours, same structure
    structure[3] = 0  # a flat picture
    return colour, dup.structure_vectors(structure), perms


def test_pair_distances_are_the_minimum_over_the_symmetries():
    colour, structure, perms = clustered(60)
    i, j = np.array(list(itertools.combinations(range(60), 2))).T
    c, e, g = dup.pair_distances(colour, structure, i, j, perms)
    ref_c, ref_e = naive_distances(colour, structure, i, j, perms)
    np.testing.assert_allclose(c, ref_c, atol=2e-4)
    flat = (i == 3) | (j == 3)
    np.testing.assert_allclose(e[~flat], ref_e[~flat], atol=2e-4)
    assert (e[flat] == np.sqrt(2)).all()
    side = 8
    shape_perms = dup.thumbnail_permutations(side)
    found = [np.linalg.norm(structure[b] - structure[a][shape_perms[s]]) for a, b, s in zip(i, j, g)]
    np.testing.assert_allclose(np.array(found)[~flat], ref_e[~flat], atol=2e-4)  # the symmetry reported is the best


@pytest.mark.parametrize("block", [7, 64, 2048])
def test_close_pairs_finds_exactly_the_close_pairs(block):
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 1, (150, 5)), rng.normal(0, 1, (50, 5)) * 0.1 + 2]).astype(np.float32)
    i, j = dup.close_pairs(x, 0.5, block)
    d = np.linalg.norm(x[:, None].astype(float) - x[None], axis=2)
    want = {(a, b) for a, b in zip(*np.nonzero(np.triu(d <= 0.5, 1)))}
    got = set(zip(i.tolist(), j.tolist()))
    assert want <= got and all(d[a, b] <= 0.5 + 1e-3 for a, b in got) and (i < j).all()
    with pytest.raises(dup.TooManyPairs):
        dup.close_pairs(x, 0.5, block, limit=len(want) // 2)


@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
def test_candidates_miss_no_pair_that_qualifies(threshold):
    colour, structure, perms = clustered(240, seed=2)
    rule = dup.Rule(saved_colour=0.9, saved_structure=0.3, colour_scale=1.2, structure_scale=1.5, edit_structure=0.2)
    i, j = dup.candidate_pairs(colour, structure, perms, rule, threshold, axes=16, block=50)
    every_i, every_j = np.array(list(itertools.combinations(range(240), 2))).T
    c, e, _ = dup.pair_distances(colour, structure, every_i, every_j, perms)
    qualifies = rule.saved_again(c, e) | (rule.near_distance(c, e) <= threshold)
    assert qualifies.sum() > 50  # the test has something to find, also by structure alone
    assert (qualifies & (c > rule.colour_scale * threshold)).sum() >= 10
    assert set(zip(every_i[qualifies].tolist(), every_j[qualifies].tolist())) <= set(zip(i.tolist(), j.tolist()))
    assert len(i) < len(every_i) / 4  # and the bound prunes


def test_the_saved_again_region_lies_inside_the_default_near_duplicate_region():
    rule = dup.Rule()
    assert rule.near_distance(rule.saved_colour, rule.saved_structure) <= 1
    assert rule.scaled(2.0).colour_scale == 2 * rule.colour_scale
    assert dup.colour_unit(128, [1] + [1 / 9] * 9) == pytest.approx(1)


def test_connected_groups_matches_a_naive_search():
    rng = np.random.default_rng(4)
    n = 300
    i, j = rng.integers(0, n, 250), rng.integers(0, n, 250)
    labels = dup.connected_groups(n, i, j)
    neighbours = {v: set() for v in range(n)}
    for a, b in zip(i, j):
        neighbours[a].add(b)
        neighbours[b].add(a)
    for start in range(n):
        seen, todo = {start}, [start]
        while todo:
            for w in neighbours[todo.pop()] - seen:
                seen.add(w)
                todo.append(w)
        assert {v for v in range(n) if labels[v] == labels[start]} == seen
        assert labels[start] == min(seen)
