"""Indexing on a Dask LocalCluster against cbir's own worker processes: same files, same run, interleaved.

1. The index run proper (files to histograms in the database, codebook learned beforehand) over the same files:
   ``workers=1``, ``workers=2`` (cbir's process pool), a LocalCluster of 1 and 2 worker processes (started once,
   outside the timing, as a scheduler one connects to), and 2 with ``ship_bytes``. Per image = the slope between
   a run over a third of the copies and one over all of them (fixed costs of a run -- pool start, lookup table,
   connecting -- cancel). Wall time, and CPU time of every process involved (less disturbed by a busy machine).
2. The single writer's ceiling: this process alone (records already described, as fast as a cluster could send
   them) -- the most images per second any cluster can index into one database.
3. Start-up: whole ``cbir index --cluster local:N`` commands against ``--workers N`` on a few images.

    python tests/benchmarks/bench_cluster.py [--wang ../shared/data/wang1000] [--kodak ../shared/data/kodak]
                                             [--copies 3] [--large-copies 30] [--xl-copies 3] [--repeats 3]
"""

import argparse
import glob
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

from bench_index import make_large

from cbir.index.run import index_paths
from cbir.store import Store

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
med = statistics.median


def copies_of(source, folder, copies):
    """``copies`` symlinked copies of the images in ``source`` (new paths, same bytes)."""
    for copy in range(copies):
        os.makedirs(os.path.join(folder, str(copy)))
        for path in sorted(glob.glob(os.path.join(source, "*.jpg"))):
            os.symlink(path, os.path.join(folder, str(copy), os.path.basename(path)))
    return folder


def codebook_only(tmp, folder):
    """A database holding the codebook learned from ``folder`` and no image: each timed run starts from a copy."""
    db = os.path.join(tmp, f"codebook-{os.path.basename(folder)}.db")
    with Store.open(db, create=True) as store:
        index_paths(store, [os.path.join(folder, "0")], {"sample": 200}, workers=2)
    with Store.open(db) as store:
        store.write_batch(removed=list(store.known_images()))
    return db


def _process_cpu():
    import psutil
    times = psutil.Process().cpu_times()
    return times.user + times.system


def timed_run(base, folder, tmp, client=None, **options):
    """(wall seconds of the index run, CPU seconds of this process and the cluster's workers or None, images).
    CPU time is far less disturbed than wall time by other work on a shared machine; the process pool's workers
    come and go with the run, so their CPU time is not taken."""
    db = os.path.join(tmp, "run.db")
    shutil.copy(base, db)
    cpu = time.process_time() + (sum(client.run(_process_cpu).values()) if client else 0)
    with Store.open(db) as store:
        report = index_paths(store, [folder], **options)
    cpu = time.process_time() + (sum(client.run(_process_cpu).values()) if client else 0) - cpu
    os.remove(db)
    return report.seconds, cpu if client or options.get("workers", 1) == 1 else None, report.added


def writer_ceiling(base, folder, tmp, dimension):
    """Index run seconds when describing costs nothing: results made up front (a cluster infinitely fast)."""
    from cbir.index import run
    files = glob.glob(os.path.join(folder, "*", "*.jpg"))
    vector = np.full(dimension, 1 / dimension, "<f4").tobytes()
    ready = [("0" * 64, (256, 256, vector), None)] * len(files)

    db = os.path.join(tmp, "writer.db")
    shutil.copy(base, db)
    describe_here = run._describe_here
    run._describe_here = lambda jobs, *rest: iter(ready[: len(jobs)])  # this benchmark only: describing is free
    try:
        with Store.open(db) as store:
            report = index_paths(store, [folder])
    finally:
        run._describe_here = describe_here
    os.remove(db)
    return report.seconds, report.added


