"""The shipped sample index is what the shipped images and the current code give."""

import shutil
from pathlib import Path

import pytest

from cbir import Index

SAMPLE = Path(__file__).resolve().parents[1] / "sample_index"


def all_rankings(db):
    with Index.open(db) as index:
        ids, paths = index.image_paths()
        rankings = index.search_vectors(index.histograms(ids), 0)
        return {paths[i]: [(r.stored_path, round(r.distance, 9)) for r in ranking]
                for i, ranking in enumerate(rankings)}, index.settings


def test_rebuilding_the_sample_index_gives_the_shipped_rankings(tmp_path, cli):
    if not (SAMPLE / "index.db").exists():
        pytest.fail("sample_index/index.db is missing: build it with "
                    "cbir index sample_index/images --db sample_index/index.db")
    shutil.copytree(SAMPLE / "images", tmp_path / "images")
    shutil.copy(SAMPLE / "index.db", tmp_path / "shipped.db")  # read a copy: never touch the shipped file
    shipped, settings = all_rankings(tmp_path / "shipped.db")
    code, _, err = cli("index", tmp_path / "images", "--db", tmp_path / "index.db")
    assert code == 0, err
    rebuilt, rebuilt_settings = all_rankings(tmp_path / "index.db")
    assert rebuilt_settings == settings, "the shipped index was built with other settings: rebuild it"
    assert len(shipped) == 24
    assert {q: [p for p, _ in r] for q, r in rebuilt.items()} == {q: [p for p, _ in r] for q, r in shipped.items()}
    for query in shipped:
        for (_, a), (_, b) in zip(rebuilt[query], shipped[query]):
            assert a == pytest.approx(b, abs=1e-6)
