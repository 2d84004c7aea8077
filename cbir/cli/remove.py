"""``cbir remove``: forget indexed files or folders, on disk or not."""

from pathlib import Path
from typing import Annotated

import typer

from .options import DbOption, JsonOption
from .output import one_line, print_json, reports_errors, show_path, stdout

DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Only list what would be forgotten.")]


@reports_errors
def remove_command(
    paths: Annotated[list[Path], typer.Argument(
        metavar="PATH", help="Indexed files, or folders whose indexed files are all forgotten; they need not "
                                "exist any more.", show_default=False)],
    db: DbOption = Path("cbir.db"),
    dry_run: DryRunOption = False,
    json_output: JsonOption = False,
):
    """Forget indexed files or folders (a deleted photo, a renamed folder, an unplugged drive); the files
    themselves are not touched. A path the index holds nothing at is an error, and nothing is forgotten."""
    from ..index import Index

    with Index.open(db) as index:
        show_removal(index.remove(paths, dry_run=dry_run), db, json_output)


def show_removal(report, db, json_output):
    """What remove or prune forgot (or would): JSON, or one line per image on stdout and a summary."""
    if json_output:
        print_json({"database": str(db), "dry_run": report.dry_run, "images": len(report.images),
                    "failures": len(report.failures), "paths": [show_path(p) for p in report.images],
                    "failure_paths": [show_path(p) for p in report.failures]})
        return
    verb = "would forget" if report.dry_run else "forgot"
    for path in report.images:
        stdout.print(f"{verb}: {one_line(show_path(path))}", markup=False)
    stdout.print(report.summary(), markup=False)
