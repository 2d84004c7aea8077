"""The measurements behind the choices in opening an index and re-scoring (docs/benchmarks.md, "Query latency" and
"Opening a large index"), each method against the one it replaced, in one run:

1. shares to the power 1/3: ``np.power(x, 1/3)`` against ``np.cbrt`` (1M x 64 float32: uniform values, and sparse
   histogram shares as ``bench_query.py`` makes them, many of them tiny);
2. the transform at K = 256: numpy's stacked ``(M, 1, K) @ (K, K)`` against one 2-D ``(M, K) @ (K, K)`` (1M rows,
   in 64k-row chunks);
3. first touch of a fresh 244 MiB matrix: numpy's allocator (it asks for transparent huge pages) against an
   anonymous memory map (tried for the transformed matrix, not kept), each in a fresh process;
4. reading the raw histograms of 42 random images back from SQLite (``Store.histograms_of``), for the indexes
   that ``bench_query.py`` left in --cache;
5. the exact re-scoring's ``(diff @ A) . diff`` for 42 candidates (K = 64, 256) and 52 candidates of the default
   global+3x3 layout (10 blocks of K = 128): numpy's stacked ``(n, B, K) @ (K, K)`` against one 2-D
   ``(n*B, K) @ (K, K)``, float64.

    python tests/benchmarks/profile_open.py [--cache /tmp/cbir-bench-query] [--repeats 5]
"""

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def timed(run, repeats):
    """Median seconds of ``repeats`` calls of ``run``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


FIRST_TOUCH = """
import mmap, sys, time
import numpy as np
rows, columns = 1_000_000, 64
started = time.perf_counter()
if sys.argv[1] == "numpy":
    matrix = np.empty((rows, columns), np.float32)
else:
    matrix = np.frombuffer(mmap.mmap(-1, rows * columns * 4), np.float32).reshape(rows, columns)
matrix[:] = 1
print(time.perf_counter() - started)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="/tmp/cbir-bench-query")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}; numpy {np.__version__}\n")
    rng = np.random.default_rng(0)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_query import synthetic_histograms

    for label, shares in (("uniform", rng.random((1_000_000, 64), dtype=np.float32)),
                          ("histogram shares", synthetic_histograms(rng, 1_000_000, 64))):
        power = timed(lambda: np.power(shares, np.float32(1 / 3)), args.repeats)
        print(f"1. power 1/3 of 1M x 64 float32, {label}: np.power {power:.3f} s, "
              f"np.cbrt {timed(lambda: np.cbrt(shares), args.repeats):.3f} s")

    chunk = rng.random((65536, 256), dtype=np.float32)
    factor = rng.random((256, 256), dtype=np.float32)
    out = np.empty_like(chunk)
    stacked = timed(lambda: np.matmul(chunk.reshape(-1, 1, 256), factor, out=out.reshape(-1, 1, 256)), args.repeats)
    flat = timed(lambda: np.matmul(chunk, factor, out=out), args.repeats)
    scale = 1_000_000 / len(chunk)
    print(f"2. transform of 1M x 256: stacked {stacked * scale:.2f} s, one 2-D product {flat * scale:.2f} s")

    touch = {}
    for way in ("numpy", "mmap") * args.repeats:
        out = subprocess.run([sys.executable, "-c", FIRST_TOUCH, way], check=True, capture_output=True, text=True)
        touch.setdefault(way, []).append(float(out.stdout))
    listed = {way: ", ".join(f"{t:.2f}" for t in times) for way, times in touch.items()}
    print(f"3. first touch of 1M x 64 float32 (244 MiB), fresh processes: numpy allocator {listed['numpy']} s; "
          f"anonymous map {listed['mmap']} s")

    from cbir.store import Store

    for path in sorted(glob.glob(os.path.join(args.cache, "n*-k*.db"))):
        with Store.open(path) as store:
            n = store.counts(["images"])["images"]
            dimension = int(path.rsplit("-k", 1)[1][:-3])
            store.histograms_of([1], dimension)  # opened and warmed up: what a loaded index pays per query
            picks = [rng.choice(n, 42, replace=False) + 1 for _ in range(args.repeats * 20)]
            seconds = statistics.median([timed(lambda: store.histograms_of(p, dimension), 1) for p in picks])
        print(f"4. {os.path.basename(path)}: 42 random raw histograms read back in {seconds * 1e3:.3f} ms")

    for n, blocks, k in ((42, 1, 64), (42, 1, 256), (52, 10, 128)):
        similarity = rng.random((k, k))
        similarity = similarity @ similarity.T
        diff = rng.random((n, blocks * k)) - 0.5
        stacked, flat = diff.reshape(n, blocks, k), diff.reshape(n * blocks, k)
        repeats = args.repeats * 40
        times = (timed(lambda: np.einsum("nbk,nbk->nb", stacked @ similarity, stacked), repeats),
                 timed(lambda: np.einsum("ik,ik->i", flat @ similarity, flat), repeats))
        print(f"5. re-scoring {n} candidates x {blocks} block(s) x K = {k}: stacked {times[0] * 1e6:.1f} us, "
              f"one 2-D product {times[1] * 1e6:.1f} us")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
