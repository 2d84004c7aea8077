"""``cbir index``: index image files (incremental)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DbOption, JsonOption, KernelOption, PowerOption, QuietOption, SigmaOption
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
        report = index.add(paths, settings=overrides, rebuild=rebuild, progress=bar, workers=workers, cluster=cluster,
                           ship_bytes=ship_bytes,
                           cache_progress=bar.stage("search cache"))
    show_report(report, db, json_output)
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if report.failed:
        raise typer.Exit(EXIT_FAILED_FILES)


def show_report(report, db, json_output):
    if json_output:
        print_json({"database": str(db), "added": report.added, "updated": report.updated,
                    "unchanged": report.unchanged, "removed": report.removed, "failed": report.failed,
                    "failures": [{"path": p, "reason": r} for p, r in report.failures],
                    "interrupted": report.interrupted, "codebook_learned": report.codebook_learned,
                    "old_index_kept": report.old_index_kept,
                    "seconds": round(report.seconds, 3)})
        return
    for path, reason in report.failures:
        stderr.print(f"failed: {show_path(path)}: {one_line(reason)}", markup=False, soft_wrap=True)
    if report.interrupted and report.old_index_kept:
        stderr.print("Interrupted: the rebuild stopped; the index is as it was before it. Run the same command again "
                     "to rebuild.", markup=False)
    elif report.interrupted:
        stderr.print("Interrupted: finished images are kept; run the same command again to complete.", markup=False)
    stdout.print(report.summary(), markup=False)
