"""cbir: content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance.

``Index`` is the door to an index database; the numeric core (:mod:`cbir.core`) and image file input and output
(:mod:`cbir.imageio`) are usable on their own. Every name but the errors is imported on first use (PEP 562):
a worker process of an index run needs numpy and OpenCV, not SQLite, sqlite-utils and the search, and ``cbir`` on
the command line starts handling Ctrl-C after milliseconds, not after the 0.15 s of importing OpenCV.
"""

import importlib

from . import limits  # noqa: F401 - first: it sets OpenCV's pixel limit before anything imports cv2
from .errors import (
    BusyError,
    CbirError,
    ColourError,
    DatabaseError,
    DecodeError,
    EvaluationError,
    Remedy,
    SettingsError,
    WriteError,
)

__version__ = "0.1.0"

_LAZY = {"Index": "index", "Result": "index", "Failure": "index", "IndexReport": "index", "Tuning": "index",
         "CheckReport": "index", "TargetColour": "core.colour_query", "parse_colour": "core.colour_query",
         "parse_target": "core.colour_query", "Quantization": "core.quantize", "mean_delta_e": "core.quantize",
         "quantize": "core.quantize", "rgb_mse": "core.quantize", "read_image": "imageio", "write_image": "imageio",
         "write_palette_image": "imageio",
         "Settings": "settings", "DuplicateReport": "index", "DuplicateGroup": "index", "DuplicateMember": "index",
         "DuplicatePair": "index"}

__all__ = [
    "BusyError",
    "CbirError",
    "CheckReport",
    "ColourError",
    "DatabaseError",
    "DecodeError",
    "DuplicateGroup",
    "DuplicateMember",
    "DuplicatePair",
    "DuplicateReport",
    "EvaluationError",
    "Failure",
    "Index",
    "IndexReport",
    "Quantization",
    "Remedy",
    "Result",
    "Settings",
    "SettingsError",
    "TargetColour",
    "Tuning",
    "WriteError",
    "mean_delta_e",
    "parse_colour",
    "parse_target",
    "quantize",
    "read_image",
    "rgb_mse",
    "write_image",
    "write_palette_image",
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'cbir' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])
