"""``cbir index``: index image files (incremental)."""

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import (CodebookSizeOption, CodebookSpaceOption, DbOption, JsonOption, KernelOption, LayoutOption,
                      MinSideOption, PowerOption, QuietOption, SampleOption, SigmaOption)
from .output import EXIT_FAILED_FILES, EXIT_INTERRUPTED, one_line, print_json, reports_errors, show_path, stderr, stdout
from .progress import ProgressBar


def _check_cluster(value):
    if value is not None and value.startswith("local:"):
        n = value.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise typer.BadParameter(f"local:N takes a number of worker processes (1 or more), got {value!r}")
    return value


@reports_errors
def index_command(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="Folders (searched recursively) or image files.",
                                                show_default=False)],
    db: DbOption = Path("cbir.db"),
    colors: CodebookSizeOption = None,
    layout: LayoutOption = None,
    space: CodebookSpaceOption = None,
    min_side: MinSideOption = None,
    sample: SampleOption = None,
    kernel: KernelOption = None,
    sigma: SigmaOption = None,
    power: PowerOption = None,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Relearn the codebook from every indexed image and those under the PATHs, and recompute every "
                          "histogram, wherever its file is.")] = False,
    exclude: Annotated[Optional[list[str]], typer.Option(
        "--exclude", metavar="GLOB", help="Leave out files and folders whose name, or path under a folder given, "
                                          "matches this pattern, e.g. --exclude Screenshots --exclude '*.tmp.jpg'; "
                                          "repeatable.", show_default=False)] = None,
    include_hidden: Annotated[bool, typer.Option(
        "--include-hidden", help="Also index hidden files and folders (names starting with '.') and system folders "
                                 "(Synology @eaDir, #recycle, $RECYCLE.BIN...), skipped by default.")] = False,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", metavar="N", min=1, help="Processes decoding images (default: one per CPU core).")] = None,
    cluster: Annotated[Optional[str], typer.Option(
        "--cluster", metavar="ADDRESS|local:N", callback=_check_cluster,
        help="Read and decode images on a Dask cluster instead: its scheduler (tcp://host:8786), or local:N for N "
             "worker processes here. The database is the same. Needs: pip install 'cbir[cluster]'.")] = None,
    ship_bytes: Annotated[bool, typer.Option(
        "--ship-bytes", help="With --cluster: read the files here and send their bytes to the workers (for workers "
                             "that cannot see the files).")] = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
):
    """Index image files: learn the colour codebook, store one histogram per image (incremental).

    Exit codes: 0 every file indexed; 1 error (the message says what was kept: the batches written before it; a
    --rebuild that stops leaves the index as it was; a cluster lost mid-run keeps the finished batches); 2 usage
    error; 3 finished, but some files could not be indexed (listed on stderr and kept in the database's failures
    table); 130 interrupted (finished batches are kept; run again to complete).
    """
    from ..index import default_workers, start_server

    if cluster and workers:
        raise typer.BadParameter("--workers and --cluster exclude each other (the cluster's workers do the work)",
                                 param_hint="--workers")
    if ship_bytes and not cluster:
        raise typer.BadParameter("--ship-bytes goes with --cluster", param_hint="--ship-bytes")
    workers = 1 if cluster else workers or default_workers()
    if workers > 1:
        start_server()  # before this process imports the index and learns the codebook: it boots meanwhile
    elif cluster and cluster.startswith("local:"):
        start_server(preload=("distributed",))  # the local cluster forks its workers from it
    from ..index import Index

    overrides = dict(colors=colors, layout=layout, space=space, min_side=min_side, sample=sample, kernel=kernel,
                     sigma=sigma, power=power)
    with Index.open(db, create=True) as index, ProgressBar("indexing", not (quiet or json_output)) as bar:
        report = index.add(paths, settings=overrides, rebuild=rebuild, exclude=exclude or (),
                           include_hidden=include_hidden, progress=bar, workers=workers, cluster=cluster,
                           ship_bytes=ship_bytes, codebook_progress=bar.stage("learning colours"),
                           cache_progress=bar.stage("search cache"))
    show_report(report, db, json_output, quiet)
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if report.failed:
        raise typer.Exit(EXIT_FAILED_FILES)


def show_report(report, db, json_output, quiet=False):
    if json_output:
        print_json({"database": str(db), "added": report.added, "updated": report.updated,
                    "unchanged": report.unchanged, "removed": report.removed, "failed": report.failed,
                    "failures": [{"path": p, "reason": r} for p, r in report.failures],
                    "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
                    "interrupted": report.interrupted, "codebook_learned": report.codebook_learned,
                    "old_index_kept": report.old_index_kept,
                    "codebook_images": report.codebook_images,
                    "codebook_outgrown": report.codebook_outgrown and
                    {"learned_from": report.codebook_outgrown[0], "images": report.codebook_outgrown[1]},
                    "seconds": round(report.seconds, 3)})
        return
    for path, reason in report.failures:
        stderr.print(f"failed: {show_path(path)}: {one_line(reason)}", markup=False)
    for path, reason in report.skipped:
        stderr.print(f"skipped: {show_path(path)}: {one_line(reason)}", markup=False)
    if report.interrupted and report.old_index_kept:
        stderr.print("Interrupted: the rebuild stopped; the index is as it was before it. Run the same command again "
                     "to rebuild.", markup=False)
    elif report.interrupted:
        stderr.print("Interrupted: finished images are kept; run the same command again to complete.", markup=False)
    if report.codebook_outgrown:
        learned, images = report.codebook_outgrown
        stderr.print(f"warning: the codebook was learned from {learned} images and the index now holds {images}; "
                     f"relearn it from all of them with: cbir index PHOTOS_DIR --db {shlex.quote(str(db))} "
                     "--rebuild", markup=False)
    stdout.print(report.summary(), markup=False)
