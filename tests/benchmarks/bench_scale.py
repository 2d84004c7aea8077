"""A very large index through cbir itself: database size, vector-index build, open, memory, query latency, recall.

For N synthetic default-layout photos made from real histograms (tests/benchmarks/synthetic.py: crops, splices,
flips and colour jitter of Wang 1000 and Kodak), this

1. writes a real cbir database of N images (``Store.write_batch``, paths and hashes like a photo library's,
   histograms stored as cbir stores them) with the codebook learned from the real photos and default settings;
2. builds its vector index with ``cbir.index.vector_index.refresh`` (what ``cbir index`` does at its end), with
   ``--threads`` threads, and times it (wall time, and CPU time of all threads: on a shared machine the wall time
   depends on what else runs, the CPU time much less);
3. makes ``--queries`` more synthetic photos (new draws, not in the collection), ranks them exactly with
   ``Index.search_vectors(..., exact=True)`` (every histogram read and scored: the ground truth, and what
   ``cbir query --exact`` costs at this size), timed;
4. in a fresh process, single-threaded (OpenBLAS on one thread; usearch searches on one thread): opens the index
   (``Index.open`` and loading the engine: the vector index mapped), runs every query through
   ``Index.search_vectors(q, 10)`` twice and times the second (warm) pass: median and 90th percentile per query,
   recall@10 against the ground truth (a result counts when its exact distance is at most the 10th true distance,
   so ties count), resident memory after opening and at the end;
5. prints one JSON line (also appended to ``--out``) with those figures, the sizes on disk and the load average.

    python tests/benchmarks/bench_scale.py --images 1000000 --work /var/tmp/cbir-scale [--threads 2]
                                           [--queries 200] [--widths 800] [--out results.jsonl] [--rebuild-index]
                                           [--no-vector-index]

The heavy steps (1-3) run at niceness 15 (the script lowers its own priority); the measurement (4) runs at the
niceness the script was started with when the system allows it (as root; the niceness used is in the output):
on a shared machine, timing a process that others' work starves would measure the scheduler, not the search.
Steps already done for this size are not done again: the database is kept in ``--work`` and reused (``--fresh``
writes it again), and so are its vector index when current (``--rebuild-index`` builds it again) and the ground
truth.

Every size is given a vector index, also below ``Tuning().vector_index_bytes`` (about 420,000 images), where cbir
would search exactly. """

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
from process_stats import cpu_seconds, status

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 8192
# Every size gets the vector index (below Tuning().vector_index_bytes, ~420k images, cbir would search exactly)
FORCED = {"vector_index_bytes": 1}


def make_database(path, images, bases):
    """Write ``images`` synthetic photos into a new cbir database at ``path``; returns seconds per million."""
    from cbir.core.histogram import LUT_BITS
    from cbir.settings import Settings
    from cbir.store import Store

    for suffix in ("", "-wal", "-shm", "-vector-index"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    started = time.perf_counter()
    with Store.open(path, create=True) as store:
        store.lock_for_writing()
        store.replace_codebook(bases.codebook, ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in bases.rgb],
                               bases.shares, {"settings": Settings().to_dict(), "lut_bits": LUT_BITS})
        for start in range(0, images, BATCH):
            count = min(BATCH, images - start)
            vectors = bases.histograms(count, (2024, start))
            records = []
            for i, vector in enumerate(vectors, start):
                stored = f"Pictures/{2000 + i % 25}/{i // 1000 % 12 + 1:02d}/IMG_{i:08d}.jpg"
                records.append((stored, 2_500_000 + i % 999_983, 1_600_000_000_000_000_000 + i,
                                hashlib.sha256(stored.encode()).hexdigest(), 4032, 3024, vector))
            store.write_batch(records, new_paths={r[0] for r in records})
            if start // BATCH % 16 == 0:
                print(f"  written {start + count} ({time.perf_counter() - started:.0f} s)", file=sys.stderr,
                      flush=True)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return (time.perf_counter() - started) * 1e6 / images


def measure(path, queries_file, truth_file, widths):
    """In this (fresh) process: open, memory, warm latency and recall per search width (JSON on stdout)."""
    from cbir import Index, Tuning

    queries = np.load(queries_file)
    truth = np.load(truth_file) if os.path.exists(truth_file) else None  # none with --no-vector-index
    before = status("VmRSS")
    started = time.perf_counter()
    index = Index.open(path, tuning=Tuning(**FORCED))
    state = index.vector_index_state()  # loads the engine: settings, codebook, the vector index mapped
    opened = time.perf_counter() - started
    out = {"state": state, "open_s": opened, "rss_open_mb": (status("VmRSS") - before) / 2**20,
           "measured_at_niceness": os.nice(0)}
    engine = index._loaded()
    if state != "current":  # --no-vector-index: what a query re-scores, read from this database
        return print(json.dumps({**out, **candidate_reads(index, engine, len(queries))}))
    for width in widths:
        engine.backend.width = width
        for warm in (False, True):
            times, recalls = [], []
            for query, true in zip(queries, truth):
                started = time.perf_counter()
                results = index.search_vectors([query], 10)[0]
                times.append(time.perf_counter() - started)
                recalls.append(np.mean([r.distance <= true[-1] * (1 + 1e-12) for r in results]))
        out[f"width_{width}"] = {"recall_at_10": float(np.mean(recalls)),
                                 "ms_median": float(np.median(times) * 1000),
                                 "ms_p90": float(np.percentile(times, 90) * 1000),
                                 "ms_p99": float(np.percentile(times, 99) * 1000),
                                 "worst_query_recall": float(np.min(recalls))}
    out["rss_end_mb"] = (status("VmRSS") - before) / 2**20
    out["rss_peak_mb"] = (status("VmHWM") - before) / 2**20
    print(json.dumps(out))


