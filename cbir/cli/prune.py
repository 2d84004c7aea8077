"""``cbir prune``: forget every indexed file that is gone from disk."""

from pathlib import Path

from .options import DbOption, JsonOption
from .output import reports_errors
from .remove import DryRunOption, show_removal


@reports_errors
def prune_command(
    db: DbOption = Path("cbir.db"),
    dry_run: DryRunOption = False,
    json_output: JsonOption = False,
):
    """Forget every indexed file that is missing on disk (moved, renamed or deleted). Files on a drive or share
    that is not mounted look missing too: try --dry-run first."""
    from ..index import Index

    with Index.open(db) as index:
        show_removal(index.prune(dry_run=dry_run), db, json_output)
