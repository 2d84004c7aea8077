"""The ``cbir`` command line: thin wrappers that parse, call one library function and render.

The only module that imports typer or rich. Library errors (CbirError) become ``Error: ...`` on stderr with exit
code 1; usage errors stay typer's exit code 2. ``--json`` prints exactly one JSON document on stdout.
"""

import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .decode import encode_image, read_image, write_image
from .errors import CbirError
from .quantize import mean_delta_e, quantize, rgb_mse
from .render import comparison_sheet, palette_swatch

app = typer.Typer(
    help="Content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)

# Options shared by several commands, defined once.
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
SpaceOption = Annotated[str, typer.Option("--space", help="Colour space of the k-means: lab (CIELAB) or rgb.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the k-means++ initialisation.")]
DbOption = Annotated[
    Path, typer.Option("--db", envvar="CBIR_DB", help="Index database file (default ./cbir.db, or $CBIR_DB).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or hints on stderr.")]
KernelOption = Annotated[
    Optional[str], typer.Option("--kernel", help="Similarity kernel of A: qbic (1 - d/dmax) or gaussian.")
]
SigmaOption = Annotated[Optional[float], typer.Option("--sigma", help="Width of the gaussian kernel.")]
PowerOption = Annotated[
    Optional[float], typer.Option("--power", help="Raise shares to this power before comparing (0 < p <= 1).")
]

EXIT_FAILED_FILES = 3
EXIT_INTERRUPTED = 130


def fail(message):
    """Print ``Error: message`` on stderr and exit with code 1."""
    stderr.print(f"Error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(1)


def reports_errors(command):
    """Turn library errors raised by a command into ``Error: ...`` with exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CbirError as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted")

    return wrapper


def parse_sweep(value):
    if value is None:
        return []
    try:
        ks = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 5,8,25") from None
    if not ks or min(ks) < 1:
        raise typer.BadParameter("every k must be a positive integer, e.g. 5,8,25")
    return ks


def check_writable_image_path(path):
    """Refuse an output path whose format cannot be written before any work is done."""
    if path is not None:
        encode_image(__import__("numpy").zeros((1, 1, 3), "uint8"), path.suffix.lower() or ".png")


def print_json(document):
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False,
):
    if version:
        stdout.print(f"cbir {__version__}")
        raise typer.Exit()


@app.command("quantize")
@reports_errors
def quantize_command(
    image: Annotated[Path, typer.Argument(help="Image file to posterize.", show_default=False)],
    k: Annotated[
        Optional[list[int]],
        typer.Option("-k", "--colors", min=1, help="Number of colours; repeat for several (default 8)."),
    ] = None,
    sweep: Annotated[
        Optional[str], typer.Option("--sweep", help="Comma-separated list of k, e.g. 5,8,25,35,45.")
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("-o", "--output", help="Write the posterized image; with several k, a comparison sheet."),
    ] = None,
    palette: Annotated[
        Optional[Path], typer.Option("--palette", help="Write the palette as a swatch, colours sized by share.")
    ] = None,
    space: SpaceOption = "lab",
    seed: SeedOption = 0,
    json_output: JsonOption = False,
):
    """Posterize an image to k colours by k-means colour quantization."""
    ks = list(dict.fromkeys((k or []) + parse_sweep(sweep))) or [8]
    if space not in ("lab", "rgb"):
        raise typer.BadParameter("choose lab or rgb", param_hint="--space")
    check_writable_image_path(output)
    check_writable_image_path(palette)
    original = read_image(image)
    results = []
    for n_colours in ks:
        start = time.perf_counter()
        q = quantize(original, n_colours, space=space, seed=seed)
        results.append((n_colours, q, time.perf_counter() - start))

    errors = {n: (rgb_mse(original, q.image), mean_delta_e(original, q.image)) for n, q, _ in results}
    if output is not None:
        if len(results) == 1:
            write_image(output, results[0][1].image)
        else:
            captions = [([f"k={n}  MSE {errors[n][0]:.1f}", f"mean dE {errors[n][1]:.2f}"], q.image)
                        for n, q, _ in results]
            write_image(output, comparison_sheet(original, captions))
    if palette is not None:
        import numpy as np

        write_image(palette, np.vstack([palette_swatch(q.palette_rgb, q.shares) for _, q, _ in results]))

    if json_output:
        print_json({
            "image": str(image),
            "width": original.shape[1],
            "height": original.shape[0],
            "space": space,
            "seed": seed,
            "results": [
                {
                    "k": n,
                    "colors": len(q.shares),
                    "palette": [{"hex": "#%02x%02x%02x" % tuple(int(v) for v in c), "share": round(float(s), 6)}
                                for c, s in zip(q.palette_rgb, q.shares)],
                    "rgb_mse": round(errors[n][0], 4),
                    "mean_delta_e": round(errors[n][1], 4),
                    "seconds": round(seconds, 4),
                }
                for n, q, seconds in results
            ],
        })
        return
    table = Table("k", "colours", "RGB MSE", "mean ΔE", "time")
    for n, q, seconds in results:
        table.add_row(str(n), str(len(q.shares)), f"{errors[n][0]:.1f}", f"{errors[n][1]:.2f}",
                      f"{seconds * 1000:.0f} ms")
    stdout.print(table)
    for path in (output, palette):
        if path is not None:
            stderr.print(f"wrote {path}", markup=False)


def show_path(path):
    """A path as the user would type it: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


class ProgressBar:
    """A rich progress bar on stderr, or nothing when stderr is not a terminal or output must stay quiet."""

    def __init__(self, label, enabled):
        self.label, self.enabled, self.bar, self.task = label, enabled and stderr.is_terminal, None, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TimeRemainingColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                TaskProgressColumn(), TimeRemainingColumn(), console=stderr,
                                transient=True)
            self.bar.__enter__()
        return self

    def __call__(self, done, total):
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task(self.label, total=total)
            self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


@app.command("index")
@reports_errors
def index_command(
    paths: Annotated[list[Path], typer.Argument(help="Folders (searched recursively) or image files.",
                                                show_default=False)],
    db: DbOption = Path("cbir.db"),
    colors: Annotated[Optional[int], typer.Option("--colors", min=2, max=1024,
                                                  help="Codebook size K (default 64).")] = None,
    layout: Annotated[Optional[str], typer.Option(
        "--layout", help="Spatial layout: global, 2x2, 3x3, center, global+2x2, global+center.")] = None,
    space: Annotated[Optional[str], typer.Option("--space", help="Codebook colour space: lab or rgb.")] = None,
    min_side: Annotated[Optional[int], typer.Option(
        "--min-side", min=0, help="Decode JPEGs reduced while the short side keeps this many pixels (0: full).")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", min=1,
                                                  help="Images sampled to learn the codebook.")] = None,
    kernel: KernelOption = None,
    sigma: SigmaOption = None,
    power: PowerOption = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Relearn the codebook and redo every histogram.")] = False,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, help="Processes decoding images (default: one per CPU core).")] = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
):
    """Index image files: learn the colour codebook, store one histogram per image (incremental).

    Exit codes: 0 every file indexed; 1 error (nothing changed); 2 usage error; 3 finished, but some files could
    not be indexed (listed on stderr and kept in the database's failures table); 130 interrupted (finished
    batches are kept; run again to complete).
    """
    from .index import Index
    from .indexer import default_workers

    overrides = dict(colors=colors, layout=layout, space=space, min_side=min_side, sample=sample, kernel=kernel,
                     sigma=sigma, power=power)
    with Index.open(db, create=True) as index, ProgressBar("indexing", not (quiet or json_output)) as progress:
        report = index.add(paths, settings=overrides, rebuild=rebuild, progress=progress,
                           workers=workers or default_workers())
    if json_output:
        print_json({"database": str(db), "added": report.added, "updated": report.updated,
                    "unchanged": report.unchanged, "removed": report.removed, "failed": report.failed,
                    "failures": [{"path": p, "reason": r} for p, r in report.failures],
                    "interrupted": report.interrupted, "codebook_learned": report.codebook_learned,
                    "seconds": round(report.seconds, 3)})
    else:
        for path, reason in report.failures:
            stderr.print(f"failed: {show_path(path)}: {reason}", markup=False, soft_wrap=True)
        if report.interrupted:
            stderr.print("Interrupted: finished images are kept; run the same command again to complete.",
                         markup=False)
        stdout.print(report.summary(), markup=False)
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if report.failed:
        raise typer.Exit(EXIT_FAILED_FILES)


