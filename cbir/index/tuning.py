"""Sizes and thresholds that trade memory, start-up time and speed against each other; none changes a result."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    """Knobs of index runs and of loading an index for search (docs/benchmarks.md has the measurements behind
    the defaults). Tests pass small values to reach the large-index paths with a few images.

    batch_size : images written per transaction of an index run
    parallel_min_files : fewer files to read than this are read in one process (starting workers costs more)
    worker_chunk : files per task sent to a worker process
    raw_in_memory_bytes : raw histograms up to this size stay in memory beside the transformed ones (a query then
        skips reading its candidates back from the database); larger indexes stream them and keep only the
        transformed matrix
    search_cache_rows, search_cache_bytes : an index streamed at opening with at least this many images, or this
        many bytes of raw histograms, gets a search cache: opening reads the transformed matrix instead of
        computing it. Below that, opening takes about half a second without one, and a cache would cost a rewrite
        at the end of every index run that changed something
    duplicates_block : rows per block of the all-pairs products of finding duplicates (a block x block float32
        buffer: 16 MiB at 2048)
    duplicates_pairs_limit : finding duplicates refuses a threshold that makes more pairs than this to measure
        (about 50 bytes each)
    duplicates_threads : threads sharing those products (0: one per CPU this process may run on)
    """

    batch_size: int = 256
    parallel_min_files: int = 64
    worker_chunk: int = 16
    raw_in_memory_bytes: int = 64 << 20
    search_cache_rows: int = 200_000
    search_cache_bytes: int = 512 << 20
    duplicates_block: int = 2048
    duplicates_pairs_limit: int = 20_000_000
    duplicates_threads: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "worker_chunk", "duplicates_block", "duplicates_pairs_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("duplicates_threads", "parallel_min_files", "raw_in_memory_bytes", "search_cache_rows", "search_cache_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")

    def streams(self, count: int, dimension: int) -> bool:
        """Whether an index of ``count`` histograms of ``dimension`` float32 values streams them at opening."""
        return count * dimension * 4 > self.raw_in_memory_bytes

    def wants_search_cache(self, count: int, dimension: int) -> bool:
        """Whether such an index is slow enough to open to be worth a search cache."""
        return self.streams(count, dimension) and (count >= self.search_cache_rows
                                                   or count * dimension * 4 >= self.search_cache_bytes)
