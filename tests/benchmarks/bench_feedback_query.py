"""A search with several examples or relevance feedback against a plain one-example search, on large indexes.

Synthetic indexes of N histograms of K colours (written once through cbir.store, as bench_query.py does; kept in
--cache). In one process per index, interleaved and repeated: ``Index.search(id)`` (one indexed image: the plain
search) and ``Index.search([id1, id2, id3], negative=[id4])`` (three liked, one disliked: the feedback point, the
same single product, exact distances). The feedback model is learned on the first such search and kept: that
one-off cost is timed apart.

    python tests/benchmarks/bench_feedback_query.py [--sizes 100000,1000000] [--k 128] [--queries 15]
                                                    [--cache /tmp/cbir-bench-query]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_query import make_index  # noqa: E402  (the same synthetic indexes)


def measure(path, queries):
    from cbir.index import Index

    index = Index.open(path)
    ids, _ = index.image_paths()
    rng = np.random.default_rng(2)
    started = time.perf_counter()
    index.search([int(ids[0]), int(ids[1])], 10)
    first = time.perf_counter() - started
    times = {"plain": [], "feedback": []}
    for _ in range(queries):
        picked = [int(i) for i in rng.choice(ids, 4, replace=False)]
        for name, run in (("plain", lambda: index.search(picked[0], 10)),
                          ("feedback", lambda: index.search(picked[:3], 10, negative=picked[3:]))):
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    print(json.dumps({"first": first, "times": times}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--k", type=int, default=128)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--cache", default="/tmp/cbir-bench-query")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.queries)
    os.makedirs(args.cache, exist_ok=True)
    with open("/proc/loadavg") as handle:
        print(f"load at the start {handle.read().split()[0]}; OPENBLAS_NUM_THREADS="
              f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print("\n| N | K | plain search (median) | 3 liked + 1 disliked (median) | ratio | first feedback search "
          "(learns W) |\n|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        path = os.path.join(args.cache, f"index-{n}-{args.k}.db")
        if not os.path.exists(path):
            make_index(path, n, args.k)
        out = subprocess.run([sys.executable, __file__, "--measure", path, "--queries", str(args.queries)],
                             check=True, capture_output=True, text=True).stdout
        result = json.loads(out)
        plain, feedback = (statistics.median(result["times"][k]) for k in ("plain", "feedback"))
        print(f"| {n:,} | {args.k} | {plain * 1e3:.1f} ms | {feedback * 1e3:.1f} ms | {feedback / plain:.2f} | "
              f"{result['first']:.1f} s |", flush=True)
    with open("/proc/loadavg") as handle:
        print(f"\nload at the end {handle.read().split()[0]}")


if __name__ == "__main__":
    main()
