"""The ``cbir`` command (also ``python -m cbir``).

The CLI is imported inside :func:`main`, not here: worker processes of ``cbir index`` import the main module
again when they start, and this way they skip importing typer and rich.
"""


import sys


def main():
    try:
        from cbir.cli import main as cli_main  # 0.3 s of imports: Ctrl-C meanwhile is an interruption too
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    return cli_main()


if __name__ == "__main__":
    main()
