"""The application behind :class:`cbir.Index`: adding photos, the loaded engine, the search cache, checks.

Names are handed on lazily (PEP 562): a worker process of an index run imports ``cbir.index.run`` and needs
numpy and OpenCV, not SQLite and the search.
"""

import importlib

_NAMES = {"Index": "api", "Result": "api", "Failure": "api", "ImageInfo": "api", "Folder": "api",
          "Explanation": "api", "ColourMatch": "api", "IndexReport": "run", "RemovalReport": "forget", "Tuning": "tuning",
          "CheckReport": "check", "Finding": "check",
          "DuplicateReport": "duplicates", "DuplicateGroup": "duplicates", "DuplicateMember": "duplicates",
          "DuplicatePair": "duplicates",
          # standard library only: a face starts the worker server with them before it imports the index
          "default_workers": "workers", "start_server": "workers"}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'cbir.index' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_NAMES])
