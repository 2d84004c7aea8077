"""The ``cbir`` command (also ``python -m cbir``).

The CLI is imported inside :func:`main`, not here: worker processes of ``cbir index`` import the main module
again when they start, and this way they skip importing typer and rich.
"""

import os
import signal


def interrupted_before_the_command(signum, frame):
    """Ctrl-C before a command has started (the CLI's imports, typer parsing): exit with 130 at once, nothing is
    open or written yet; each command puts Python's own handler back first (:func:`cbir.cli.output.reports_errors`).

    Not by raising: an exception raised from a signal handler is lost when the signal lands in a callback of the
    garbage collector or of the import system (its module locks have some), seen during the CLI's imports: Python
    printed "Exception ignored" with a traceback and the command ran on."""
    os.write(2, b"Interrupted.\n")
    os._exit(130)


def main():
    signal.signal(signal.SIGINT, interrupted_before_the_command)  # before the 0.3 s of the CLI's imports
    from cbir.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    main()
