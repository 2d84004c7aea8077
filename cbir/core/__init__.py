"""The numeric core: pure functions and classes over numpy arrays (OpenCV for speed). No files, no SQLite, no CLI.

colour (colour spaces and bins), kmeans (weighted k-means), quantize (colour quantization), codebook (a
collection's colours), histogram (colour histograms over a codebook), qfd (the quadratic-form distance),
backends (search back-ends), colour_query (QBIC's colour-percentage query), metrics (ranking metrics).
"""
