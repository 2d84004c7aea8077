"""faiss-cpu against usearch for the vector index, on the same data, single-threaded: why cbir uses usearch.

N synthetic default-layout photos (tests/benchmarks/synthetic.py), stored as cbir stores them, transformed as cbir
transforms them (default settings, the codebook of the real photos), projected on their first --dim principal
axes (fitted on 100,000 of them). Ground truth: each query's exact top 10 (float32 candidates over every
transformed vector, then float64 re-scoring, as cbir's exact search). Then for each configuration, built once
(one thread; wall and CPU time) and measured in a fresh process: the file's size, opening it (faiss: mapped where it can be;
usearch: viewed), resident memory above the process's before opening and after the queries (graph pages
touched), the median time of the search for 100 candidates per query (warm: the second of two passes), and
recall@10 after the exact re-scoring of those candidates (ties count), per search width (efSearch or nprobe).

    nice -n 15 python tests/benchmarks/bench_ann_libraries.py --images 1000000 --work /var/tmp/cbir-ann
        [--configs usearch:f16:16,usearch:i8:16,faiss:HNSW16_SQ8,faiss:HNSW32_SQ8,faiss:IVF4096,SQ8,faiss:IVF4096,PQ32]
        [--queries 500] [--out results.jsonl]

Needs faiss-cpu and usearch (pip install faiss-cpu usearch). usearch's i8 casts each value as round(127 x), so
its vectors are scaled by one factor to fit; faiss's SQ8 learns a range per dimension.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from process_stats import cpu_seconds, status

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK = 1 << 15
CANDIDATES = 100


def engine(codebook):
    """cbir's exact search for the default settings over ``codebook``, nothing transformed yet."""
    from cbir.core.backends import QuadraticFormSearch
    from cbir.core.histogram import block_weights
    from cbir.core.qfd import similarity_matrix
    from cbir.settings import Settings

    s = Settings()
    return QuadraticFormSearch.factorised(None, similarity_matrix(codebook, s.kernel, s.sigma), power=s.power,
                                          blocks=10, weights=block_weights(s.layout))


