"""Colour queries measured against the pixels: do the requested colours decide the ranking?

For each query and collection, every picture's pixels are compared with the requested colours (CIE76, decoded in
full): its *near share* is the share of its pixels within ΔE 25 of any requested colour (the measure issue 13
names), its *matched share* sum_c min(s_c, share within 25 of c) / sum_c s_c (the fair one for several colours:
by the near share alone, a picture 90% white beats 40% sky blue and 20% white clouds for "#1e90ff:40 white:20").
A ranking's score is the mean share of its top 10 over the mean of the 10 best pictures of the collection by that
share (1.0: as good as possible). Queries whose best 10 pictures have under 2% near share on average are left out:
the collection holds nothing of that colour to find.

Two rankings: ``cbir`` (Index.search_colours: the share of the requested colours missing) and ``rest-as-average``,
the design before it (the rest spread over the collection's average colours, one histogram compared by the
quadratic-form distance), rebuilt here through the public API.

    python tests/benchmarks/bench_colour_queries.py DIR [DIR...] [--cache /tmp/cbir-bench-colour] [--seed S]

Each DIR is indexed once into the cache folder (default settings; ``--seed`` the codebook's) and its pixel
measurements kept there. The index is made once: a cache made by older code is reused as it is.
"""

import argparse
import hashlib
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from cbir import Index, parse_target, read_image  # noqa: E402
from cbir.core.colour import srgb_to_lab  # noqa: E402

RADIUS = 25.0
QUERIES = [  # the five first, then others, then queries without a rest
    ["#1e90ff:40", "white:20"], ["green:60"], ["red:50"], ["white:60"], ["black:70"],
    ["orange:30"], ["yellow:20"], ["skyblue:50"], ["brown:40"], ["gray:50"], ["pink:20"],
    ["forestgreen:40", "skyblue:30"], ["blue:30"], ["lime:20"], ["navy:30", "white:30"], ["tan:50"],
    ["green:100"], ["red:100"], ["white:100"], ["#1e90ff:60", "white:40"],
]


def pixel_shares(paths, targets, cache):
    """``(N, C)``: each picture's share of pixels within RADIUS of each colour of every query (in query order),
    and ``(N, Q)``: within RADIUS of any colour of each query."""
    if os.path.exists(cache):
        saved = np.load(cache)
        return saved["per"], saved["union"]
    labs = np.concatenate([[c.lab for c in q] for q in targets]).astype(np.float32)
    owner = np.concatenate([[j] * len(q) for j, q in enumerate(targets)])
    per = np.zeros((len(paths), len(labs)), np.float32)
    union = np.zeros((len(paths), len(targets)), np.float32)
    for i, path in enumerate(paths):
        lab = srgb_to_lab(read_image(path)).reshape(-1, 1, 3)
        near = ((lab - labs[None]) ** 2).sum(-1) <= RADIUS**2
        per[i] = near.mean(0)
        for j in range(len(targets)):
            union[i, j] = near[:, owner == j].any(1).mean()
    np.savez(cache, per=per, union=union)
    return per, union


def rest_as_average(index, target):
    """The ranking of the design before: the target's shares on the codebook colours its colours are counted as,
    the rest spread over the codebook's collection shares, the same histogram in every block, ranked by the
    quadratic-form distance."""
    _, collection = index.codebook_colours()
    k = len(collection)
    block = np.zeros(k)
    for colour in target:
        block += colour.share * index.histogram(np.array([[colour.rgb]], np.uint8))[:k]
    block += max(0.0, 1 - sum(c.share for c in target)) * collection / collection.sum()
    vector = np.tile(block / block.sum(), index.histogram(np.zeros((1, 1, 3), np.uint8)).size // k)
    return [r.image_id for r in index.search_vectors([vector], 10)[0]]


def score(top_ids, ids, value):
    """Mean value of the top 10 over the mean of the 10 highest values."""
    where = np.searchsorted(ids, top_ids)
    return float(value[where].mean() / np.sort(value)[-10:].mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--cache", default="/tmp/cbir-bench-colour")
    parser.add_argument("--seed", type=int, default=0, help="the codebook's seed (its k-means start)")
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    targets = [parse_target(q) for q in QUERIES]
    for folder in args.folders:
        name = hashlib.sha256(os.path.abspath(folder).encode()).hexdigest()[:12]
        with Index.open(os.path.join(args.cache, f"{name}-seed{args.seed}.db"), create=True) as index:
            if not index.info()["images"]:
                index.add(folder, workers=1, settings={"seed": args.seed})
            ids, paths = index.image_paths()
            per, union = pixel_shares(paths, targets, os.path.join(args.cache, f"{name}-pixels.npz"))
            print(f"\n{folder}: {len(ids)} images (near share / matched share of the top 10, over the best 10's)\n")
            print("| query | best 10 near share | rest-as-average | cbir |\n|---|---|---|---|")
            column, rows = 0, {"rest-as-average": [], "cbir": []}
            for spec, target in zip(QUERIES, targets):
                wanted = np.array([c.share for c in target])
                matched = np.minimum(per[:, column : column + len(target)], wanted).sum(1) / wanted.sum()
                near = union[:, QUERIES.index(spec)]
                column += len(target)
                best = float(np.sort(near)[-10:].mean())
                if best < 0.02:
                    print(f"| {' '.join(spec)} | {best:.3f} | - | - |")
                    continue
                cells = []
                for method, top in (("rest-as-average", rest_as_average(index, target)),
                                    ("cbir", [r.image_id for r in index.search_colours(target, 10)])):
                    pair = (score(top, ids, near), score(top, ids, matched))
                    rows[method].append(pair)
                    cells.append(f"{pair[0]:.2f} / {pair[1]:.2f}")
                print(f"| {' '.join(spec)} | {best:.3f} | {cells[0]} | {cells[1]} |")
            print()
            for method, pairs in rows.items():
                near_scores, matched_scores = zip(*pairs)
                print(f"{method}: over {len(pairs)} queries, near share median {statistics.median(near_scores):.2f} "
                      f"(min {min(near_scores):.2f}), matched share median {statistics.median(matched_scores):.2f} "
                      f"(min {min(matched_scores):.2f})")
    print(f"\nload average: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
