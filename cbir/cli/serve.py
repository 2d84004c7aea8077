"""``cbir serve``: the web app over an index, on this machine."""

from pathlib import Path
from typing import Annotated

import typer

from .options import DbOption
from .output import fail, reports_errors, stderr


@reports_errors
def serve_command(
    db: DbOption = Path("cbir.db"),
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on. The default is reachable from this machine only; give another "
                       "explicitly to be reachable from others (0.0.0.0: every address).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 takes a free one.")] = 0,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the app in a web browser.")] = False,
    max_upload_mb: Annotated[float, typer.Option(
        "--max-upload-mb", min=0.01, help="Largest image a search by example may upload, in megabytes.")] = 32,
    max_upload_pixels: Annotated[int, typer.Option(
        "--max-upload-pixels", min=1, help="Largest image a search by example may upload, in pixels.")] = 50_000_000,
):
    """Browse and search an index in a web browser: prints the app's address and serves until Ctrl-C. It only
    reads the index, and sees what a `cbir index` running meanwhile adds."""
    try:
        from ..web import create_app, serve
        from ..web.server import allowed_hosts, listening_socket
    except ImportError as error:
        fail(f"cbir serve needs the web extra ({error.name} is not installed): pip install 'cbir[web]'")
    app = create_app(db, hosts=allowed_hosts(host), max_upload_bytes=int(max_upload_mb * 1_000_000),
                     max_upload_pixels=max_upload_pixels)
    try:
        sock = listening_socket(host, port)
    except OSError as error:
        fail(f"cannot listen on {host}:{port} ({error.strerror or error})")
    stderr.print(f"loading {app.state.pages.warm():,} images", markup=False)
    serve(app, sock, open_browser=open_browser, announce=lambda url: print(url, flush=True))
