"""cbir: content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance.

``Index`` is the door to an index database; the numeric core (:mod:`cbir.core`) and image file input and output
(:mod:`cbir.imageio`) are usable on their own. ``Index`` and what comes with it are imported on first use
(PEP 562): a worker process of an index run imports this package and needs numpy and OpenCV, not SQLite,
sqlite-utils and the search.
"""

import importlib

from .core.colour_query import TargetColour, parse_colour, parse_target
from .core.quantize import Quantization, mean_delta_e, quantize, rgb_mse
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
from .imageio import read_image, write_image
from .settings import Settings

__version__ = "0.1.0"

_LAZY = {"Index": "index", "Result": "index", "Failure": "index", "IndexReport": "index", "Tuning": "index",
         "CheckReport": "index", "DuplicateReport": "index", "DuplicateGroup": "index", "DuplicateMember": "index",
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
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'cbir' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])
