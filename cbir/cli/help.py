"""Help text that reads like a manual page: values named IMAGE, PATH..., N, FILE rather than typer's ``{image}``,
``<list[Path]>`` and ``<int range>``.

Only what every supported typer gives is used (a parameter's metavar, nargs and help record), not its type
objects, which typer has moved into its own copy of click.
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperCommand

# typer's "<type>" in a help record, and what to call such a value when its option names none.
_TYPE = re.compile(r" <([^>]*)>")
_BY_TYPE = {"int": "N", "int range": "N", "float": "X", "float range": "X", "path": "PATH", "str": "TEXT"}


def _kind(typer_type: str) -> str:
    element = re.fullmatch(r"list\[(.*)\]", typer_type)
    typer_type = element.group(1) if element else typer_type
    if "|" in typer_type:
        return "[" + typer_type + "]"
    return _BY_TYPE.get(typer_type.lower(), typer_type.upper())


def value_name(param: Any, typer_type: str | None = None) -> str:
    """What a parameter's value is called in help: its metavar, else a name for its kind (choices listed)."""
    metavar = getattr(param, "metavar", None)
    if metavar and "<" not in metavar:
        return metavar
    if typer_type is not None:
        return _kind(typer_type)
    return (param.name or "value").upper()


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", None) == "argument"


class Command(TyperCommand):
    """A typer command whose usage line and option list name values plainly."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if _is_argument(param):
                name = value_name(param) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if _is_argument(param):
                arguments.append((value_name(param) + ("..." if param.nargs != 1 else ""),
                                  text.replace("  [required]", "")))
            else:
                named = _TYPE.sub(lambda m: " " + value_name(param, m.group(1)), name)
                options.append((named, text))
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)
