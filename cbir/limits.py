"""The limits every image decode is held to, and OpenCV's own copy of the pixel limit.

OpenCV checks the size every decoder reads from a header against ``OPENCV_IO_MAX_IMAGE_PIXELS``, read once, when
cv2 is first imported. This module sets it to ``MAX_PIXELS`` (a smaller value already set is kept); it imports
nothing but the standard library, and ``cbir/__init__.py`` imports it first, so the limit is in place before any
part of cbir imports cv2, in this process and in every worker process (they inherit the environment). It covers
the formats whose header cbir does not read itself (JPEG 2000, AVIF, Radiance HDR...). When a program imported
cv2 before cbir, :mod:`cbir.imageio` finds out whether a limit holds before it decodes a file of unknown size.
"""

import os
import sys

MAX_PIXELS = 128_000_000
MAX_FILE_BYTES = 1 << 30  # 1 GiB: more than any photo within MAX_PIXELS (a 128 Mpx 16-bit RGBA TIFF, uncompressed)
CV2_IMPORTED_FIRST = "cv2" in sys.modules


def _keeps_a_smaller_limit():
    try:
        return 0 < int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "")) <= MAX_PIXELS
    except ValueError:
        return False


if not CV2_IMPORTED_FIRST and not _keeps_a_smaller_limit():
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_PIXELS)