def candidate_reads(index, engine, count, candidates=100):
    """Reading and exactly re-scoring ``candidates`` histograms drawn at random, ``count`` times (twice: the
    second pass, warm, is timed): the part of a query through the vector index that grows with the database, at a
    size whose graph is not built here. Also the exact scan of one query group (16 queries)."""
    rng = np.random.default_rng(5)
    queries = engine.backend.vectors[rng.integers(0, len(engine.ids), count)]
    draws = [np.unique(rng.integers(0, len(engine.ids), candidates)) for _ in range(count)]
    for warm in (False, True):
        times = []
        for query, rows in zip(queries, draws):
            started = time.perf_counter()
            engine.backend.exact.exact_of(engine.backend.vectors[rows], query)
            times.append(time.perf_counter() - started)
    out = {"candidate_reads": {"candidates": candidates, "ms_median": float(np.median(times) * 1000),
                               "ms_p90": float(np.percentile(times, 90) * 1000)}}
    started = time.perf_counter()
    index.search_vectors(queries[:16], 10, exact=True)
    out["exact_scan_16_queries_s"] = time.perf_counter() - started
    out["rss_end_mb"] = status("VmRSS") / 2**20
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--work", required=True, help="folder for the database (kept) and its vector index")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="threads building the graph")
    parser.add_argument("--widths", default="800",
                        help="query widths through the graph, e.g. 400,800,1600 (cbir: core/ann.py WIDTH)")
    parser.add_argument("--fresh", action="store_true", help="write the database again even if it exists")
    parser.add_argument("--rebuild-index", action="store_true", help="build the vector index again")
    parser.add_argument("--no-vector-index", action="store_true",
                        help="build no vector index: measure the database, opening it, reading and re-scoring 100 "
                             "candidates per query, and an exact scan (for a size whose graph takes hours to build)")
    parser.add_argument("--out", help="append the JSON line to this file")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(*args.measure[:2], args.measure[2], [int(w) for w in args.widths.split(",")])

    sys.path.insert(0, HERE)
    import synthetic

    from cbir import Index, Tuning
    from cbir.index import vector_index
    from cbir.store import Store, codec

    os.makedirs(args.work, exist_ok=True)
    path = os.path.join(args.work, f"scale-{args.images}.db")
    started_nice = os.nice(0)
    os.nice(15)
    result = {"images": args.images, "queries": args.queries, "threads": args.threads,
              "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    started = time.perf_counter()
    bases = synthetic.Bases()
    result["bases_s"] = time.perf_counter() - started
    with Store.open(path, create=True) as store:
        have = store.counts(["images"])["images"]
    fresh = args.fresh or have != args.images
    if fresh:
        result["write_s_per_million"] = make_database(path, args.images, bases)
    with Index.open(path, tuning=Tuning(**FORCED)) as index:
        current = index.vector_index_state() == "current"
    with Store.open(path) as store:
        if args.no_vector_index:
            if os.path.exists(vector_index.path_of(store)):
                os.unlink(vector_index.path_of(store))
        elif fresh or args.rebuild_index or not current:
            if os.path.exists(vector_index.path_of(store)):
                os.unlink(vector_index.path_of(store))
            started, cpu = time.perf_counter(), cpu_seconds()
            assert vector_index.refresh(store, Tuning(**FORCED), threads=args.threads)
            result["build_s"] = time.perf_counter() - started
            result["build_s_per_million"] = result["build_s"] * 1e6 / args.images
            # CPU time of every thread: what the build costs whatever else the machine runs
            result["build_cpu_s_per_million"] = (cpu_seconds() - cpu) * 1e6 / args.images
    result["database_bytes"] = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    result["vector_index_bytes"] = 0 if args.no_vector_index else os.path.getsize(path + "-vector-index")
    result["bytes_per_image"] = (result["database_bytes"] + result["vector_index_bytes"]) / args.images

    queries = codec.stored_form(bases.histograms(args.queries, (777, 0)))
    queries_file, truth_file = path + f"-queries-{args.queries}.npy", path + f"-truth-{args.queries}.npy"
    if not args.no_vector_index and (fresh or not os.path.exists(truth_file)):
        with Index.open(path, tuning=Tuning(**FORCED)) as index:
            started = time.perf_counter()
            exact = index.search_vectors(queries, 10, exact=True)
            result["exact_scan_s"] = time.perf_counter() - started
        np.save(truth_file, np.array([[r.distance for r in ranking] for ranking in exact]))
    np.save(queries_file, queries)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def usual_priority():
        try:
            os.setpriority(os.PRIO_PROCESS, 0, started_nice)
        except OSError:  # lowering niceness needs privileges: measure at 15, and say so
            pass

    done = subprocess.run([sys.executable, __file__, "--images", str(args.images), "--work", args.work,
                           "--widths", args.widths, "--measure", path, queries_file, truth_file],
                          capture_output=True, text=True, env=env, preexec_fn=usual_priority)
    if done.returncode:
        sys.exit(done.stderr)
    result.update(json.loads(done.stdout))
    result["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
