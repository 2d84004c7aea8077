"""One BLAS thread for the small matrix products of the numeric core.

OpenBLAS spreads even small products over every core, and its idle threads then spin for a while: on a 2-core
machine a fresh index's codebook and lookup table cost twice their time in CPU, taken from whatever else runs
(tests/benchmarks/bench_first_index.py reports the CPU time beside the wall time).
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread():
    """Context manager: BLAS (numpy's OpenBLAS) on one thread while it is open, as before after it."""
    return threadpool_limits(limits=1, user_api="blas")
