"""All pairs of a large index: how long ``Index.duplicates()`` takes, and its peak memory, at 10k to 1M images.

The indexes are synthetic, made from a real one: Wang's 1000 photos are indexed (codebook, histograms and structure
thumbnails), then each synthetic image is a mosaic of nine of them (each region of the 3x3 layout, its histogram and
its cells of the thumbnail, from another photo; the whole-picture histogram their mean), and a share of them are made
near copies (10%: a random rotation or mirror, +-5% noise per histogram bin) or burst-like neighbours (20%: +-30%
noise) of an earlier one, so there is something to find and to measure. Requires the default layout (global+3x3). Sizes
up to ``--db-max`` are written to an index database and timed through ``Index.duplicates()`` in a fresh process
(loading included; peak RSS of that process); larger ones are timed in memory through the same numerics
(``cbir.core.duplicates``: candidate pairs and their exact distances), the colour vectors already transformed.

    python tests/benchmarks/bench_duplicates_scale.py [--data ../shared/data/wang1000] [--sizes 10000,100000]
                                                      [--db-max 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from cbir.core import duplicates as dup
from cbir.index import Index

HERE = os.path.dirname(os.path.abspath(__file__))
CELL_REGION = (np.arange(16) * 3 // 16)[:, None] * 3 + (np.arange(16) * 3 // 16)  # 3x3 region of each thumbnail cell
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "wang1000"))


def base_index(data, folder):
    """Wang indexed once: its database path, raw histograms (N, B, K), thumbnails (N, 256) and block perms."""
    db = os.path.join(folder, "base.db")
    with Index.open(db, create=True) as index:
        index.add(data, workers=1)
        ids, _ = index.image_paths()
        raw = index.histograms(ids)
        layout = index.settings.layout
        thumbs, present = index._store.structure_thumbnails(ids)  # benchmark only: the store's reader
    perms = dup.block_permutations(layout)
    return db, raw.reshape(len(ids), len(perms[0]), -1), thumbs[present], perms


def synthetic(raw, thumbs, n, perms, seed=0, chunk=20_000):
    """Yields (histograms (m, B*K) float32, thumbnails (m, 256) uint8) chunks of n synthetic images: mosaics of
    nine real photos; 20% of them burst-like neighbours (+-30% noise per bin), 10% near copies (a random rotation
    or mirror, +-5% noise) of a photo made before them, chosen uniformly (so groups stay small, as in a library)."""
    rng = np.random.default_rng(seed)
    shape_perms = dup.thumbnail_permutations()
    m = len(raw)
    earlier_x, earlier_t = [], []  # every row made so far, to copy from
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        # a mosaic: each of the 3x3 regions (histogram, and the matching cells of the thumbnail) from another photo
        base = rng.integers(0, m, (size, 9))
        x = np.empty((size, *raw.shape[1:]), np.float32)
        x[:, 1:] = raw[base, np.arange(1, 10)]
        x[:, 0] = x[:, 1:].mean(1)  # the whole picture: the regions together (equal areas)
        t = thumbs.reshape(m, 16, 16)[base[:, CELL_REGION], np.arange(16)[:, None], np.arange(16)]
        t = t.reshape(size, 256).astype(np.float32)
        kind = rng.random(size)
        for lo, hi, noise, sym in ((0.7, 0.9, 0.3, False), (0.9, 1.0, 0.05, True)):
            rows = np.flatnonzero((kind >= lo) & (kind < hi) & (np.arange(size) + start > 0))
            # the source: any row made before (among the last chunks kept), in earlier chunks or earlier in this one
            kept = sum(len(e) for e in earlier_x)
            src = (rng.random(len(rows)) * (kept + rows)).astype(np.int64)
            pool_x = np.concatenate(earlier_x + [x.reshape(size, *raw.shape[1:])])
            pool_t = np.concatenate(earlier_t + [t])
            g = rng.integers(0, 8, len(rows)) if sym else np.zeros(len(rows), int)
            v = pool_x[src][np.arange(len(rows))[:, None], perms[g]]
            v *= rng.uniform(1 - noise, 1 + noise, v.shape).astype(np.float32)
            x[rows] = v / v.sum(-1, keepdims=True)
            t[rows] = pool_t[src][np.arange(len(rows))[:, None], shape_perms[g]] + \
                rng.normal(0, 40 * noise, (len(rows), t.shape[1]))
        earlier_x.append(x.copy())
        earlier_t.append(t.copy())
        del earlier_x[:-10], earlier_t[:-10]  # copy from the last 200,000 rows at most: bounded memory at 1M
        low, high = t.min(1, keepdims=True), t.max(1, keepdims=True)
        yield (x.reshape(size, -1).astype(np.float32),
               np.round((t - low) * (255 / np.maximum(high - low, 1e-6))).astype(np.uint8))


def write_index(base_db, db, raw, thumbs, n, perms):
    """A copy of the base database with its images replaced by n synthetic ones."""
    with open(base_db, "rb") as src, open(db, "wb") as out:
        out.write(src.read())
    with Index.open(db) as index:
        store = index._store  # benchmark only: rows written directly, no image files behind them
        store.lock_for_writing()
        try:
            store.write_batch(removed=[p for p in store.known_images()])
            done = 0
            for x, t in synthetic(raw, thumbs, n, perms):
                store.write_batch([(f"synthetic/{done + i:07d}.jpg", 100_000 + done + i, done + i, f"{done + i:064x}",
                                    640, 480, x[i], t[i]) for i in range(len(x))])
                done += len(x)
        finally:
            store.unlock()


def time_database(db):
    """Index.duplicates() on db in a fresh process: its JSON figures."""
    code = ("import json, os, resource, time; from cbir import Index\n"
            f"index = Index.open({db!r}); started = time.perf_counter(); report = index.duplicates()\n"
            "print(json.dumps(dict(seconds=time.perf_counter() - started, groups=len(report.groups),\n"
            "    pairs=report.pairs_measured, found=len(report.pairs),\n"
            "    rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, load=os.getloadavg()[0])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def time_in_memory(base_db, raw, thumbs, n, perms):
    """The numerics alone on n synthetic images held in memory (colour already transformed)."""
    with Index.open(base_db) as index:
        search = index._loaded().backend  # benchmark only: the index's transform (default ranking)
    colour = np.empty((n, raw.shape[1] * raw.shape[2]), np.float32)
    structure = np.empty((n, 256), np.float32)
    done = 0
    for x, t in synthetic(raw, thumbs, n, perms):
        colour[done : done + len(x)] = search.transform(x)
        structure[done : done + len(x)] = dup.structure_vectors(t)
        done += len(x)
    colour = colour.reshape(n, raw.shape[1], -1)
    started = time.perf_counter()
    i, j = dup.candidate_pairs(colour, structure, perms, dup.Rule())
    middle = time.perf_counter()
    c, e, _ = dup.pair_distances(colour, structure, i, j, perms)
    found = int(((dup.Rule().near_distance(c, e) <= 1) | dup.Rule().saved_again(c, e)).sum())
    return dict(seconds=time.perf_counter() - started, candidates_seconds=middle - started, pairs=len(i),
                found=found, rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                load=os.getloadavg()[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--db-max", type=int, default=200_000, help="larger sizes are timed in memory")
    args = parser.parse_args()
    print("| images | how | seconds | pairs measured | pairs found | peak RSS (GiB) | load |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        base_db, raw, thumbs, perms = base_index(args.data, folder)
        for n in (int(s) for s in args.sizes.split(",")):
            if n <= args.db_max:
                db = os.path.join(folder, f"s{n}.db")
                write_index(base_db, db, raw, thumbs, n, perms)
                r = time_database(db)
                os.remove(db)
                how = "Index.duplicates() on the database"
            else:
                r = time_in_memory(base_db, raw, thumbs, n, perms)
                how = f"numerics in memory (candidates {r['candidates_seconds']:.0f} s)"
            print(f"| {n:,} | {how} | {r['seconds']:.1f} | {r['pairs']:,} | {r['found']:,} | {r['rss']:.2f} | "
                  f"{r['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
