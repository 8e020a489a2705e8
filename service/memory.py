"""Handing freed heap back to the operating system between bursts of questions.

Reading a question allocates tens of megabytes of activations and token arrays, freed when
it is answered; glibc keeps such freed memory in its arenas, so a server's resident memory
climbs to its worst burst and stays there (about 150 MB over a 1M-chunk index after 120
questions, all of it free: `malloc_trim` gives it back). ``trim_heap`` asks glibc to return
it; elsewhere (musl, macOS) it does nothing.

Better still is not to keep it: glibc serves a request of at least ``M_MMAP_THRESHOLD``
bytes with pages of its own and unmaps them on free, but by default it raises that
threshold to the largest block freed so far (up to 32 MiB), so after the first question
every activation tensor comes from the heap and stays there. ``cap_mmap_threshold`` fixes
it (which also turns that adjustment off).
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    """glibc when this process runs on it (its soname, so no ``ldconfig`` run), else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
    return libc


# mallopt's parameter numbers (glibc malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def _mallopt(param: int, value: int) -> bool:
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(param, value))


def cap_arenas(count: int) -> bool:
    """At most ``count`` malloc arenas for this process's threads (glibc
    ``mallopt(M_ARENA_MAX, count)``; arenas made before stay); False where the C library has
    no such call."""
    return _mallopt(M_ARENA_MAX, count)


def cap_mmap_threshold(nbytes: int) -> bool:
    """Serve allocations of at least ``nbytes`` with pages of their own, unmapped when freed
    (glibc ``mallopt(M_MMAP_THRESHOLD, nbytes)``); False where the C library has no such
    call or refuses the value."""
    return _mallopt(M_MMAP_THRESHOLD, nbytes)


def trim_heap() -> bool:
    """Return the heap's free memory to the OS (glibc ``malloc_trim(0)``, about 9 ms over
    a 1M-chunk server's heap); False where the C library has no such call."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
