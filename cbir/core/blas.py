"""One BLAS thread for the small matrix products of the numeric core.

OpenBLAS spreads even small products over every core, and its idle threads then spin for a while: on a 2-core
machine a fresh index's codebook and lookup table kept the other core busy while they ran, taken from whatever
else runs (tests/benchmarks/bench_first_index.py prints their CPU time beside their wall time).
"""

from __future__ import annotations

import contextlib
import threading

from threadpoolctl import threadpool_limits

_lock = threading.Lock()
_inside = 0  # blocks inside one_blas_thread now, in any thread


@contextlib.contextmanager
def one_blas_thread():
    """BLAS (numpy's OpenBLAS) on one thread while the block runs, as before after it.

    The limit is process-wide: only a block that begins while no other is running sets it, and that block, in its
    own thread, restores it. Blocks that overlap it in other threads run under it while it lasts. Each block
    setting and restoring its own limit would, when two overlap in two threads, restore them in the wrong order
    and could leave BLAS on one thread for good (a web server's threads build lookup tables and find duplicates).
    """
    global _inside
    with _lock:
        first = _inside == 0
        _inside += 1
    try:
        if first:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
        else:
            yield
    finally:
        with _lock:
            _inside -= 1
