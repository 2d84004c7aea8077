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
    worker_memory : bytes a worker process may allocate beyond its size at start (less on a machine whose memory
        the workers would not fit in together); a file that needs more fails with "not enough memory"
    file_seconds : a worker that takes longer than this over one file is ended and the file reported as failed
    sample_keep_bytes : decoded images of the codebook's sample kept in memory (the run's process) for the files'
        histograms, so a first index decodes them once; 512 MB holds 900 decodes of a 1024x768 photo (590 kB at the
        histograms' scale), 230 of a 12-megapixel one (2.25 MB); the sample's files beyond it are decoded again
    cluster_tasks_per_thread : on a Dask cluster, chunks of ``worker_chunk`` files out and not yet written, per
        worker thread (plus 2): enough to keep every worker busy while results travel; the client's memory is
        bounded by it, not by the collection
    cluster_chunk_bytes, cluster_bytes_in_flight : with ship_bytes, file bytes per chunk, and out at once, at most
    cluster_wait_seconds : how long a cluster run waits for a first worker, or with none left, before failing
    cluster_connect_seconds : how long connecting (or reconnecting) to a Dask scheduler may take
    raw_in_memory_bytes : raw histograms up to this size stay in memory beside the transformed ones (a query then
        skips reading its candidates back from the database); larger indexes stream them and keep only the
        transformed matrix
    search_cache_rows, search_cache_bytes : an index streamed at opening with at least this many images, or this
        many bytes of raw histograms, gets a search cache: opening reads the transformed matrix instead of
        computing it. Below that, opening takes about half a second without one, and a cache would cost a rewrite
        at the end of every index run that changed something
    vector_index_bytes : an index whose transformed matrix would take at least this many bytes (float32) keeps
        none: a vector index beside it gives each query candidates that are re-scored exactly
        (:mod:`cbir.index.vector_index`), and an exact search (or one while the vector index is out of date) reads
        the histograms chunk by chunk. 2 GiB: about 420,000 images of the default layout, where an exact query
        scans for about 0.2 s and opening needs 2 GiB of memory
    duplicates_block : rows per block of the all-pairs products of finding duplicates (a block x block float32
        buffer: 16 MiB at 2048)
    duplicates_pairs_limit : finding duplicates refuses a threshold that makes more pairs than this to measure
        (about 50 bytes each)
    duplicates_threads : threads sharing those products (0: one per CPU this process may run on)
    """

    batch_size: int = 256
    parallel_min_files: int = 64
    worker_chunk: int = 16
    cluster_tasks_per_thread: int = 2
    cluster_chunk_bytes: int = 16 << 20
    cluster_bytes_in_flight: int = 512 << 20
    cluster_wait_seconds: float = 60.0
    cluster_connect_seconds: float = 10.0
    worker_memory: int = 2 << 30
    file_seconds: float = 120.0
    sample_keep_bytes: int = 512 << 20
    raw_in_memory_bytes: int = 64 << 20
    search_cache_rows: int = 200_000
    search_cache_bytes: int = 512 << 20
    vector_index_bytes: int = 2 << 30
    duplicates_block: int = 2048
    duplicates_pairs_limit: int = 20_000_000
    duplicates_threads: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "worker_chunk", "cluster_tasks_per_thread", "cluster_chunk_bytes",
                     "duplicates_block", "duplicates_pairs_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.worker_memory > 0 and self.file_seconds > 0):
            raise ValueError("worker_memory and file_seconds must be positive")
        for name in ("parallel_min_files", "sample_keep_bytes", "raw_in_memory_bytes", "search_cache_rows",
                     "search_cache_bytes", "cluster_bytes_in_flight", "duplicates_threads",
                     "vector_index_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("cluster_wait_seconds", "cluster_connect_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0, got {getattr(self, name)}")

    def streams(self, count: int, dimension: int) -> bool:
        """Whether an index of ``count`` histograms of ``dimension`` float32 values streams them at opening."""
        return count * dimension * 4 > self.raw_in_memory_bytes

    def wants_search_cache(self, count: int, dimension: int) -> bool:
        """Whether such an index is slow enough to open to be worth a search cache (and small enough to keep its
        transformed matrix)."""
        return (self.streams(count, dimension) and not self.wants_vector_index(count, dimension)
                and (count >= self.search_cache_rows or count * dimension * 4 >= self.search_cache_bytes))

    def wants_vector_index(self, count: int, dimension: int) -> bool:
        """Whether such an index is searched through a vector index (see ``vector_index_bytes``)."""
        return count > 0 and count * dimension * 4 >= self.vector_index_bytes
