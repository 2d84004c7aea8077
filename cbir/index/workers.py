"""Worker processes for index runs: how many, and the fork server they start from.

Light on purpose (standard library only): ``cbir index`` starts the server before it imports the index and learns
the codebook, so the server's own start-up (a new interpreter importing numpy and OpenCV) runs on another core
meanwhile.
"""

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading

# Workers are forked from a clean single-threaded server process: forking this process itself can deadlock a child
# on locks held by OpenCV's or OpenBLAS's threads (seen: cv2.setNumThreads hanging in a forked child).
START_METHOD = "forkserver"


def default_workers():
    """Worker processes used when none is asked for: one per CPU this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def context(preload=()):
    """The multiprocessing context of the workers: forkserver preloading the indexer (spawn where there is none)."""
    ctx = multiprocessing.get_context(START_METHOD if START_METHOD in multiprocessing.get_all_start_methods()
                                      else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["cbir.index.run", *preload])  # imported once in the server, not in every worker
    return ctx


def start_server(preload=()):
    """Start the fork server now rather than at the first task: its start-up (a new interpreter importing cbir,
    OpenCV and numpy) then runs beside this process's own work. Does nothing if it runs already. ``preload``: more
    modules for it to import once (a local Dask cluster forks its workers from it too)."""
    if context(preload).get_start_method() != "forkserver":
        return
    # Ctrl-C while the server boots would print a traceback from its imports: it is started with SIGINT ignored
    # (inherited through exec; once booted it ignores SIGINT anyway). Only the main thread may change handlers.
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or handler is None:
        multiprocessing.forkserver.ensure_running()
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, handler)
