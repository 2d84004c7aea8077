"""Latency of `cbir serve`, measured from a client on 127.0.0.1.

latency: the first results page of a large index. An index of --images photos is written once into --cache: real
    photo files (hard links to Wang 1000's photos, spread over folders of 1000, so thumbnails are real work) with
    synthetic but valid histograms (the sample index's codebook and settings; shares that sum to 1 per block, sparse
    like photos). `cbir serve` runs in its own process. For each query (searches by example id, by colour, by
    painted layout, by upload): the results page (HTML) and then its thumbnails, 6 at a time as a browser fetches
    them, after one warm-up round that fills the thumbnail cache; medians and the spread over --rounds.
load: --clients concurrent clients for --seconds against a real index (Wang 1000) while `cbir index` adds
    photos (ukbench1000) to it: a mix of searches (example, colour, layout), thumbnails and folder pages. Reports
    per kind the count, failures and latency percentiles.

browser: the same results pages in headless Chromium (Debian's, through Selenium): from the request to the load
    event, when the page and all its thumbnails are there, by the browser's Navigation Timing.

    python tests/benchmarks/bench_web.py latency [--images 100000] [--rounds 5] [--cache /tmp/cbir-bench-web]
    python tests/benchmarks/bench_web.py browser [--images 100000] [--rounds 5]
    python tests/benchmarks/bench_web.py load [--clients 20] [--seconds 30] [--cache /tmp/cbir-bench-web]
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SAMPLE_DB = os.path.join(REPO, "sample_index", "index.db")


def synthetic_blocks(rng, count, blocks, k):
    """(count, blocks*k) float32: per block a few dominant colours, shares summing to 1."""
    x = rng.gamma(0.08, size=(count, blocks, k)).astype(np.float32)
    x[np.arange(count)[:, None], np.arange(blocks)[None], rng.integers(0, k, (count, blocks))] += 0.05
    return (x / x.sum(2, keepdims=True)).reshape(count, blocks * k)


def make_large_index(folder, images, data, seed=0):
    """An index of ``images`` photos in ``folder``/index.db (made once; reused while it has that many)."""
    from cbir.core.histogram import n_blocks
    from cbir.store import Store

    db = os.path.join(folder, "index.db")
    if os.path.exists(db):
        with Store.open(db) as store:
            if store.counts(("images",))["images"] == images:
                return db
    shutil.rmtree(folder, ignore_errors=True)
    sources = os.path.join(folder, "sources")
    os.makedirs(sources)
    wang = sorted(os.path.join(data, "wang1000", f) for f in os.listdir(os.path.join(data, "wang1000"))
                  if f.endswith(".jpg"))
    copies = []
    for path in wang:  # copied once, then hard-linked: 100k real files at the cost of 1000
        copy = os.path.join(sources, os.path.basename(path))
        shutil.copyfile(path, copy)
        with open(copy, "rb") as handle:
            copies.append((copy, hashlib.sha256(handle.read()).hexdigest()))
    with Store.open(SAMPLE_DB) as sample:
        meta, rows, codebook = sample.meta(), sample.codebook_rows(), sample.codebook()
    k, blocks = len(codebook), n_blocks(meta["settings"]["layout"])
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with Store.open(db, create=True) as store:
        store.replace_codebook(codebook, [r["hex"] for r in rows], [r["share"] for r in rows],
                               {key: meta[key] for key in meta if key not in ("schema_version", "codebook_created")})
        for start in range(0, images, 5000):
            count = min(5000, images - start)
            vectors = synthetic_blocks(rng, count, blocks, k)
            records = []
            for i, vector in zip(range(start, start + count), vectors):
                source, sha256 = copies[i % len(copies)]
                stored = f"photos/{i // 1000:03d}/{i:06d}.jpg"
                os.makedirs(os.path.join(folder, os.path.dirname(stored)), exist_ok=True)
                os.link(source, os.path.join(folder, stored))
                info = os.stat(source)
                records.append((stored, info.st_size, info.st_mtime_ns, sha256, 384, 256, vector))
            store.write_batch(records)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"# wrote {db}: {images} photos in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return db


class Server:
    """`cbir serve` in its own process, on a free port of 127.0.0.1."""

    def __init__(self, db, *extra):
        self.process = subprocess.Popen([sys.executable, "-m", "cbir", "serve", "--db", db, *extra],
                                        stdout=subprocess.PIPE, text=True, cwd=REPO)
        line = self.process.stdout.readline()
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise SystemExit(f"cbir serve did not start: {line!r}")
        self.url = line.split()[0].rstrip("/")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def thumbnails_of(html):
    import re

    return re.findall(r'<img src="(/image/\d+/thumb\?v=[0-9a-f]*)"', html)


async def results_page(client, method, url, **kwargs):
    """Seconds for the page, and for the page and all its thumbnails (6 at a time), and the number of thumbnails."""
    started = time.perf_counter()
    response = await client.request(method, url, **kwargs)
    response.raise_for_status()
    page = time.perf_counter() - started
    thumbs = thumbnails_of(response.text)
    gate = asyncio.Semaphore(6)

    async def fetch(src):
        async with gate:
            (await client.get(src)).raise_for_status()

    await asyncio.gather(*(fetch(src) for src in thumbs))
    return page, time.perf_counter() - started, len(thumbs)


def http_client():
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx
    return httpx


def latency(args):
    httpx = http_client()

    db = make_large_index(os.path.join(args.cache, f"large-{args.images}"), args.images, args.data)
    upload = open(os.path.join(REPO, "sample_index", "images", "kodim23.jpg"), "rb").read()
    rng = random.Random(1)
    queries = {
        "example id": [("GET", f"/search?like={rng.randrange(1, args.images)}", {}) for _ in range(args.queries)],
        "colour": [("GET", "/search?color=%231e90ff:40&color=white:20", {}), ("GET", "/search?color=green:60", {}),
                   ("GET", "/search?color=red:30&color=black:30", {})],
        "layout": [("GET", "/search?layout=" + ",".join(["skyblue"] * 3 + [""] * 3 + ["green"] * 3), {})],
        "upload": [("POST", "/search", {"files": {"image": ("kodim23.jpg", upload, "image/jpeg")}})],
    }
    loaded = time.perf_counter()
    with Server(db) as server:
        async def run():
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                first = await results_page(client, "GET", "/search?like=1")  # loads the index
                opened = time.perf_counter() - loaded
                for kind in queries:  # warm-up: thumbnails made and cached
                    for method, url, kwargs in queries[kind]:
                        await results_page(client, method, url, **kwargs)
                timings = {kind: [] for kind in queries}
                for _ in range(args.rounds):
                    for kind in queries:
                        for method, url, kwargs in queries[kind]:
                            timings[kind].append(await results_page(client, method, url, **kwargs))
                return first, opened, timings

        first, opened, timings = asyncio.run(run())
    search = search_alone(db, args)
    print(f"# {args.images:,} images; server start to first results page (index loaded): {opened:.2f} s; "
          f"load {open('/proc/loadavg').read().split()[:3]}; the search alone (Index.search_vectors, 25 results, "
          f"in one process, same run): median {search:.0f} ms")
    print("| query | pages | page (HTML) median [min-max] | page + thumbnails median [min-max] | thumbnails |")
    print("|---|---|---|---|---|")
    for kind, rows in timings.items():
        pages, whole = [r[0] * 1000 for r in rows], [r[1] * 1000 for r in rows]
        print(f"| {kind} | {len(rows)} | {statistics.median(pages):.0f} ms [{min(pages):.0f}-{max(pages):.0f}] | "
              f"{statistics.median(whole):.0f} ms [{min(whole):.0f}-{max(whole):.0f}] | {rows[0][2]} |")


def chromium():
    """Headless Debian chromium through Selenium and Debian's chromium-driver (named, so nothing is downloaded)."""
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def browser_latency(args):
    """The results page as a browser shows it: from the request to the load event (the page and every thumbnail
    loaded), by the browser's own Navigation Timing, the HTTP cache disabled so every thumbnail is asked for."""
    db = make_large_index(os.path.join(args.cache, f"large-{args.images}"), args.images, args.data)
    rng = random.Random(2)
    urls = {"example id": [f"/search?like={rng.randrange(1, args.images)}" for _ in range(args.queries)],
            "colour": ["/search?color=%231e90ff:40&color=white:20", "/search?color=green:60",
                       "/search?color=red:30&color=black:30"],
            "layout": ["/search?layout=" + ",".join(["skyblue"] * 3 + [""] * 3 + ["green"] * 3)]}
    upload = os.path.join(REPO, "sample_index", "images", "kodim23.jpg")
    with Server(db) as server:
        driver = chromium()
        try:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
            timing = "const t = performance.getEntriesByType('navigation')[0]; return [t.responseEnd, t.loadEventEnd];"

            def visit(kind, url):
                if kind == "upload":
                    driver.get(server.url + "/example")
                    driver.find_element("id", "image").send_keys(upload)
                    driver.find_element("css selector", "#upload button[type=submit]").click()
                else:
                    driver.get(server.url + url)
                for _ in range(200):  # a form's submit returns before its page has loaded
                    page, whole = driver.execute_script(timing)
                    if whole > 0 and driver.find_elements("css selector", ".result"):
                        return page, whole, len(driver.find_elements("css selector", ".result img"))
                    time.sleep(0.01)
                raise SystemExit(f"{url}: no results page")

            queries = [(kind, url) for kind in urls for url in urls[kind]] + [("upload", None)]
            for kind, url in queries:  # warm-up: the index loaded, the thumbnails made and cached
                visit(kind, url)
            timings = {kind: [] for kind, _ in queries}
            for _ in range(args.rounds):
                for kind, url in queries:
                    page, whole, count = visit(kind, url)
                    timings[kind].append((page / 1000, whole / 1000, count))
        finally:
            driver.quit()
    search = search_alone(db, args)
    load = open("/proc/loadavg").read().split()[:3]
    print(f"# {args.images:,} images, headless Chromium, HTTP cache off; load {load}; the search alone (Index.search_vectors, 25 results, in one process, same run): median {search:.0f} ms")
    print("| query | pages | page (HTML) median [min-max] | page + thumbnails (load event) median [min-max] | "
          "thumbnails |")
    print("|---|---|---|---|---|")
    for kind, rows in timings.items():
        pages, whole = [r[0] * 1000 for r in rows], [r[1] * 1000 for r in rows]
        print(f"| {kind} | {len(rows)} | {statistics.median(pages):.0f} ms [{min(pages):.0f}-{max(pages):.0f}] | "
              f"{statistics.median(whole):.0f} ms [{min(whole):.0f}-{max(whole):.0f}] | {rows[0][2]} |")


