"""cbir: content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance.

``Index``, ``Result`` and ``IndexReport`` are imported on first use (PEP 562): a worker process of an index run
imports ``cbir.indexer`` and needs numpy and OpenCV, not SQLite, sqlite-utils and the search (a third of its
start-up time).
"""

import importlib

from .decode import read_image, write_image
from .errors import BusyError, CbirError, DatabaseError, DecodeError
from .quantize import Quantization, mean_delta_e, quantize, rgb_mse
from .settings import Settings

__version__ = "0.1.0"

_LAZY = {"Index": "index", "Result": "index", "IndexReport": "indexer"}

__all__ = [
    "BusyError",
    "CbirError",
    "DatabaseError",
    "DecodeError",
    "Index",
    "IndexReport",
    "Result",
    "Settings",
    "Quantization",
    "mean_delta_e",
    "quantize",
    "read_image",
    "rgb_mse",
    "write_image",
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'cbir' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])
