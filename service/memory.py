"""Handing freed heap back to the operating system between bursts of questions.

Reading a question allocates tens of megabytes of activations and token arrays, freed when
it is answered; glibc keeps such freed memory in its arenas, so a server's resident memory
climbs to its worst burst and stays there (about 150 MB over a 1M-chunk index after 120
questions, all of it free: `malloc_trim` gives it back). ``trim_heap`` asks glibc to return
it; elsewhere (musl, macOS) it does nothing.

During a long burst there is no pause to trim in, and the freed memory creeps up: over a
1M-chunk index a server's anonymous memory grew by about 180 MB in 160 back-to-back
questions, 160 MB of it free (questions read different numbers of windows, so freed blocks
rarely fit the next question's and new ones are cut). ``HeapKeeper`` also trims after a
batch once anonymous resident memory has grown by a set amount since the batch after the
last trim: the cost of a trim (and of faulting a question's pages in again) is paid once
per that much creep.

Better still is not to keep it: glibc serves a request of at least ``M_MMAP_THRESHOLD``
bytes with pages of its own and unmaps them on free, but by default it raises that
threshold to the largest block freed so far (up to 32 MiB), so after the first question
every activation tensor comes from the heap and stays there. ``cap_mmap_threshold`` fixes
it (which also turns that adjustment off).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
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


def anonymous_resident_bytes() -> int | None:
    """This process's resident memory that no file backs (/proc/self/statm: resident minus
    shared pages; one read of a few bytes); None where there is no such file."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
    except OSError:
        return None
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")


class HeapKeeper:
    """Hands the heap's freed memory back (``trim``) after a batch once anonymous resident
    memory (``measure``) has grown by ``growth_bytes`` since the first batch after the last
    trim (so the working set a batch faults in again after a trim is not counted), and
    whenever the
    server goes idle (``idle``); ``on_trim`` hears each trim's reason ("growth", "idle").
    Thread-safe: a worker finding another one trimming skips."""

    def __init__(
        self,
        growth_bytes: int,
        trim: Callable[[], object] = trim_heap,
        measure: Callable[[], int | None] = anonymous_resident_bytes,
        on_trim: Callable[[str], object] | None = None,
    ) -> None:
        self.growth_bytes = growth_bytes
        self._trim = trim
        self._measure = measure
        self._on_trim = on_trim
        self._lock = threading.Lock()
        # Anonymous bytes after the first batch since the last trim (or since the start).
        self._floor: int | None = None
        self.trims = 0

    def after_batch(self) -> bool:
        """Trim if grown by ``growth_bytes`` (0: never here); True if it trimmed."""
        if self.growth_bytes <= 0 or not self._lock.acquire(blocking=False):
            return False
        try:
            now = self._measure()
            if now is None:
                return False
            if self._floor is None:
                self._floor = now
            if now - self._floor < self.growth_bytes:
                return False
            self._trim_now("growth")
            return True
        finally:
            self._lock.release()

    def idle(self) -> None:
        """Trim (the traffic paused)."""
        with self._lock:
            self._trim_now("idle")

    def _trim_now(self, reason: str) -> None:
        if self._trim() is False:  # no C library call to do it (not glibc)
            return
        self.trims += 1
        # The next batch sets the floor: it faults its working set in again (a question's
        # activations, about 100 MiB over a 1M-chunk index), which is not growth.
        self._floor = None
        if self._on_trim is not None:
            self._on_trim(reason)
