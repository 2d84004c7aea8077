"""Query latency and opening cost of large indexes, side by side with the memory-bandwidth floor.

For each N (indexed images) and K (codebook size) an index of synthetic but valid histograms (shares that sum to 1,
sparse like photos) is written through cbir.store once and kept in --cache. Then, in a fresh process per index:

- opening, in fresh processes alternately, --opens times each way: ``load_engine`` transforming the histograms
  streamed from SQLite, and reading the transformed matrix from the search cache that an index run leaves in a
  large index (``cbir.index.search_cache.refresh``, timed when it has to be written): wall time and peak resident memory
  above the process's resident memory just before, against the bytes of the histogram matrix;
- per query, interleaved and repeated: the floor (one numpy float32 matrix-vector product over the same transformed
  matrix, ``Y @ y``; and the same product written as a 1-row GEMM, ``y[None] @ Y.T``, which OpenBLAS runs faster
  at K=256), cbir's ``backend.search(q, 10)`` (candidates, their raw rows read back from SQLite, exact float64
  distances), the whole ``Index.search_vectors`` (the same plus the snapshot and the paths of the results), and
  the naive per-pair formula on a slice, scaled to N;
- recall of cbir's top 10 against a float64 full ranking (must be 1.0).

    python tests/benchmarks/bench_query.py [--sizes 10000,100000,1000000] [--ks 64,256] [--queries 25]
                                           [--opens 3] [--cache /tmp/cbir-bench-query]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from process_stats import reset_peak, status

HERE = os.path.dirname(os.path.abspath(__file__))


def synthetic_histograms(rng, count, k):
    """Sparse, valid colour histograms: a few dominant colours per image, shares summing to 1."""
    x = rng.gamma(0.08, size=(count, k)).astype(np.float32)
    x[np.arange(count), rng.integers(0, k, count)] += 0.05  # no empty histograms
    return x / x.sum(1, keepdims=True)


def make_index(path, n, k, seed=0):
    from cbir.core.histogram import LUT_BITS
    from cbir.settings import Settings
    from cbir.store import Store

    rng = np.random.default_rng(seed)
    codebook = np.column_stack([rng.uniform(10, 95, k), rng.uniform(-60, 60, k), rng.uniform(-60, 60, k)])
    partial = path + ".partial"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(partial + suffix):
            os.unlink(partial + suffix)
    started = time.perf_counter()
    with Store.open(partial, create=True) as store:
        store.replace_codebook(codebook.astype(np.float32), ["#808080"] * k, np.full(k, 1 / k),
                               {"settings": Settings(colors=k, layout="global").to_dict(), "lut_bits": LUT_BITS})
        for start in range(0, n, 20000):
            count = min(20000, n - start)
            vectors = synthetic_histograms(rng, count, k)
            store.write_batch([(f"photos/{i:07d}.jpg", 30000, i, f"{i:064x}", 256, 256, v)
                               for i, v in zip(range(start, start + count), vectors)])
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.replace(partial, path)
    print(f"# wrote {path}: {n} x {k} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


def half_precision_scores(transformed, ys, chunk=4096):
    """The stretch goal, probed: the same scores over a float16 copy of the matrix, converted back to float32 a
    cache-sized chunk at a time (numpy and OpenCV have no float16 matrix product), against the float32 GEMV.
    Returns median seconds of: float32 GEMV, numpy chunks, OpenCV chunks (``cv2.add`` into CV_32F)."""
    import cv2

    half = transformed.astype(np.float16)
    buffer = np.empty((chunk, transformed.shape[1]), np.float32)
    out = np.empty(len(half), np.float32)

    def numpy_chunks(y):
        for s in range(0, len(half), chunk):
            part = buffer[: min(chunk, len(half) - s)]
            np.copyto(part, half[s : s + chunk], casting="unsafe")
            np.matmul(part, y, out=out[s : s + len(part)])

    def opencv_chunks(y):
        for s in range(0, len(half), chunk):
            part = cv2.add(half[s : s + chunk], 0.0, dtype=cv2.CV_32F)
            np.matmul(part, y, out=out[s : s + len(part)])

    times = {"gemv": [], "numpy": [], "opencv": []}
    for y in ys:
        for name, run in (("gemv", lambda: transformed @ y), ("numpy", lambda: numpy_chunks(y)),
                          ("opencv", lambda: opencv_chunks(y))):
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()}


def measure_open(path, use_cache):
    """Run in a fresh process: open the index once. Prints one JSON document."""
    from cbir.index.engine import load_engine
    from cbir.store import Store

    store = Store.open(path)
    before = status("VmRSS")
    reset_peak()
    started = time.perf_counter()
    engine = load_engine(store, use_cache=use_cache)
    seconds = time.perf_counter() - started
    peak = status("VmHWM") - before
    print(json.dumps({"open_s": seconds, "peak_extra": peak, "matrix_bytes": engine.backend.transformed.nbytes,
                      "cached": engine.cached}))


def measure(path, queries, seed=1):
    """Run in a fresh process: open the index, then time the queries. Prints one JSON document."""
    from cbir.core.backends import NaiveQuadraticFormSearch, QuadraticFormSearch
    from cbir.index import Index

    index = Index.open(path)
    engine = index._loaded()
    backend = engine.backend
    n, d = backend.transformed.shape
    rng = np.random.default_rng(seed)
    k = len(engine.codebook)
    qs = synthetic_histograms(rng, queries, k)
    y_all = backend.transform(qs)
    times = {"gemv": [], "gemm1": [], "cbir": [], "index": []}
    for q, y in zip(qs, y_all):
        for name, run in (("gemv", lambda: backend.transformed @ y),
                          ("gemm1", lambda: y[None] @ backend.transformed.T),
                          ("cbir", lambda: backend.search(q[None], 10)),
                          ("index", lambda: index.search_vectors([q], 10))):
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    group = qs[:16]
    t = time.perf_counter()
    index.search_vectors(group, 10)
    grouped = (time.perf_counter() - t) / len(group)
    half = half_precision_scores(backend.transformed, y_all[:5])
    # Everything below holds the raw matrix too: measured after the opening figures.
    ids, raw = index._store.load_vectors(d)
    rows = min(n, 2000)  # the naive per-pair formula on a slice, scaled to N
    naive = NaiveQuadraticFormSearch(raw[:rows], backend.similarity, power=backend.power, blocks=backend.blocks)
    t = time.perf_counter()
    naive.distances(qs[0])
    naive_seconds = (time.perf_counter() - t) * n / rows
    # Recall against a float64 full ranking of the raw matrix, a few queries.
    reference = QuadraticFormSearch.build(raw, backend.similarity, power=backend.power, blocks=backend.blocks)
    recall = []
    for q in qs[:3]:
        exact = np.concatenate([reference.exact(np.arange(s, min(n, s + 65536)), q) for s in range(0, n, 65536)])
        truth = set(ids[np.lexsort((np.arange(n), exact))[:10]].tolist())
        found = {r.image_id for r in index.search_vectors([q], 10)[0]}
        recall.append(len(truth & found) / 10)
    print(json.dumps({"n": n, "k": k, "d": d, "cached": engine.cached, "times": times, "grouped": grouped,
                      "naive_s": naive_seconds, "recall": recall, "half": half}))


def open_row(path, n, k, repeats):
    """Refresh the index's search cache as an index run does, then open it both ways, alternately, each in a fresh
    process: one table row."""
    from cbir.index import Tuning, search_cache
    from cbir.store import Store

    with Store.open(path) as store:
        started = time.perf_counter()
        written = search_cache.refresh(store, Tuning())
        seconds = time.perf_counter() - started
        there = "(there)" if search_cache.header(store) else "none (quick to open)"
        writing = f"{seconds:.2f} s" if written else there
        # What an incremental run pays: its first batch makes the cache out of date (a trigger), its end writes it
        # again.
        vector = synthetic_histograms(np.random.default_rng(2), 1, k)[0]
        one = [("photos/one-more.jpg", 1, 1, "0" * 64, 256, 256, vector)]
        batches = []
        for records, removed in ((one, ()), ((), ["photos/one-more.jpg"])):
            started = time.perf_counter()
            store.write_batch(records, removed=removed)
            batches.append(time.perf_counter() - started)
        started = time.perf_counter()
        rewritten = search_cache.refresh(store, Tuning())
        rewriting = time.perf_counter() - started
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cached_bytes = os.path.getsize(search_cache.path_of(store)) if search_cache.header(store) else 0
        size = f"{cached_bytes / 2**20:.0f} / {os.path.getsize(path) / 2**20:.0f} MiB"
        incremental = (f"{batches[0]:.2f} s / {batches[1]:.3f} s / {rewriting:.2f} s" if rewritten
                       else f"{batches[0]:.3f} s / {batches[1]:.3f} s / -")
    runs = {"transform": [], "cache": []}
    for _ in range(repeats):
        for way in runs:
            out = subprocess.run([sys.executable, __file__, "--measure", path, "--measure-open", way],
                                 check=True, capture_output=True, text=True).stdout
            runs[way].append(json.loads(out))
    cells = []
    for way, results in runs.items():
        seconds = [r["open_s"] for r in results]
        peak = max(r["peak_extra"] / r["matrix_bytes"] for r in results)
        used = {r["cached"] for r in results}
        note = "" if used == {way == "cache"} else " (not from the cache: small index)" if way == "cache" else " (?)"
        cells.append(f"{statistics.median(seconds):.2f} s [{min(seconds):.2f}-{max(seconds):.2f}]{note} "
                     f"| {peak:.2f}x")
    return f"| {n:,} | {k} | {writing} | {size} | {incremental} | {' | '.join(cells)} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--ks", default="64,256")
    parser.add_argument("--queries", type=int, default=25)
    parser.add_argument("--opens", type=int, default=3, help="fresh-process openings per index and way")
    parser.add_argument("--cache", default="/tmp/cbir-bench-query")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--measure-open", choices=["cache", "transform"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_open:
        return measure_open(args.measure, args.measure_open == "cache")
    if args.measure:
        return measure(args.measure, args.queries)
    os.makedirs(args.cache, exist_ok=True)
    med = statistics.median
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; numpy {np.__version__}\n")
    print("| N | K | floor GEMV `Y @ y` | floor 1-row GEMM | cbir search (top 10, exact) | cbir / GEMV floor "
          "| cbir / GEMM floor | Index.search_vectors (with paths) | per query, 16 per call | naive per pair (scaled) "
          "| recall@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    halves, opens = [], []
    for k in [int(v) for v in args.ks.split(",")]:
        for n in [int(v) for v in args.sizes.split(",")]:
            path = os.path.join(args.cache, f"n{n}-k{k}.db")
            if not os.path.exists(path):
                make_index(path, n, k)
            opens.append(open_row(path, n, k, args.opens))
            out = subprocess.run([sys.executable, __file__, "--measure", path, "--queries", str(args.queries)],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            t = {name: [v * 1e3 for v in values] for name, values in r["times"].items()}
            spread = lambda v: f"{med(v):.2f} ms [{min(v):.2f}-{max(v):.2f}]"  # noqa: E731
            ratio = [c / g for c, g in zip(t["cbir"], t["gemv"])]
            ratio1 = [c / g for c, g in zip(t["cbir"], t["gemm1"])]
            print(f"| {n:,} | {k} | {spread(t['gemv'])} | {spread(t['gemm1'])} | {spread(t['cbir'])} "
                  f"| {med(ratio):.2f}x | {med(ratio1):.2f}x | {spread(t['index'])} | {r['grouped'] * 1e3:.2f} ms "
                  f"| {r['naive_s']:.2f} s | {min(r['recall']):.2f} |", flush=True)
            h = {name: v * 1e3 for name, v in r["half"].items()}
            halves.append(f"| {n:,} | {k} | {h['gemv']:.2f} | {h['numpy']:.2f} | {h['opencv']:.2f} |")
    print("\nOpening, fresh processes (median [min-max] of the openings; peak extra RSS / matrix, worst opening): "
          "| N | K | writing the cache (once) | cache / database file "
          "| one image added: its batch (outdates the cache) / removing it again / writing the cache again "
          "| transforming the histograms | peak / matrix | from the cache | peak / matrix |")
    for line in opens:
        print(line)
    print(f"\nload average after: {os.getloadavg()}")
    print("\nHalf precision probe (median ms over 5 queries): | N | K | float32 GEMV | float16 via numpy chunks "
          "| float16 via OpenCV chunks |")
    for line in halves:
        print(line)


if __name__ == "__main__":
    main()
