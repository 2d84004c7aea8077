"""cbir: content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance."""

from .decode import read_image, write_image
from .errors import BusyError, CbirError, DatabaseError, DecodeError
from .quantize import Quantization, mean_delta_e, quantize, rgb_mse

__version__ = "0.1.0"

__all__ = [
    "BusyError",
    "CbirError",
    "DatabaseError",
    "DecodeError",
    "Quantization",
    "mean_delta_e",
    "quantize",
    "read_image",
    "rgb_mse",
    "write_image",
]
