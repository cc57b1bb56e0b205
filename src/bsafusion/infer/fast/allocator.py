"""A process-wide memory setting for repeated inference on a CPU (glibc's malloc)."""

from __future__ import annotations

import functools

__all__ = ["tune_cpu_allocator"]


@functools.cache
def tune_cpu_allocator() -> bool:
    """Let this process keep and reuse the memory it frees (glibc's malloc; a process-wide,
    one-way setting that ``bsafusion fuse`` / ``register`` make for themselves).

    By default glibc hands large freed blocks back to the kernel, so the full-resolution
    intermediates of the next forward pass are mapped afresh and page-faulted in: ~19,000
    minor faults per 256² pair on the fast path (none once tuned). With large blocks kept on
    the heap (``M_MMAP_MAX`` 0, trim threshold 1 GiB, top pad 64 MiB), on 2 cores: a batch
    of 16 256² pairs in 2.7 s instead of 5.7 s on the fast path; one pair in 0.19 s instead
    of 0.23-0.25 s in alternating runs, though at batch 1 the VM's run-to-run noise is as
    large (benchmarks/RESULTS.md). The eager path gains too. The cost: memory freed after a
    peak stays with the process (up to ~1 GiB above use).

    Returns:
        True if applied (the first call applies it, later calls return its result); False
        where the C library is not glibc.
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4  # <malloc.h>
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (m_mmap_max, 0), (m_trim_threshold, 1 << 30), (m_top_pad, 64 << 20)))
