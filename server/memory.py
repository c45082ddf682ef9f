"""The server process's C allocator: a bounded number of glibc malloc arenas and a fixed mmap threshold.

Under concurrent load the server's RSS grew by about 270 MB over the first minute of tile requests and kept it
(bench/load.py, ``--only tile``), although little of it stayed in use: glibc's malloc gives each new thread its
own arena (up to 8 per core: 16 here, for uvicorn's thread pool, pygeoapi's executor and the job workers), and
its mmap threshold slides up to the largest buffer freed so far (up to 32 MB), so the megabyte-sized buffers a
tile render allocates and frees (GDAL blocks, numpy arrays) came from the arenas' heaps, where freed memory stays
resident. With a fixed threshold such buffers are mapped and unmapped on their own, and two arenas bound what
the remaining fragmentation can hold: the same load grew the process by 55 MB, with no measurable cost in
latency (bench/RESULTS.md, "Server memory under load").

Both are process-wide settings of glibc; an allocator variable set by the user (``MALLOC_ARENA_MAX``,
``MALLOC_MMAP_THRESHOLD_``, or ``GLIBC_TUNABLES`` naming them) wins, and another C library is left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass

from eofusion.config import Limits

#: ``mallopt`` parameters (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: glibc's largest mmap threshold on 64-bit systems (``HEAP_MAX_SIZE / 2``); mallopt refuses more.
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


@dataclass(frozen=True)
class AllocatorTuning:
    """What :func:`tune_allocator` set (``None``: left as it was, e.g. the user's variable or not glibc).

    Attributes:
        arenas: Most malloc arenas of the process.
        mmap_threshold_bytes: Allocations of this size or more are mapped on their own and unmapped when freed.
    """

    arenas: int | None = None
    mmap_threshold_bytes: int | None = None


def _user_set(environ: Mapping[str, str], variable: str, tunable: str) -> bool:
    return variable in environ or f"glibc.malloc.{tunable}" in environ.get("GLIBC_TUNABLES", "")


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def tune_allocator(limits: Limits, environ: Mapping[str, str] | None = None) -> AllocatorTuning:
    """Bound the process's malloc arenas and fix its mmap threshold, from ``limits``.

    Call it before the server starts its threads: a thread keeps the arena it was given, and glibc reads
    the arena bound when the first thread asks for an arena.

    Args:
        limits: ``malloc_arenas`` and ``malloc_mmap_threshold_kb``.
        environ: The process environment (default ``os.environ``): the user's allocator variables win.

    Returns:
        What was set.
    """
    env = os.environ if environ is None else environ
    libc = _glibc()
    if libc is None:
        return AllocatorTuning()
    arenas: int | None = None
    threshold: int | None = None
    if not _user_set(env, "MALLOC_ARENA_MAX", "arena_max") and libc.mallopt(M_ARENA_MAX, limits.malloc_arenas) == 1:
        arenas = limits.malloc_arenas
    wanted = min(limits.malloc_mmap_threshold_kb * 1024, MAX_MMAP_THRESHOLD)
    if not _user_set(env, "MALLOC_MMAP_THRESHOLD_", "mmap_threshold") and libc.mallopt(M_MMAP_THRESHOLD, wanted) == 1:
        threshold = wanted
    return AllocatorTuning(arenas, threshold)