def prepare(args):
    """Stored histograms, projections and ground truth in --work (made once per --images and --dim)."""
    sys.path.insert(0, HERE)
    import synthetic

    from cbir.core import ann
    from cbir.store import codec

    stem = os.path.join(args.work, f"ann-{args.images}-{args.dim}")
    if os.path.exists(stem + "-truth.npy"):
        return stem
    os.makedirs(args.work, exist_ok=True)
    bases = synthetic.Bases()
    search = engine(bases.codebook)
    np.save(stem + "-codebook.npy", bases.codebook)
    steps = np.lib.format.open_memmap(stem + "-steps.npy", "w+", np.uint16, (args.images, 10 * bases.k))
    for start in range(0, args.images, CHUNK):
        count = min(CHUNK, args.images - start)
        steps[start : start + count] = codec.quantise(bases.histograms(count, (2024, start)))
    sample = codec.dequantise(steps[:: max(1, args.images // 100_000)][:100_000])
    mean, axes = ann.fit_projection(search.transform(sample), args.dim)
    queries = codec.stored_form(bases.histograms(args.queries, (777, 0)))
    targets = search.transform(queries)
    projected = np.lib.format.open_memmap(stem + "-projected.npy", "w+", np.float32, (args.images, args.dim))
    keep = 64
    best = np.full((len(queries), keep), np.inf, np.float32), np.zeros((len(queries), keep), np.int64)
    for start in range(0, args.images, CHUNK):
        transformed = search.transform(codec.dequantise(steps[start : start + CHUNK]))
        projected[start : start + len(transformed)] = ann.project(transformed, mean, axes)
        scores = 0.5 * np.einsum("nd,nd->n", transformed, transformed)[None] - targets @ transformed.T
        merged = np.concatenate([best[0], scores], 1), np.concatenate(
            [best[1], np.broadcast_to(np.arange(start, start + len(transformed)), scores.shape)], 1)
        top = np.argpartition(merged[0], keep - 1, axis=1)[:, :keep]
        best = np.take_along_axis(merged[0], top, 1), np.take_along_axis(merged[1], top, 1)
    truth = np.array([np.sort(search.exact_of(codec.dequantise(steps[np.sort(rows)]), q))[:10]
                      for rows, q in zip(best[1], queries)])
    np.save(stem + "-queries.npy", queries)
    np.save(stem + "-qprojected.npy", ann.project(targets, mean, axes))
    np.save(stem + "-meta.npy", np.concatenate([mean, axes.ravel()]))
    np.save(stem + "-truth.npy", truth)
    return stem


def build(kind, spec, stem, path):
    import faiss

    faiss.omp_set_num_threads(1)
    projected = np.load(stem + "-projected.npy", mmap_mode="r")
    scale = 1.0
    started, cpu = time.perf_counter(), cpu_seconds()
    if kind == "usearch":
        from usearch.index import Index

        dtype, connectivity = spec.split(":")
        if dtype == "i8":  # round(127 x), clipped: one factor for every coordinate
            scale = 1.0 / float(np.abs(projected[::97]).max() * 1.2)
        index = Index(ndim=projected.shape[1], metric="l2sq", dtype=dtype, connectivity=int(connectivity),
                      expansion_add=128)
        for start in range(0, len(projected), CHUNK):
            part = np.asarray(projected[start : start + CHUNK]) * scale
            index.add(np.arange(start, start + len(part)), part, threads=1)
        index.save(path)
    else:
        index = faiss.index_factory(projected.shape[1], spec)
        if "HNSW" in spec and "IVF" not in spec:
            faiss.downcast_index(index).hnsw.efConstruction = 128
        if not index.is_trained:
            index.train(np.ascontiguousarray(projected[:: max(1, len(projected) // 200_000)][:200_000]))
        for start in range(0, len(projected), CHUNK):
            index.add(np.ascontiguousarray(projected[start : start + CHUNK]))
        faiss.write_index(index, path)
    return time.perf_counter() - started, cpu_seconds() - cpu, scale


def measure(kind, spec, stem, path, scale, widths):
    """Fresh process: open, memory, warm latency of 100 candidates, recall@10 after exact re-scoring."""
    import faiss

    faiss.omp_set_num_threads(1)
    from cbir.store import codec

    queries = np.load(stem + "-queries.npy")
    targets = np.load(stem + "-qprojected.npy") * scale
    truth = np.load(stem + "-truth.npy")
    before = status("VmRSS")
    started = time.perf_counter()
    if kind == "usearch":
        from usearch.index import Index

        index = Index.restore(path, view=True, enable_key_lookups=False)
    else:
        index = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC if "IVF" not in spec else faiss.IO_FLAG_MMAP)
    out = {"open_s": time.perf_counter() - started, "rss_open_mb": (status("VmRSS") - before) / 2**20}
    found = {}
    for width in widths:
        for _ in range(2):  # the second pass is warm
            times, candidates = [], []
            for target in targets:
                started = time.perf_counter()
                if kind == "usearch":
                    index.expansion_search = max(width, CANDIDATES)
                    keys = index.search(target, CANDIDATES, threads=1).keys
                else:
                    if "IVF" in spec:
                        faiss.extract_index_ivf(index).nprobe = width
                    else:
                        faiss.downcast_index(index).hnsw.efSearch = max(width, CANDIDATES)
                    keys = index.search(target[None], CANDIDATES)[1][0]
                times.append(time.perf_counter() - started)
                candidates.append(np.asarray(keys, np.int64))
        found[width] = candidates
        out[f"width_{width}_ms"] = float(np.median(times) * 1000)
    out["rss_end_mb"] = (status("VmRSS") - before) / 2**20  # before the exact re-scoring reads the histograms
    steps = np.load(stem + "-steps.npy", mmap_mode="r")
    search = engine(np.load(stem + "-codebook.npy"))
    for width, candidates in found.items():
        recalls = []
        for rows, query, true in zip(candidates, queries, truth):
            rows = np.sort(rows[rows >= 0])
            d = np.sort(search.exact_of(codec.dequantise(steps[rows]), query))[:10]
            recalls.append(np.mean(d <= true[-1] * (1 + 1e-12)))
        out[f"width_{width}_recall"] = float(np.mean(recalls))
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--configs", default="usearch:f16:16,usearch:i8:16,faiss:HNSW16_SQ8,faiss:HNSW32_SQ8,"
                                             "faiss:IVF4096,SQ8")
    parser.add_argument("--widths", default="100,200,400,800", help="HNSW efSearch values (IVF: nprobe 16..128)")
    parser.add_argument("--out")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(*json.loads(args.measure))
    stem = prepare(args)
    configs = []
    for item in args.configs.split(","):  # "faiss:IVF4096,SQ8" holds a comma: join factory parts back
        if item.startswith(("usearch:", "faiss:")) or not configs:
            configs.append(item)
        else:
            configs[-1] += "," + item
    for config in configs:
        kind, spec = config.split(":", 1)
        path = f"{stem}-{config.replace(':', '_').replace(',', '_')}.index"
        build_s, build_cpu_s, scale = build(kind, spec, stem, path)
        widths = [16, 32, 64, 128] if "IVF" in spec else [int(w) for w in args.widths.split(",")]
        done = subprocess.run([sys.executable, __file__, "--images", str(args.images), "--work", args.work,
                               "--measure", json.dumps([kind, spec, stem, path, scale, widths])],
                              capture_output=True, text=True,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
        result = {"images": args.images, "dim": args.dim, "config": config, "build_s_per_million":
                  build_s * 1e6 / args.images, "build_cpu_s_per_million": build_cpu_s * 1e6 / args.images,
                  "size_mb": os.path.getsize(path) / 2**20,
                  "loadavg": open("/proc/loadavg").read().split()[:3]}
        result.update(json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-400:]})
        print(json.dumps(result), flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(json.dumps(result) + "\n")
        os.unlink(path)


if __name__ == "__main__":
    main()
