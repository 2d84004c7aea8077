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

import numpy as np
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
SigmaOption = Annotated[Optional[float], typer.Option(
    "--sigma", help="Sharpness of the gaussian kernel exp(-sigma (d/dmax)^2): larger means narrower.")]
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
            stderr.print("Interrupted: nothing half-written is kept.", markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None

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
        encode_image(np.zeros((1, 1, 3), np.uint8), path.suffix.lower() or ".png")


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


def one_line(text):
    """Text with control characters (a newline in a file name) escaped, so one report stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ProgressBar:
    """A rich progress bar on stderr, or nothing when stderr is not a terminal or output must stay quiet."""

    def __init__(self, label, enabled):
        self.label, self.enabled, self.bar, self.task = label, enabled and stderr.is_terminal, None, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn,
                                       TimeRemainingColumn)
            from rich.text import Text

            class RateColumn(ProgressColumn):
                def render(self, task):
                    return Text(f"{task.speed:.1f}/s" if task.speed else "", style="progress.data.speed")

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                TaskProgressColumn(), RateColumn(), TimeRemainingColumn(), console=stderr,
                                transient=True)
            self.bar.__enter__()
        return self

    def __call__(self, done, total):
        """Progress of the current stage (the first: the label the bar was made with)."""
        self.stage(self.label)(done, total)

    def stage(self, label):
        """A progress callable(done, total) for one stage of the work: the bar shows ``label`` from its first call
        on (rich allows one live display, so stages take turns in one bar)."""
        def update(done, total):
            if self.bar is not None:
                if self.task is None or self.label != label:
                    if self.task is not None:
                        self.bar.remove_task(self.task)
                    self.label, self.task = label, self.bar.add_task(label, total=total)
                self.bar.update(self.task, completed=done)

        return update

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
                                                  help="Codebook size K (default 128).")] = None,
    layout: Annotated[Optional[str], typer.Option(
        "--layout", help="Spatial layout: global, 2x2, 3x3, center, global+2x2, global+3x3 (default), "
                         "global+center.")] = None,
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
    from .workers import default_workers, start_server

    workers = workers or default_workers()
    if workers > 1:
        start_server()  # before this process imports numpy and OpenCV: the server boots meanwhile, on another core
    from .index import Index

    overrides = dict(colors=colors, layout=layout, space=space, min_side=min_side, sample=sample, kernel=kernel,
                     sigma=sigma, power=power)
    with Index.open(db, create=True) as index, ProgressBar("indexing", not (quiet or json_output)) as bar:
        report = index.add(paths, settings=overrides, rebuild=rebuild, progress=bar, workers=workers,
                           cache_progress=bar.stage("search cache"))
    if json_output:
        print_json({"database": str(db), "added": report.added, "updated": report.updated,
                    "unchanged": report.unchanged, "removed": report.removed, "failed": report.failed,
                    "failures": [{"path": p, "reason": r} for p, r in report.failures],
                    "interrupted": report.interrupted, "codebook_learned": report.codebook_learned,
                    "seconds": round(report.seconds, 3)})
    else:
        for path, reason in report.failures:
            stderr.print(f"failed: {one_line(show_path(path))}: {reason}", markup=False, soft_wrap=True)
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
    images: Annotated[Optional[list[Path]], typer.Argument(
        help="Query image files (none when querying by --color).", show_default=False)] = None,
    color: Annotated[Optional[list[str]], typer.Option(
        "--color", metavar="COLOUR[:PERCENT]",
        help="Query by colour, repeatable: a name (white), hex (#1e90ff), rgb(30,144,255) or lab(50,20,-30), "
             "with its percentage of the picture, e.g. --color '#1e90ff:40' --color white:20. Colours without a "
             "percentage share what is left; if the percentages add up to less than 100, the rest is any colour.",
        show_default=False)] = None,
    db: DbOption = Path("cbir.db"),
    n: Annotated[int, typer.Option("-n", "--top", min=0, help="Results per query; 0 for the full ranking.")] = 10,
    kernel: KernelOption = None,
    sigma: SigmaOption = None,
    power: PowerOption = None,
    html: Annotated[Optional[Path], typer.Option(
        "--html", help="Write the results as one self-contained web page (thumbnails, distances, colour "
                       "make-up).", show_default=False)] = None,
    montage: Annotated[Optional[Path], typer.Option(
        "--montage", help="Write the results as a captioned contact sheet image (.png or .jpg).",
        show_default=False)] = None,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object per query per line on stdout and nothing else.")] = False,
):
    """Rank the indexed images by colour similarity to each query image or colour query (QBIC quadratic-form
    distance)."""
    from .index import Index
    from .pictures import Query
    from .target import describe, parse_target, rest_share

    if not images and not color:
        raise typer.BadParameter("give query image files, or colours with --color", param_hint="IMAGES")
    check_writable_image_path(montage)
    target = parse_target(color) if color else None
    ranking = {k: v for k, v in dict(kernel=kernel, sigma=sigma, power=power).items() if v is not None}
    show_progress = not (quiet or json_output)
    with Index.open(db, ranking=ranking) as index:
        queries = []
        if target is not None:
            from .pictures import colour_query_picture

            label = describe(target)
            queries.append(Query(label, label, colour_query_picture(target, rest_share(target)),
                                 index.colour_vector(target)))
        # Every query is checked before any output.
        with ProgressBar("reading queries", show_progress and len(images or ()) > 1) as progress:
            for done, image in enumerate(images or (), 1):
                queries.append(Query(image.name, str(image), image, index.query_vector(image)))
                progress(done, len(images))
        rankings = index.search_vectors([q.vector for q in queries], n)
        for query, results in zip(queries, rankings):
            shown = [(r.rank, r.distance, show_path(index.disk_path(r.path))) for r in results]
            if json_output:
                document = {"query": query.title}
                if not isinstance(query.source, Path):  # the colour query
                    document["colors"] = [{"color": c.spec, "hex": c.hex, "share": round(c.share, 6)}
                                          for c in target]
                    document["any_color"] = round(rest_share(target), 6)
                print_json({**document, "results": [
                    {"rank": rank, "path": path, "distance": round(distance, 6)} for rank, distance, path in shown]})
                continue
            table = Table("rank", "distance", "path", title=f"query: {query.title}", title_justify="left")
            for rank, distance, path in shown:
                table.add_row(str(rank), f"{distance:.4f}", path)
            stdout.print(table)
        if html is not None or montage is not None:
            write_result_pictures(index, queries, rankings, html, montage, show_progress, quiet or json_output)


def write_result_pictures(index, queries, rankings, html, montage, show_progress, quiet):
    """Write the results page and/or contact sheet of a query run; ``wrote PATH`` hints on stderr."""
    from . import pictures

    with ProgressBar("thumbnails", show_progress) as progress:
        groups = pictures.gather(index, queries, rankings, progress=progress)
    palette = pictures.codebook_rgb(index)
    if html is not None:
        settings = index.engine.settings
        meta = (f"{len(index.engine.ids)} images in {index.store.path}; codebook of {len(palette)} colours "
                f"({settings.space}), layout {settings.layout}, kernel {settings.kernel}, power {settings.power:g}")
        pictures.write_text(html, pictures.page(groups, palette, meta=meta))
    if montage is not None:
        write_image(montage, pictures.montage(groups, palette))
    for path in (html, montage):
        if path is not None and not quiet:
            stderr.print(f"wrote {path}", markup=False)


@app.command("info")
@reports_errors
def info_command(
    db: DbOption = Path("cbir.db"),
    palette: Annotated[Optional[Path], typer.Option(
        "--palette", help="Write the codebook as a swatch image, colours sized by their share of the collection.",
        show_default=False)] = None,
    json_output: JsonOption = False,
):
    """Show what an index database holds: images, failures, codebook and its settings, size."""
    from .index import Index

    check_writable_image_path(palette)
    with Index.open(db) as index:
        info = index.info()
        failures = list(index.store.known_failures().values())
        if palette is not None:
            from .pictures import codebook_swatch

            write_image(palette, codebook_swatch(index.store))
            if not json_output:
                stderr.print(f"wrote {palette}", markup=False)
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
    if info["search_cache_rows"] is not None:
        stdout.print(f"search cache: {info['search_cache_rows']} transformed rows (opening reads them)", markup=False)


@app.command("check")
@reports_errors
def check_command(
    db: DbOption = Path("cbir.db"),
    no_files: Annotated[bool, typer.Option("--no-files", help="Do not look for the indexed files on disk.")] = False,
    json_output: JsonOption = False,
):
    """Check an index database: SQLite integrity, codebook and settings, histogram rows and BLOBs, files on disk.

    Read only. Exit codes: 0 consistent; 1 problems found, or the database is missing or unusable.
    """
    from .check import check_database

    report = check_database(db, files=not no_files)
    if json_output:
        print_json(report.to_dict())
    else:
        for finding in report.findings:
            stdout.print(f"{'ok' if finding.ok else 'PROBLEM'}: {finding.name}: {finding.detail}", markup=False)
            for item in finding.items:
                stdout.print(f"  {one_line(str(item))}", markup=False)
        for warning in report.warnings:
            stdout.print(f"warning: {warning}", markup=False)
        stdout.print("consistent" if report.ok else f"problems found in {db}", markup=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command("evaluate")
@reports_errors
def evaluate_command(
    directory: Annotated[Path, typer.Argument(help="Folder of the labelled images.", show_default=False)],
    labels: Annotated[Path, typer.Option("--labels", help="CSV file with columns path,label (paths relative to "
                                                          "DIRECTORY).", show_default=False)],
    db: Annotated[Optional[Path], typer.Option(
        "--db", help="Index database to use and keep (default: a temporary one).")] = None,
    colors: Annotated[Optional[int], typer.Option("--colors", min=2, max=1024, help="Codebook size K.")] = None,
    layout: Annotated[Optional[str], typer.Option("--layout", help="Spatial layout (see cbir index).")] = None,
    space: Annotated[Optional[str], typer.Option("--space", help="Codebook colour space: lab or rgb.")] = None,
    min_side: Annotated[Optional[int], typer.Option(
        "--min-side", min=0, help="Decode JPEGs reduced while the short side keeps this many pixels.")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", min=1,
                                                  help="Images sampled to learn the codebook.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the codebook k-means.")] = None,
    kernel: KernelOption = None,
    sigma: SigmaOption = None,
    power: PowerOption = None,
    distance: Annotated[Optional[list[str]], typer.Option(
        "--distance", help="qfd (default), l1, chi2, intersection, or all; repeat for several.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="With --db: relearn the codebook, redo every "
                                                            "histogram.")] = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
):
    """Measure retrieval on a labelled folder: every labelled image queries all the others (same label =
    relevant); prints MAP, P@10, P@20, AP per label and timings."""
    from .evaluate import DISTANCES, run_experiment

    distances = list(dict.fromkeys(d for name in (distance or ["qfd"])
                                   for d in (DISTANCES if name == "all" else [name])))
    unknown = [d for d in distances if d not in DISTANCES]
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)}: choose from {', '.join(DISTANCES)} or all",
                                 param_hint="--distance")
    settings = dict(colors=colors, layout=layout, space=space, min_side=min_side, sample=sample, seed=seed,
                    kernel=kernel, sigma=sigma, power=power)
    with ProgressBar("indexing", not (quiet or json_output)) as bar:
        report = run_experiment(directory, labels, db=db, settings=settings, distances=distances, rebuild=rebuild,
                                index_progress=bar.stage("indexing"), query_progress=bar.stage("querying"))
    if json_output:
        print_json(report)
        return
    for failure in report["failed"]:
        stderr.print(f"failed: {show_path(failure['path'])}: {failure['reason']}", markup=False, soft_wrap=True)
    results = report["results"]
    stdout.print(f"{report['images']} labelled images, {report['labels']} labels; indexed {report['indexed']}"
                 + (f" in {report['index_seconds'] * 1000:.1f} ms per image" if report["index_seconds"] else ""),
                 markup=False)
    stdout.print("settings: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in report["settings"].items()), markup=False)
    table = Table("distance", "MAP", "P@10", "P@20", "query time")
    for r in results:
        table.add_row(r["distance"], f"{r['map']:.4f}", f"{r['p@10']:.4f}", f"{r['p@20']:.4f}",
                      f"{r['query_seconds'] * 1000:.2f} ms")
    stdout.print(table)
    per_label = Table("label", *[f"AP {r['distance']}" for r in results], title="AP per label",
                      title_justify="left")
    for label in results[0]["ap_per_label"]:
        per_label.add_row(label, *[f"{r['ap_per_label'][label]:.4f}" for r in results])
    stdout.print(per_label)


def main():
    app()
