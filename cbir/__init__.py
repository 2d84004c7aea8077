"""cbir: content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance."""

from .decode import read_image, write_image
from .errors import BusyError, CbirError, DatabaseError, DecodeError
from .index import Index, Result
from .indexer import IndexReport
from .settings import Settings
from .quantize import Quantization, mean_delta_e, quantize, rgb_mse

__version__ = "0.1.0"

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