@app.command("query")
@reports_errors
def query_command(
    images: Annotated[list[Path], typer.Argument(help="Query image files.", show_default=False)],
    db: DbOption = Path("cbir.db"),
    n: Annotated[int, typer.Option("-n", "--top", min=0, help="Results per query; 0 for the full ranking.")] = 10,
    kernel: KernelOption = None,
    sigma: SigmaOption = None,
    power: PowerOption = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object per query per line on stdout and nothing else.")] = False,
):
    """Rank the indexed images by colour similarity to each query image (QBIC quadratic-form distance)."""
    from .index import Index

    ranking = {k: v for k, v in dict(kernel=kernel, sigma=sigma, power=power).items() if v is not None}
    with Index.open(db, ranking=ranking) as index:
        vectors = [index.query_vector(image) for image in images]  # every query is checked before any output
        rankings = index.search_vectors(vectors, n)
        for image, results in zip(images, rankings):
            shown = [(r.rank, r.distance, show_path(index.disk_path(r.path))) for r in results]
            if json_output:
                print_json({"query": str(image), "results": [
                    {"rank": rank, "path": path, "distance": round(distance, 6)} for rank, distance, path in shown]})
                continue
            table = Table("rank", "distance", "path", title=f"query: {image}", title_justify="left")
            for rank, distance, path in shown:
                table.add_row(str(rank), f"{distance:.4f}", path)
            stdout.print(table)


@app.command("info")
@reports_errors
def info_command(db: DbOption = Path("cbir.db"), json_output: JsonOption = False):
    """Show what an index database holds: images, failures, codebook and its settings, size."""
    from .index import Index

    with Index.open(db) as index:
        info = index.info()
        failures = list(index.store.known_failures().values())
    if json_output:
        info["failure_list"] = [{"path": f["path"], "reason": f["reason"]} for f in failures]
        print_json(info)
        return
    stdout.print(f"database: {info['database']} ({info['bytes'] / 1e6:.1f} MB, schema {info['schema_version']})",
                 markup=False)
    stdout.print(f"images: {info['images']} indexed, {info['failures']} failed", markup=False)
    for failure in failures:
        stdout.print(f"  failed: {failure['path']}: {failure['reason']}", markup=False)
    stdout.print(f"codebook: {info['codebook'] and len(info['codebook'])} colours", markup=False)
    for key, value in (info["settings"] or {}).items():
        stdout.print(f"  {key}: {value}", markup=False)


def main():
    app()
