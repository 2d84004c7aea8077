"""``cbir serve``: a local web app over an index, a face on :class:`cbir.Index` (Starlette on uvicorn).

Imports Starlette, Jinja2 and uvicorn: the ``web`` extra (``pip install 'cbir[web]'``).
"""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
