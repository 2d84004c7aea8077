"""docs/cli.md is generated from the commands' --help: it must match, and every command must have help text."""

import pytest

from cbir.cli import docgen


def test_cli_reference_is_up_to_date():
    expected = docgen.reference()
    actual = docgen.REFERENCE.read_text(encoding="utf-8") if docgen.REFERENCE.exists() else ""
    recorded = docgen.recorded_typer_version(actual)
    if recorded is not None and recorded != docgen.typer_version():
        pytest.skip(f"docs/cli.md was made with typer {recorded}; this is typer {docgen.typer_version()}, whose help "
                    "layout differs (the lowest-versions run)")
    if actual != expected:
        pytest.fail(f"{docgen.REFERENCE} does not match the commands' --help; regenerate it with: "
                    f"{docgen.REGENERATE}")


def test_every_command_has_help_text_and_is_in_the_reference():
    from cbir.cli import app

    reference = docgen.REFERENCE.read_text(encoding="utf-8")
    names = docgen.commands()
    assert {"quantize", "index", "query", "info"} <= set(names)
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert (command.help or command.callback.__doc__ or "").strip(), f"cbir {name} has no help text"
        assert f"## cbir {name}\n" in reference, f"cbir {name} is missing from docs/cli.md; run {docgen.REGENERATE}"
        assert f"Usage: cbir {name} " in docgen.help_text(name)


def test_every_option_and_argument_has_help_text():
    import click
    import typer.main

    from cbir.cli import app

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name == "help":
                continue
            assert (getattr(param, "help", None) or "").strip(), f"cbir {name}: {param.name} has no help text"
