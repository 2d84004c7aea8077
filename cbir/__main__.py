"""The ``cbir`` command (also ``python -m cbir``).

The CLI is imported inside :func:`main`, not here: worker processes of ``cbir index`` import the main module
again when they start, and this way they skip importing typer and rich.
"""


def main():
    from cbir.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    main()
