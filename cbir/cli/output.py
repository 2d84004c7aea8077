"""How the CLI speaks: the consoles, errors with command-line advice, JSON, paths and names shown safely.

Library errors (:class:`cbir.CbirError`) become ``Error: ...`` on stderr with exit code 1; when an error names a
:class:`cbir.Remedy`, the advice is the command line that fixes it. Usage errors stay typer's exit code 2.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console

from ..errors import CbirError, Remedy
from ..files import check_writable
from ..imageio import encode_image

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)  # a message or path is never wrapped or cut

EXIT_FAILED_FILES = 3
EXIT_INTERRUPTED = 130

# The command line that fixes each remedy; {db} is the database of the command that failed.
ADVICE = {
    Remedy.CREATE: "create one with: cbir index PHOTOS_DIR --db {db}",
    Remedy.ADD: "index some photos first with: cbir index PHOTOS_DIR --db {db}",
    Remedy.REBUILD: "rebuild it with: cbir index PHOTOS_DIR --db {db} --rebuild",
    Remedy.REBUILD_IF_DAMAGED: "if the database is damaged, rebuild it with: cbir index PHOTOS_DIR --db {db} "
                               "--rebuild",
    Remedy.REBUILD_FOR_SETTINGS: "add --rebuild to recompute every histogram with the new settings",
    Remedy.ONE_WORKER: "run the same command again, with --workers 1 to find a file that crashes it",
    Remedy.DATABASE_FILE: "pass the database file with --db",
    Remedy.CHECK: "run: cbir check --db {db}",
    Remedy.RUN_AGAIN: "run the same command again to complete it",
    Remedy.INSTALL_CLUSTER: "install it with: pip install 'cbir[cluster]'",
    Remedy.SHIP_BYTES: "or send the files' bytes with --ship-bytes",
    Remedy.REINDEX: "forget the missing ones with: cbir prune --db {db}; index their folders again to update the "
                    "others",
    Remedy.PRUNE: "forget them first with: cbir prune --db {db} (or cbir remove PATH...), or index their folders too",
    Remedy.GIVE_COLOUR: "e.g. --color '#1e90ff:40'",
    Remedy.FREE_SPACE: "free some disk space, then run the same command again",
    Remedy.WRITABLE_COPY: "index into a copy of it in a folder you may write to",
}


def advice(remedy: Remedy | None, db: Any = None) -> str | None:
    """The command-line advice for ``remedy`` (None when there is none)."""
    if remedy is None:
        return None
    return ADVICE[remedy].format(db=shlex.quote(os.fspath(db)) if db is not None else "DATABASE")


def message(error: CbirError, db: Any = None) -> str:
    """What to print for a library error: its problem and the command-line advice, or its own text."""
    hint = advice(error.remedy, db)
    return f"{error.problem}; {hint}" if hint else str(error)


def fail(text: str) -> None:
    """Print ``Error: text`` on stderr (on one line, names escaped: see :func:`one_line`) and exit with code 1."""
    stderr.print(f"Error: {one_line(text)}", markup=False, soft_wrap=True)
    raise typer.Exit(1)


def reports_errors(command: Callable) -> Callable:
    """Turn library errors raised by a command into ``Error: ...`` with exit code 1, and Ctrl-C into 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            # From here on Ctrl-C is KeyboardInterrupt. Inside the try: one that lands just after the handler is put
            # back, before the command runs, is an interruption like any other (it was a traceback).
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                os.getcwd()
            except FileNotFoundError:  # every relative path (the default database too) would fail with a traceback
                fail("the current folder no longer exists (it was deleted or moved); cd to a folder that exists")
            return command(*args, **kwargs)
        except CbirError as error:
            fail(message(error, kwargs.get("db")))
        except KeyboardInterrupt:
            stderr.print("Interrupted: nothing half-written is kept.", markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def print_json(document: Any) -> None:
    """One JSON document on one line of stdout, valid UTF-8 whatever the file names (see :func:`decodable`)."""
    sys.stdout.write(json.dumps(_decodable_strings(document), ensure_ascii=False) + "\n")


def _decodable_strings(value):
    if isinstance(value, str):
        return decodable(value)
    if isinstance(value, dict):
        return {_decodable_strings(k): _decodable_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decodable_strings(v) for v in value]
    return value


def relative_path(path: str) -> str:
    """A path as the user would type it: relative to the working directory when inside it (for JSON; see
    :func:`show_path` for a terminal)."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def show_path(path: str) -> str:
    """:func:`relative_path`, safe to print on a terminal (:func:`one_line`)."""
    return one_line(relative_path(path))


def decodable(text: str) -> str:
    """Text that encodes as UTF-8: the bytes of a file name that are not UTF-8 (kept by Python as lone
    surrogates) written as ``\\xNN``, as the index keeps such names."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") \
            if all(not "\ud800" <= c <= "\udc7f" and not "\udd00" <= c <= "\udfff" for c in text) \
            else text.encode("utf-8", "backslashreplace").decode("utf-8")


