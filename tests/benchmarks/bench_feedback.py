"""Relevance feedback ablation: how the query point is made, measured with the simulated user of ``cbir evaluate
--feedback`` (20 results judged per round, two rounds), on Wang's two halves and on ukbench.

Every setting of cbir.core.feedback was chosen on the tuning half (queries with an even file number); the held-out
half (odd numbers) and ukbench1000 (a second opinion: 4 views of 250 objects) were only measured. Each row is one
way of making the query from the query image, the results judged relevant (liked) and not relevant (disliked);
rankings are full (every labelled image), with exact distances. "full" figures are over the whole ranking (query
excluded), "res." over the residual collection (the images judged in earlier rounds removed too).

    python tests/benchmarks/bench_feedback.py [--wang ../shared/data/wang1000] [--ukbench ../shared/data/ukbench1000]
                                              [--grid]

Rows marked "(cbir)" are what ``cbir evaluate --feedback 2`` runs (through Index.full_rankings). The others are
measured here on the same transformed vectors: Rocchio and the mean of the examples as query points; two learned
metrics (blocks re-weighted by the examples' spread; MindReader's low-rank inverse covariance of the examples on
top of cbir's point), which are exact quadratic forms too but need more than one product per search.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from cbir.core.feedback import FeedbackModel
from cbir.core.histogram import n_blocks
from cbir.experiments.evaluate import labelled_images, ranker, read_labels, simulate_feedback, summarise
from cbir.index import Index
from cbir.index.engine import load_engine

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
ROUNDS, JUDGED = 2, 20


class Collection:
    """An indexed labelled collection and its transformed vectors (float64), row i = label position i."""

    def __init__(self, folder, scratch, name):
        self.labels_file = read_labels(folder, os.path.join(folder, "labels.csv"))
        self.index = Index.open(os.path.join(scratch, f"{name}.db"), create=True)
        self.index.add(self.labels_file.paths)
        self.ids, self.labels = labelled_images(self.index, self.labels_file)
        _, paths = self.index.image_paths()
        number = {i: int("".join(c for c in os.path.basename(p) if c.isdigit())) for i, p in
                  zip(self.index.image_paths()[0].tolist(), paths)}
        self.numbers = np.array([number[i] for i in self.ids.tolist()])
        engine = load_engine(self.index._store, in_memory=True)
        self.backend = engine.backend
        self.rows = np.sort(engine.rows_of(self.ids))
        self.points = self.backend.transform64(self.backend.vectors[self.rows])
        self.neighbours = FeedbackModel.learn(self.backend.transformed)
        centred = self.backend.transformed - self.neighbours.mean
        values, vectors = np.linalg.eigh(centred.T.astype(np.float64) @ centred / len(centred))
        self.collection = FeedbackModel(self.neighbours.mean, np.maximum(values, 0), vectors)

    def by_points(self, make_point):
        """A ranker whose feedback query is the point ``make_point(examples, disliked)`` (rows of self.points)."""
        def rank(liked=None, disliked=None):
            if liked is None:
                ranked = self.backend.full_rankings(self.backend.vectors[self.rows], rows=self.rows)
            else:
                points = [make_point(self.points[np.r_[q, liked[q]]], self.points[disliked[q]])
                          for q in range(len(self.ids))]
                ranked = self.backend.full_rankings(points=points, rows=self.rows)
            return (np.searchsorted(self.rows, r) for r in ranked)
        return rank

    def by_distances(self, distances):
        """A ranker whose feedback query ranks by ``distances(examples, disliked) -> (Q,) float64`` (exact
        squared distances of a learned quadratic form, computed here in float64; ties by position)."""
        def rank(liked=None, disliked=None):
            if liked is None:
                return self.by_points(None)()
            return (np.lexsort((np.arange(len(self.ids)), distances(self.points[np.r_[q, liked[q]]],
                                                                    self.points[disliked[q]])))
                    for q in range(len(self.ids)))
        return rank


def rocchio(examples, disliked):
    """Rocchio (alpha 1, beta 0.75, gamma 0.15): the query plus the liked mean minus the disliked mean."""
    point = examples[0].copy()
    if len(examples) > 1:
        point += 0.75 * examples[1:].mean(0)
    if len(disliked):
        point -= 0.15 * disliked.mean(0)
    return point


def block_weighted(collection, blocks):
    """The mean of the examples, each block's distance weighed by 1 / (the examples' spread in it + its mean)."""
    points = collection.points
    per_block = (points**2).reshape(len(points), blocks, -1).sum(2)

    def distances(examples, disliked):
        centre = examples.mean(0)
        spread = ((examples - centre) ** 2).reshape(len(examples), blocks, -1).sum(2).mean(0)
        weights = 1 / (spread + spread.mean()) if spread.sum() > 0 else np.ones(blocks)
        weights /= weights.mean()
        cross = (points * np.repeat(weights, points.shape[1] // blocks) * centre).sum(1)
        squares = (centre**2).reshape(blocks, -1).sum(1) @ weights
        return per_block @ weights - 2 * cross + squares
    return distances


def mindreader_metric(collection):
    """cbir's point, and the metric I - U diag(1 - m/(s + m)) U^T: the directions in which the examples spread
    (U, s: their covariance's eigenvectors and values, m the mean value) count less (MindReader's inverse
    covariance, regularised). Ranking needs the product with U too: one column per example."""
    points, model = collection.points, collection.neighbours

    def distances(examples, disliked):
        point = model.point(examples, disliked)
        difference = points - point
        d2 = (difference**2).sum(1)
        spread = (examples - examples.mean(0)) / np.sqrt(len(examples))
        u, s, _ = np.linalg.svd(spread.T, full_matrices=False)
        values = s**2
        keep = values > 1e-12 * max(values.max(), 1e-300)
        if keep.any():
            u, values = u[:, keep], values[keep]
            d2 += ((difference @ u) ** 2) @ (values.mean() / (values + values.mean()) - 1)
        return d2
    return distances


def variants(c, blocks):
    n, w = c.neighbours, c.collection
    return [
        ("Rocchio (1, 0.75, 0.15)", c.by_points(rocchio)),
        ("mean of the query and the liked", c.by_points(lambda e, d: e.mean(0))),
        ("blocks re-weighted by the liked's spread (metric)", c.by_distances(block_weighted(c, blocks))),
        ("moved away from the disliked and the collection, no W", c.by_points(
            lambda e, d: n.point(e, d, ridge=1e9, spread=0))),
        ("... W = the collection's covariance", c.by_points(lambda e, d: w.point(e, d, ridge=100.0, spread=0))),
        ("... W = near neighbours' differences", c.by_points(lambda e, d: n.point(e, d, spread=0))),
        ("... and the liked's spread: defaults (cbir)", ranker(c.index, c.ids)),
        ("defaults, disliked ignored", c.by_points(lambda e, d: n.point(e, d, negative_weight=0))),
        ("defaults + MindReader low-rank metric", c.by_distances(mindreader_metric(c))),
    ]


def row(name, rounds, queries, ns=False):
    before, *after = [summarise(r, queries) for r in rounds]
    cells = [f"{before['map']:.4f}"] + [f"{a['map']:.4f}" for a in after] + [f"{after[0]['p@10']:.4f}"]
    cells += [f"{a['residual']['map']:.4f}" for a in after]
    if ns:
        cells += [f"{before['ns']:.3f}"] + [f"{a['ns']:.3f}" for a in after]
    return f"| {name} | " + " | ".join(cells) + " |"


def header(title, ns=False):
    columns = "MAP 0 | MAP 1 | MAP 2 | P@10 1 | res. MAP 1 | res. MAP 2" + (" | N-S 0 | N-S 1 | N-S 2" if ns else "")
    return f"\n{title}\n\n| method | {columns} |\n|---|" + "---|" * (columns.count("|") + 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wang", default=os.path.join(SHARED, "wang1000"))
    parser.add_argument("--ukbench", default=os.path.join(SHARED, "ukbench1000"))
    parser.add_argument("--grid", action="store_true", help="also reach x ridge around the defaults (tuning half)")
    args = parser.parse_args()
    started = time.perf_counter()
    with open("/proc/loadavg") as handle:
        print(f"{JUDGED} results judged per round; rounds 0 (no feedback), 1, 2; load {handle.read().split()[0]}")
    with tempfile.TemporaryDirectory(prefix="cbir-bench-") as scratch:
        wang = Collection(args.wang, scratch, "wang")
        uk = Collection(args.ukbench, scratch, "ukbench")
        blocks = n_blocks(wang.index.settings.layout)
        tables = {"tune": [header("Wang, tuning half (even file numbers: 500 queries)")],
                  "held": [header("Wang, held-out half (odd file numbers: 500 queries)")],
                  "all": [header("Wang, all 1000 queries")],
                  "uk": [header("ukbench1000, all 1000 queries (N-S: the query's object in its top 4)", ns=True)]}
        even, odd = np.flatnonzero(wang.numbers % 2 == 0), np.flatnonzero(wang.numbers % 2 == 1)
        for (name, rank), (_, uk_rank) in zip(variants(wang, blocks), variants(uk, blocks)):
            rounds = simulate_feedback(rank, wang.labels, ROUNDS, JUDGED)
            tables["tune"].append(row(name, rounds, even))
            tables["held"].append(row(name, rounds, odd))
            tables["all"].append(row(name, rounds, None))
            tables["uk"].append(row(name, simulate_feedback(uk_rank, uk.labels, ROUNDS, JUDGED), None, ns=True))
            print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        for lines in tables.values():
            print("\n".join(lines), flush=True)
        if args.grid:
            # W from every image, and from 250 sampled ones: how a setting fares when W is learned from few
            # examples (a large collection's W comes from a sample of 5000 of its images)
            sampled = FeedbackModel.learn(wang.backend.transformed, sample=250)
            print("\nWang, tuning half: reach x ridge (spread 1, disliked 0.7), W from all 1000 images | from 250\n")
            print("| reach, ridge | MAP 1 | MAP 2 | res. MAP 2 | MAP 1 (W of 250) | MAP 2 (W of 250) |")
            print("|---|---|---|---|---|---|")
            for reach in (8.0, 12.0, 16.0):
                for ridge in (0.3, 1.0, 3.0):
                    cells = []
                    for model in (wang.neighbours, sampled):
                        rank = wang.by_points(lambda e, d, model=model, reach=reach, ridge=ridge:
                                              model.point(e, d, reach=reach, ridge=ridge))
                        rounds = [summarise(r, even) for r in simulate_feedback(rank, wang.labels, ROUNDS, JUDGED)]
                        cells += [rounds[1]["map"], rounds[2]["map"]] + (
                            [rounds[2]["residual"]["map"]] if model is wang.neighbours else [])
                    print(f"| {reach:g}, {ridge:g} | " + " | ".join(f"{c:.4f}" for c in cells) + " |", flush=True)
        wang.index.close()
        uk.index.close()
    print(f"\n{time.perf_counter() - started:.0f} s in all", file=sys.stderr)


if __name__ == "__main__":
    main()
