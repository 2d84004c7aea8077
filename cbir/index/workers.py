"""Worker processes for index runs: how many, the fork server they start from, and what bounds each of them.

A worker must never outlive the run nor take the machine with it: it exits as soon as the process that started
the run ends, however that ends (:func:`exit_with`, a SIGKILL included); its memory is capped
(:func:`limit_memory`), so a file that needs too much fails in the worker instead of calling the kernel's
out-of-memory killer; and each file gets a time limit (:func:`time_limit`), so a decoder that hangs ends its
worker, which the run notices and reports against that file.

Light on purpose (standard library only): ``cbir index`` starts the server before it imports the index and learns
the codebook, so the server's own start-up (a new interpreter importing numpy and OpenCV) runs on another core
meanwhile.
"""

import contextlib
import faulthandler
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import select
import signal
import threading
from collections.abc import Iterator

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


def exit_with(pid: int) -> None:
    """End this process at once when process ``pid`` ends, however it ends (a SIGKILL included).

    Workers are forked from the fork server, not from the run's process, so the kernel's parent-death signal does
    not reach them; they watch the run's process through a pidfd instead (Linux 5.3; elsewhere a poll). The fork
    server and the resource tracker then end by themselves: both exit when the last process holding their pipes
    is gone.
    """
    try:
        watched = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd: poll
        watched = None

    def watch():
        if watched is not None:
            select.select([watched], [], [])
        else:
            while _alive(pid):
                threading.Event().wait(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="cbir-exit-with-run", daemon=True).start()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def limit_memory(extra: int) -> None:
    """Cap this process's address space at what it uses now plus ``extra`` bytes (RLIMIT_AS): beyond that an
    allocation fails (MemoryError, or OpenCV's out-of-memory error) instead of growing until the kernel kills a
    process. Does nothing where the current size cannot be read."""
    try:
        with open("/proc/self/status") as status:
            size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = size + extra
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))


def memory_per_worker(workers: int, ceiling: int) -> int:
    """Memory each of ``workers`` processes may take beyond its start: ``ceiling``, or less so that all of them
    together stay within the machine's physical memory."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return ceiling
    return max(256 << 20, min(ceiling, physical // max(1, workers + 1)))


_devnull = None


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """End this process if the block takes longer than ``seconds`` (a decoder caught in a loop, a read that never
    returns). A C-level watchdog (faulthandler), so it works while native code holds the interpreter."""
    global _devnull
    if _devnull is None:
        _devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the life of the worker
    faulthandler.dump_traceback_later(seconds, exit=True, file=_devnull)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