def search_alone(db, args):
    """Median milliseconds of ``Index.search_vectors`` for examples from the index: the engine's share of a page."""
    from cbir import Index

    rng = random.Random(3)
    with Index.open(db, read_only=True) as index:
        vectors = index.histograms([rng.randrange(1, args.images) for _ in range(10)])
        index.search_vectors(vectors[:1], 25)
        times = []
        for vector in vectors:
            started = time.perf_counter()
            index.search_vectors([vector], 25)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def percentile(values, q):
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def load(args):
    httpx = http_client()

    folder = os.path.join(args.cache, "load")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    db = os.path.join(folder, "index.db")
    subprocess.run([sys.executable, "-m", "cbir", "index", os.path.join(args.data, "wang1000"), "--db", db],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    added = os.path.join(args.data, "ukbench1000")
    with Server(db) as server:
        async def run():
            limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
                info = (await client.get("/api/info")).json()
                count = info["images"]
                def colour(r):
                    return r.choice(info["codebook"])["hex"].replace("#", "%23")

                kinds = {
                    "search by example": (0.2, lambda r: f"/search?like={r.randrange(1, count)}"),
                    "search by colour": (0.1, lambda r: f"/search?color={colour(r)}:{r.randrange(20, 80)}"),
                    "search by layout": (0.1, lambda r: "/search?layout=" + ",".join(
                        colour(r) if r.random() < 0.5 else "" for _ in range(9))),
                    "api search": (0.1, lambda r: f"/api/search?like={r.randrange(1, count)}&n=10"),
                    "thumbnail": (0.4, None),
                    "folder page": (0.1, lambda r: "/?folder="),
                }
                names, weights = list(kinds), [kinds[k][0] for k in kinds]
                seen_thumbs = []
                latencies = {k: [] for k in kinds}
                failures = {k: 0 for k in kinds}
                deadline = time.perf_counter() + args.seconds

                async def user(seed):
                    r = random.Random(seed)
                    while time.perf_counter() < deadline:
                        kind = r.choices(names, weights)[0]
                        if kind == "thumbnail":
                            url = r.choice(seen_thumbs) if seen_thumbs else f"/image/{r.randrange(1, count)}/thumb"
                        else:
                            url = kinds[kind][1](r)
                        started = time.perf_counter()
                        try:
                            response = await client.get(url)
                            ok = response.status_code == 200
                        except httpx.HTTPError:
                            ok = False
                        latencies[kind].append(time.perf_counter() - started)
                        if not ok:
                            failures[kind] += 1
                        elif url.startswith("/search"):
                            seen_thumbs.extend(thumbnails_of(response.text)[:8])

                indexer = subprocess.Popen([sys.executable, "-m", "cbir", "index", added, "--db", db], cwd=REPO,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                await asyncio.gather(*(user(i) for i in range(args.clients)))
                still_indexing = indexer.poll() is None
                indexer.wait()
                final = (await client.get("/api/info")).json()["images"]
                return latencies, failures, count, final, still_indexing

        latencies, failures, before, after, still = asyncio.run(run())
    print(f"# {args.clients} clients for {args.seconds} s; index grew from {before} to {after} images while serving "
          f"({'index run still going at the end' if still else 'index run finished during the test'}); "
          f"load {open('/proc/loadavg').read().split()[:3]}")
    print("| request | count | failed | p50 | p95 | p99 | max |")
    print("|---|---|---|---|---|---|---|")
    for kind, values in latencies.items():
        print(f"| {kind} | {len(values)} | {failures[kind]} | {percentile(values, 50):.0f} ms | "
              f"{percentile(values, 95):.0f} ms | {percentile(values, 99):.0f} ms | "
              f"{max(values) * 1000 if values else float('nan'):.0f} ms |")
    if sum(failures.values()):
        raise SystemExit(f"{sum(failures.values())} requests failed")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("latency", "browser", "load"))
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=5, help="searches by example id per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--cache", default="/tmp/cbir-bench-web")
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"), help="the shared data sets")
    args = parser.parse_args()
    {"latency": latency, "browser": browser_latency, "load": load}[args.what](args)


if __name__ == "__main__":
    main()
