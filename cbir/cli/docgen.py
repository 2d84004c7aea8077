"""Write the CLI reference ``docs/cli.md`` from the commands' ``--help``: ``python -m cbir.cli.docgen``.

``python -m cbir.cli.docgen --check`` exits with 1 when the file on disk differs (tests/test_cli_reference.py runs the
same comparison). The help is rendered at a fixed width, so the file does not depend on the terminal; its layout
does depend on typer's version, which the file records.
"""

import contextlib
import io
import re
import sys
from pathlib import Path

WIDTH = 100
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
REGENERATE = "python -m cbir.cli.docgen"


def help_text(*args):
    """The ``--help`` output of ``cbir ARGS...``: str."""
    from .app import app

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        app([*args, "--help"], prog_name="cbir", standalone_mode=False, terminal_width=WIDTH,
            max_content_width=WIDTH)
    return buffer.getvalue().rstrip() + "\n"


def commands():
    """Names of the commands of ``cbir``, in the order they are listed: list of str."""
    from .app import app

    return [command.name or command.callback.__name__ for command in app.registered_commands]


def typer_version():
    """The version of typer that renders the help (it shapes the layout)."""
    from importlib.metadata import version

    return version("typer")


def recorded_typer_version(text):
    """The typer version a reference text says it was generated with, or None."""
    match = re.search(r"with typer ([0-9][^ ;]*);", text)
    return match.group(1) if match else None


def reference():
    """The Markdown text of the CLI reference: str."""
    parts = ["# CLI reference\n",
             f"Generated from `cbir --help` and `cbir COMMAND --help` by `{REGENERATE}` with typer {typer_version()}; "
             "do not edit by hand.\n",
             "Every command prints `Error: ...` on stderr and exits with 1 when its input is unusable; usage errors "
             "exit with 2. `--json` prints JSON on stdout and nothing else.\n",
             "## cbir\n", "```text\n" + help_text() + "```\n"]
    for name in commands():
        parts += [f"## cbir {name}\n", "```text\n" + help_text(name) + "```\n"]
    return "\n".join(parts)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = reference()
    if "--check" in argv:
        if not REFERENCE.exists() or REFERENCE.read_text(encoding="utf-8") != text:
            print(f"{REFERENCE} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
