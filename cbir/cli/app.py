"""The ``cbir`` command line: the typer app and its commands, each a thin face on the library.

The only package that imports typer or rich. Each command (one module each) parses its options, calls one
library function and renders the result; :mod:`cbir.cli.output` turns library errors into ``Error: ...`` with
exit code 1 and the command line that fixes them; usage errors stay typer's exit code 2. ``--json`` prints JSON
on stdout and nothing else.
"""

import signal
from typing import Annotated

import typer

from .. import __version__
from ..__main__ import interrupted_before_the_command
from .check import check_command
from .duplicates import duplicates_command
from .evaluate import evaluate_command
from .help import Command
from .index import index_command
from .info import info_command
from .output import stdout
from .prune import prune_command
from .quantize import quantize_command
from .query import query_command
from .remove import remove_command
from .serve import serve_command

app = typer.Typer(
    help="Content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        stdout.print(f"cbir {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, help="Show the version and exit.")] = False,
):
    """Content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance."""


# In the order `cbir --help` lists them; every command's help names its values plainly (cbir.cli.help).
for name, command in [("quantize", quantize_command), ("index", index_command), ("query", query_command),
                      ("duplicates", duplicates_command), ("remove", remove_command), ("prune", prune_command), ("info", info_command),
                      ("check", check_command), ("evaluate", evaluate_command), ("serve", serve_command)]:
    app.command(name, cls=Command)(command)


def main() -> None:
    """Run the command line. Ctrl-C before a command has started (while typer parses, or the command's module
    imports what it needs) exits with 130 as it does inside a command, without a traceback or "Aborted!"."""
    signal.signal(signal.SIGINT, interrupted_before_the_command)  # a command puts Python's own handler back
    app()
