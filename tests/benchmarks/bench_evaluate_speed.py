"""How long ``cbir evaluate`` takes to rank every labelled image against all the others: the blocked float64
product (today's runner) against one exact full ranking per query (the runner before it), on Wang and on a
10,000-image labelled collection.

1. Wang 1000: both ways over every query; prints both MAPs and whether every ranking is the same.
2. A 10,000-image labelled collection (CorelDB's size) made from Wang: each image and 9 variants of it (a crop
   of 80-100%, a mirror image, brightness x0.85-1.15, written as JPEG), labelled with its Wang class. Indexed
   once (not timed here); then every one of the 10,000 queries is ranked fully the blocked way, and a sample of
   queries the old way (extrapolated to all 10,000), the sample's rankings compared.

    python tests/benchmarks/bench_evaluate_speed.py [--data ../shared/data/wang1000] [--work DIR] [--sample 30]

``--work`` keeps the generated collection and its index between runs (default: a temporary folder). Timings
depend on the machine's load and on BLAS threads (OPENBLAS_NUM_THREADS): both are printed.
"""

import argparse
import csv
import os
import sys
import tempfile
import time

import numpy as np

from cbir.experiments.evaluate import evaluate_index, labelled_images, read_labels
from cbir.imageio import read_image, write_image
from cbir.index import Index
from cbir.index.engine import load_engine

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "wang1000"))
COPIES = 10


def load():
    return open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"


def one_at_a_time(index, ids):
    """The runner before the blocked product: each query's exact full ranking (QuadraticFormSearch.search, n=0,
    every row re-scored in float64), one query at a time. Returns the rankings (ids) and the seconds."""
    engine = load_engine(index._store, in_memory=True)
    rows = engine.rows_of(ids)
    rankings, started = [], time.perf_counter()
    for row in rows:
        rankings.append(engine.ids[engine.backend.search(engine.backend.vectors[row][None], 0)[0][0]])
    return rankings, time.perf_counter() - started


def mean_ap(rankings, ids, labels):
    label_of = dict(zip(ids.tolist(), labels))
    aps = []
    for query, ranking in zip(ids, rankings):
        hits = np.array([label_of[i] == label_of[int(query)] for i in ranking if i != query])
        aps.append((np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)).mean())
    return float(np.mean(aps))


def make_collection(data, folder):
    """Wang's images and 9 variants of each, with labels.csv; made once (kept in ``folder``)."""
    labels_csv = os.path.join(folder, "labels.csv")
    if os.path.exists(labels_csv):
        return labels_csv
    wang = read_labels(data, os.path.join(data, "labels.csv"))
    rows = []
    for number, (path, label) in enumerate(zip(wang.paths, wang.labels)):
        image = read_image(path)
        for copy in range(COPIES):
            rng = np.random.default_rng([number, copy])
            variant = image
            if copy:
                h, w = image.shape[:2]
                ch, cw = int(h * rng.uniform(0.8, 1)), int(w * rng.uniform(0.8, 1))
                top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
                variant = image[top : top + ch, left : left + cw]
                if rng.random() < 0.5:
                    variant = variant[:, ::-1]
                variant = np.clip(variant * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
            name = f"{number}_{copy}.jpg"
            write_image(os.path.join(folder, name), np.ascontiguousarray(variant))
            rows.append((name, label))
    with open(labels_csv + ".part", "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label"), *rows])
    os.replace(labels_csv + ".part", labels_csv)
    return labels_csv


def measure(title, folder, labels_csv, db, sample):
    collection = read_labels(folder, labels_csv)
    with Index.open(db, create=True) as index:
        started = time.perf_counter()
        report = index.add(collection.paths)
        if report.added:
            print(f"indexed {report.added} images in {time.perf_counter() - started:.0f} s (not part of the "
                  "evaluation time)")
        ids, labels = labelled_images(index, collection)
        load_before = load()
        started = time.perf_counter()
        result = evaluate_index(index, collection)[0]
        blocked = time.perf_counter() - started
        queries = ids if sample is None else np.sort(np.random.default_rng(1).choice(ids, sample, replace=False))
        old, old_seconds = one_at_a_time(index, queries)
        same = all(np.array_equal(a, b) for a, b in zip(old, index.full_rankings(queries)))
        print(f"\n{title}: {len(ids)} labelled images (load {load_before} -> {load()}, "
              f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")
        print(f"- blocked product, every query: {blocked:.1f} s for the whole evaluation "
              f"(ranking {result['query_seconds'] * 1e3:.2f} ms per query), MAP {result['map']:.6f}")
        per_query = old_seconds / len(queries)
        print(f"- one query at a time: {per_query * 1e3:.1f} ms per query over {len(queries)} queries"
              + ("" if sample is None else f", {per_query * len(ids) / 60:.1f} min for all {len(ids)} (extrapolated)")
              + (f", MAP {mean_ap(old, ids, labels):.6f}" if sample is None else ""))
        print(f"- rankings identical: {same} ({len(queries)} queries compared); "
              f"speed-up {per_query * len(ids) / blocked:.0f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="the Wang 1000 folder (with labels.csv)")
    parser.add_argument("--work", default=None, help="folder for the 10,000-image collection (kept)")
    parser.add_argument("--sample", type=int, default=30, help="queries ranked the old way at 10,000 images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cbir-bench-") as scratch:
        measure("Wang 1000", args.data, os.path.join(args.data, "labels.csv"), os.path.join(scratch, "wang.db"),
                None)
        work = args.work or os.path.join(scratch, "wang10k")
        os.makedirs(work, exist_ok=True)
        started = time.perf_counter()
        labels_csv = make_collection(args.data, work)
        print(f"\ncollection of {COPIES}x Wang in {work} ({time.perf_counter() - started:.0f} s to make or find)",
              file=sys.stderr)
        measure("Wang x10 variants", work, labels_csv, os.path.join(work, "index.db"), args.sample)


if __name__ == "__main__":
    main()