def one_line(text: str) -> str:
    """Text safe to show on a terminal: control characters (a newline, the escape sequences a hostile file name
    holds) escaped, so one report stays one line and nothing reaches the terminal as a command; bytes that are
    not UTF-8 as ``\\xNN`` (:func:`decodable`)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in decodable(text))


def check_writable_image_path(path: Path | None) -> None:
    """Refuse, before any work is done, an image output path whose folder is missing or not writable, or whose
    format cannot be written."""
    if path is not None:
        check_writable(path)
        encode_image(np.zeros((1, 1, 3), np.uint8), path.suffix.lower() or ".png")


# --- rows on stdout in the format asked for (``--format``, defined once in options.py) ---------------------------
FORMATS = ("table", "tsv", "csv", "json", "paths")


def chosen_format(format_name: str | None, json_flag: bool = False) -> str:
    """The output format of a command: ``--format``, or ``json`` for ``--json``; else a table on a terminal and
    tab-separated text when stdout is a pipe or a file (what a script reads)."""
    if json_flag and format_name not in (None, "json"):
        raise typer.BadParameter(f"--json and --format {format_name} disagree; give one of them", param_hint="--json")
    if json_flag:
        return "json"
    if format_name is not None:
        return format_name
    return "table" if stdout.is_terminal else "tsv"


def _tsv_field(value: Any) -> str:
    """One TSV field: backslash, tab, newline and carriage return escaped (as PostgreSQL's and sqlite-utils' text
    formats do), so every record stays on one line and splits on tabs."""
    return (str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r"))


def write_rows(format_name: str, columns: list[str], rows: list[list[Any]], *, title: str | None = None,
               path_column: str = "path", header: bool = True) -> None:
    """Print rows on stdout as ``table`` (a terminal table whose paths wrap instead of being cut), ``tsv`` or
    ``csv`` (a header line, then one line per row), or ``paths`` (the ``path_column`` alone, one per line: for
    xargs, feh, cp). ``json`` is each command's own document (see :func:`print_json`). ``header``: False when a
    second block of rows continues the same output."""
    if format_name == "table":
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(title) if title else None, title_justify="left")  # Text: never read as markup
        for name in columns:
            # A path is the result: it folds onto more lines in a narrow terminal, never cut to "folder/anot…".
            table.add_column(name, overflow="fold" if name == path_column else "ellipsis",
                             no_wrap=name != path_column)
        for row in rows:
            table.add_row(*(Text(one_line(str(v))) for v in row))
        stdout.print(table, markup=False)
    elif format_name == "tsv":
        lines = ([columns] if header else []) + rows
        sys.stdout.write("".join("\t".join(_tsv_field(decodable(str(v))) for v in line) + "\n" for line in lines))
    elif format_name == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        if header:
            writer.writerow(columns)
        writer.writerows([[decodable(str(v)) for v in row] for row in rows])
    elif format_name == "paths":
        where = columns.index(path_column)
        sys.stdout.write("".join(one_line(str(row[where])) + "\n" for row in rows))
    else:
        raise ValueError(f"write_rows does not write {format_name!r}")
