"""``cbir check``: check an index database without changing it."""

from pathlib import Path
from typing import Annotated

import typer

from .options import DbOption, JsonOption
from .output import advice, one_line, print_json, reports_errors, stdout


@reports_errors
def check_command(
    db: DbOption = Path("cbir.db"),
    no_files: Annotated[bool, typer.Option("--no-files", help="Do not look for the indexed files on disk.")] = False,
    json_output: JsonOption = False,
):
    """Check an index database: SQLite integrity, codebook and settings, histogram rows and BLOBs, files on disk.

    Read only. Exit codes: 0 consistent; 1 problems found, or the database is missing or unusable.
    """
    from ..index import Index

    report = Index.check(db, files=not no_files)
    if json_output:
        print_json(report.to_dict())
    else:
        for finding in report.findings:
            hint = advice(finding.remedy, db)
            stdout.print(f"{'ok' if finding.ok else 'PROBLEM'}: {finding.name}: {one_line(finding.detail)}"
                         + (f"; {hint}" if hint else ""), markup=False)
            for item in finding.items:
                stdout.print(f"  {one_line(str(item))}", markup=False)
        for warning in report.warnings:
            stdout.print(f"warning: {one_line(warning)}", markup=False)
        stdout.print("consistent" if report.ok else f"problems found in {one_line(str(db))}", markup=False)
    if not report.ok:
        raise typer.Exit(1)