def command(args, cwd):
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cbir", "index", *args, "--json"], capture_output=True, text=True,
                         cwd=cwd)
    if out.returncode not in (0, 3):
        raise RuntimeError(out.stderr)
    return time.perf_counter() - started, json.loads(out.stdout)["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wang", default=os.path.join(SHARED, "wang1000"))
    parser.add_argument("--kodak", default=os.path.join(SHARED, "kodak"))
    parser.add_argument("--copies", type=int, default=3, help="copies of Wang (3: 3000 images)")
    parser.add_argument("--large-copies", type=int, default=30, help="copies of the 24 1024x768 images")
    parser.add_argument("--xl-copies", type=int, default=3, help="copies of the 24 3000x2000 images")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.copies < 2:
        parser.error("--copies must be 2 or more (the writer's ceiling is a slope between 1 copy and all)")
    cv2.setNumThreads(1)  # one core per process, as in the worker processes and the cluster's workers
    import distributed

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("distributed")] + ["distributed"]:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the clusters' own chatter, not the results
    from cbir.index.cluster import local_cluster_config
    from cbir.index.workers import start_server
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; distributed {distributed.__version__}, "
          f"cv2 {cv2.__version__}, python {sys.version.split()[0]}\n")
    start_server(preload=("distributed",))
    tmp = tempfile.mkdtemp(prefix="cbir-bench-cluster-")
    clusters, clients = [], []
    try:
        medium, large = os.path.join(tmp, "m"), os.path.join(tmp, "l")
        make_large(args.kodak, medium, (1024, 768))
        make_large(args.kodak, large, (3000, 2000))
        sets = []  # (label, folder of 1/3 of the copies, folder of all of them)
        for label, source, copies in (("256x256 (Wang)", args.wang, args.copies),
                                      ("1024x768 (Kodak upscaled)", medium, args.large_copies),
                                      ("3000x2000 (Kodak upscaled)", large, args.xl_copies)):
            name = os.path.basename(source)
            sets.append((label, copies_of(source, os.path.join(tmp, f"{name}-few"), max(1, copies // 3)),
                         copies_of(source, os.path.join(tmp, f"{name}-all"), copies)))
        import dask.config
        with dask.config.set(local_cluster_config()):
            for n in (1, 2):
                cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, host="127.0.0.1",
                                                   dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL)
                clusters.append(cluster)
        clients = [distributed.Client(c, set_as_default=False) for c in clusters]
        local1, local2 = (c.scheduler_address for c in clusters)
        methods = {"workers=1": dict(workers=1), "workers=2": dict(workers=2),
                   "LocalCluster 1": dict(cluster=local1, client=clients[0]),
                   "LocalCluster 2": dict(cluster=local2, client=clients[1]),
                   "LocalCluster 2, ship_bytes": dict(cluster=local2, ship_bytes=True, client=clients[1])}
        print("## 1. The index run proper, per image (median of repeats, interleaved)\n")
        print("Wall ms per image, then CPU ms per image (this process, which holds the scheduler and nannies of a "
              "LocalCluster, plus the cluster's workers; the process pool's are not taken). Overhead: cluster minus process pool at the same worker "
              "count (wall), cluster minus one process (CPU, all of it).\n")
        print("| images | n | " + " | ".join(methods) + " | wall overhead, 1 / 2 workers | CPU: " +
              " | ".join(m for m in methods if m != "workers=2") + " | CPU overhead, 1 / 2 workers |")
        print("|---|---|" + "---|" * (2 * len(methods) + 1))
        for label, few, folder in sets:
            base = codebook_only(tmp, folder)
            for options in methods.values():  # warm: worker start, imports, page cache
                timed_run(base, few, tmp, **options)
            wall, cpu = {name: [] for name in methods}, {name: [] for name in methods}
            for _ in range(args.repeats):
                for name, options in methods.items():
                    seconds_few, cpu_few, added_few = timed_run(base, few, tmp, **options)
                    seconds, cpu_seconds, added = timed_run(base, folder, tmp, **options)
                    extra = added - added_few  # per image = slope: fixed costs of a run cancel
                    wall[name].append((seconds - seconds_few) / extra * 1e3)
                    if cpu_seconds is not None:
                        cpu[name].append((cpu_seconds - cpu_few) / extra * 1e3)
            w = {name: med(v) for name, v in wall.items()}
            c = {name: med(v) for name, v in cpu.items() if v}
            print(f"| {label} | {added_few}, {added} | " + " | ".join(f"{w[name]:.3f}" for name in methods) +
                  f" | {w['LocalCluster 1'] - w['workers=1']:+.3f} / {w['LocalCluster 2'] - w['workers=2']:+.3f} | " +
                  " | ".join(f"{c[name]:.3f}" for name in c) +
                  f" | {c['LocalCluster 1'] - c['workers=1']:+.3f} / {c['LocalCluster 2'] - c['workers=1']:+.3f} |",
                  flush=True)
        print(f"\nload average: {os.getloadavg()}\n")
        print("## 2. The single writer's ceiling (describing free)\n")
        print("Per image = slope between a third of the copies of Wang and all of them.\n")
        base = codebook_only(tmp, sets[0][2])
        with Store.open(base) as store:
            n_colors = len(store.codebook())
        small = [writer_ceiling(base, sets[0][1], tmp, 10 * n_colors) for _ in range(args.repeats)]
        large = [writer_ceiling(base, sets[0][2], tmp, 10 * n_colors) for _ in range(args.repeats)]
        slope = (med(t for t, _ in large) - med(t for t, _ in small)) / (large[0][1] - small[0][1])
        print(f"{large[0][1]} and {small[0][1]} images: {slope * 1e3:.3f} ms per image, {1 / slope:,.0f} images/s "
              "(listing, stat, bookkeeping, SQLite writes)\n")
        print("## 3. Start-up: whole commands on 24 images (1024x768), new process each\n")
        print("| command | wall s (median) | its index run s |")
        print("|---|---|---|")
        folder = medium
        for option in (["--workers", "1"], ["--workers", "2"], ["--cluster", "local:1"], ["--cluster", "local:2"]):
            runs = []
            for _ in range(args.repeats):
                db = os.path.join(tmp, "cmd.db")
                runs.append(command([folder, "--db", db, *option], tmp))
                os.remove(db)
            print(f"| cbir index {' '.join(option)} | {med(r[0] for r in runs):.2f} | {med(r[1] for r in runs):.2f} |",
                  flush=True)
        print(f"\nload average after: {os.getloadavg()}")
    finally:
        for client in clients:
            client.close()
        for cluster in clusters:
            cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
