"""What the benchmark's own process uses: memory from /proc/self/status, CPU time of all its threads."""

import resource


def status(field):
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak of one step can be read."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def cpu_seconds():
    """CPU time of this process, every thread: what a busy machine changes much less than the wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
