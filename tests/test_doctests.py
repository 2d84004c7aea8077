"""The Examples sections of the public entry points run as written (numpydoc, as in scikit-image)."""

import doctest
import importlib

import pytest

MODULES = ["cbir.settings", "cbir.index.api", "cbir.core.quantize", "cbir.core.colour_query", "cbir.core.colour",
           "cbir.core.duplicates", "cbir.core.histogram", "cbir.core.qfd", "cbir.core.feedback", "cbir.core.metrics",
           "cbir.core.kmeans", "cbir.core.codebook",
           "cbir.imageio", "cbir.store.codec", "cbir.core.ann"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_in_docstrings_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
