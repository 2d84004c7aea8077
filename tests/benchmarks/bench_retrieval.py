"""Retrieval ablation on a labelled collection: each choice of cbir's defaults switched off or changed, one at a
time, plus the comparison distances over the same histograms, and an optional power x sigma x codebook grid.

Same protocol and code as ``cbir evaluate`` (cbir.experiments.evaluate): every labelled image queries all the others. The
collection is indexed once per histogram-shaping setting (colors, space, layout, min_side) into a scratch
database; the ranking settings (power, kernel, sigma, distance, block weights) are varied on the loaded
histograms. Prints markdown tables (the ones in docs/evaluation.md).

    python tests/benchmarks/bench_retrieval.py [--data ../shared/data/wang1000] [--grid]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from cbir.core.backends import QuadraticFormSearch
from cbir.core.histogram import n_blocks
from cbir.experiments.evaluate import evaluate_index, read_labels
from cbir.index import Index
from cbir.index.engine import load_engine
from cbir.settings import Settings

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "wang1000"))
HISTOGRAM = set(Settings.HISTOGRAM_FIELDS)
OLD_DEFAULTS = dict(colors=64, layout="global", power=0.5, kernel="gaussian", sigma=10.0)

# (row name, settings changed from the defaults, distance, block weights: "layout" or "equal")
ABLATION = [
    ("defaults (QFD)", {}, "qfd", "layout"),
    ("L1 on the same histograms", {}, "l1", "layout"),
    ("chi-squared on the same histograms", {}, "chi2", "layout"),
    ("intersection on the same histograms", {}, "intersection", "layout"),
    ("power 1 (raw shares)", dict(power=1.0), "qfd", "layout"),
    ("power 0.5 (square root)", dict(power=0.5), "qfd", "layout"),
    ("power 0.25", dict(power=0.25), "qfd", "layout"),
    ("kernel off: A = I (sigma 1e6, Euclidean on powered shares)", dict(sigma=1e6), "qfd", "layout"),
    ("QBIC kernel A = 1 - d/dmax", dict(kernel="qbic"), "qfd", "layout"),
    ("gaussian sigma 100 (wider)", dict(sigma=100.0), "qfd", "layout"),
    ("gaussian sigma 1600 (narrower)", dict(sigma=1600.0), "qfd", "layout"),
    ("equal block weights (regions outvote global 9:1)", {}, "qfd", "equal"),
    ("layout global (no regions)", dict(layout="global"), "qfd", "layout"),
    ("layout 3x3 (no global block)", dict(layout="3x3"), "qfd", "layout"),
    ("layout global+2x2", dict(layout="global+2x2"), "qfd", "layout"),
    ("layout global+center", dict(layout="global+center"), "qfd", "layout"),
    ("colors 64", dict(colors=64), "qfd", "layout"),
    ("colors 256", dict(colors=256), "qfd", "layout"),
    ("space rgb (codebook k-means in RGB)", dict(space="rgb"), "qfd", "layout"),
    ("min_side 64 (JPEG decoded at 1/4)", dict(min_side=64), "qfd", "layout"),
    ("old defaults (64, global, power 0.5, sigma 10)", OLD_DEFAULTS, "qfd", "layout"),
    ("old defaults, L1", OLD_DEFAULTS, "l1", "layout"),
]
# The grid: power x sigma at the default codebook size, then power x codebook size at the default sigma.
GRID = [(128, power, sigma) for power in (0.25, 1 / 3, 0.5) for sigma in (200.0, 400.0, 800.0)]
GRID += [(colors, power, 400.0) for colors in (64, 256) for power in (0.25, 1 / 3, 0.5)]


class EqualBlockWeights(Index):
    """The same search with every block weighing 1 (the ablation of the layout's block weights)."""

    def full_rankings(self, image_ids, *, distance="qfd", among=None, relevant=None, not_relevant=None):
        engine = load_engine(self._store, self._ranking, in_memory=True)
        backend = engine.backend
        equal = QuadraticFormSearch.build(backend.vectors, backend.similarity, power=backend.power,
                                          blocks=n_blocks(engine.settings.layout))
        among = None if among is None else np.sort(engine.rows_of(among))
        return (engine.ids[r] for r in equal.full_rankings(backend.vectors[engine.rows_of(image_ids)], rows=among))


class Runner:
    """Indexes once per histogram-shaping setting; evaluates ranking variants on the loaded histograms."""

    def __init__(self, collection, scratch):
        self.collection, self.scratch, self.indexes, self.index_seconds = collection, scratch, {}, {}

    def index(self, settings):
        key = tuple((k, settings[k]) for k in sorted(HISTOGRAM))
        if key not in self.indexes:
            index = Index.open(os.path.join(self.scratch, f"{len(self.indexes)}.db"), create=True)
            report = index.add(self.collection.paths, settings=settings)
            self.indexes[key] = index
            self.index_seconds[key] = report.seconds / max(report.added, 1)
        return self.indexes[key], self.index_seconds[key]

    def run(self, changes, distance="qfd", weights="layout"):
        settings = {**Settings().to_dict(), **changes}
        index, index_seconds = self.index(settings)
        ranking = {k: settings[k] for k in ("power", "kernel", "sigma")}
        variant = (Index if weights == "layout" else EqualBlockWeights)(index._store, ranking)
        return evaluate_index(variant, self.collection, (distance,))[0], index_seconds

    def close(self):
        for index in self.indexes.values():
            index.close()


def row(name, result, index_seconds):
    return (f"| {name} | {result['map']:.4f} | {result['p@10']:.4f} | {result['p@20']:.4f} | "
            f"{result['query_seconds'] * 1000:.1f} | {index_seconds * 1000:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with the images and labels.csv")
    parser.add_argument("--labels", default=None, help="labels file (default DATA/labels.csv)")
    parser.add_argument("--grid", action="store_true", help="also the grid over colors, power and sigma (slow)")
    args = parser.parse_args()
    collection = read_labels(args.data, args.labels or os.path.join(args.data, "labels.csv"))
    started = time.perf_counter()
    print(f"{len(collection.paths)} images, {len(set(collection.labels))} labels; defaults: "
          + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in Settings().to_dict().items()))
    print()
    header = "| {} | MAP | P@10 | P@20 | query ms | index ms/image |\n|---|---|---|---|---|---|"
    with tempfile.TemporaryDirectory(prefix="cbir-bench-") as scratch:
        runner = Runner(collection, scratch)
        try:
            print(header.format("change from the defaults"))
            for name, changes, distance, weights in ABLATION:
                print(row(name, *runner.run(changes, distance, weights)), flush=True)
            if args.grid:
                print()
                print(header.format("colors, power, sigma (global+3x3, gaussian)"))
                for colors, power, sigma in GRID:
                    result, seconds = runner.run(dict(colors=colors, power=power, sigma=sigma))
                    print(row(f"{colors}, {power:.3g}, {sigma:g}", result, seconds), flush=True)
        finally:
            runner.close()
    print(f"\n{time.perf_counter() - started:.0f} s in all", file=sys.stderr)


if __name__ == "__main__":
    main()
