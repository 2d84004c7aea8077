"""The ``cbir`` command line: the typer app and its commands, each a thin face on the library.

The only package that imports typer or rich. Each command (one module each) parses its options, calls one
library function and renders the result; :mod:`cbir.cli.output` turns library errors into ``Error: ...`` with
exit code 1 and the command line that fixes them; usage errors stay typer's exit code 2. ``--json`` prints JSON
on stdout and nothing else.
"""

from typing import Annotated

import typer

from .. import __version__
from .check import check_command
from .duplicates import duplicates_command
from .evaluate import evaluate_command
from .index import index_command
from .info import info_command
from .output import stdout
from .quantize import quantize_command
from .query import query_command

app = typer.Typer(
    help="Content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False,
):
    if version:
        stdout.print(f"cbir {__version__}")
        raise typer.Exit()


# In the order `cbir --help` lists them.
app.command("quantize")(quantize_command)
app.command("index")(index_command)
app.command("query")(query_command)
app.command("duplicates")(duplicates_command)
app.command("info")(info_command)
app.command("check")(check_command)
app.command("evaluate")(evaluate_command)


def main() -> None:
    app()
