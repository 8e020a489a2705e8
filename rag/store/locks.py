"""The index's locks: who writes, who serves, who merges.

Each is an flock on a file under ``<index_root>/.locks/``, outside the folder a rebuild
replaces and out of the way of anything listing the indexes:
- ``<name>.lock``: one writer at a time across processes; in this process one thread at a
  time (re-entrant: an ingest's read-compare-write holds it across its commits).
- ``<name>.serve.lock``: held shared by a server, exclusively by a rebuild or a delete, so
  neither replaces an index under a server.
- ``<name>.merge.lock``: one merge build at a time across processes, taken without waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from rag.store.errors import StoreBusy, StoreError

LOCK_DIR = ".locks"


def open_lock(path: Path) -> int:
    """A descriptor of the lock file ``path`` (made, with its folder, when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


class IndexLocks:
    """The write, serve and merge locks of the index folder ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._fd: int | None = None
        self._depth = 0
        self._serve_fd: int | None = None

    def _lock_file(self, suffix: str) -> Path:
        return self.path.parent / LOCK_DIR / f"{self.path.name}{suffix}"

    @property
    def write_path(self) -> Path:
        return self._lock_file(".lock")

    @property
    def serve_path(self) -> Path:
        return self._lock_file(".serve.lock")

    @property
    def merge_path(self) -> Path:
        return self._lock_file(".merge.lock")

    @contextlib.contextmanager
    def writing(self, blocking: bool = True) -> Iterator[None]:
        """Hold the write lock (re-entrant in this process; other processes wait, or with
        ``blocking=False`` get StoreBusy at once)."""
        if not self._thread_lock.acquire(blocking=blocking):
            raise StoreBusy(f"another writer is writing {self.path}")
        try:
            if self._depth == 0:
                fd = open_lock(self.write_path)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    os.close(fd)
                    raise StoreBusy(f"another process is writing {self.path}") from None
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing the descriptor releases the flock
                    self._fd = None
        finally:
            self._thread_lock.release()

    @contextlib.contextmanager
    def writing_unless_held_here(self, guard: threading.Lock) -> Iterator[bool]:
        """The write lock, unless another thread of this process holds it (then False at
        once: a merge must not wait for an ingest that waits for the merges at its end);
        another process's writer is waited for. On False, ``guard`` is held from the attempt
        through the caller's body: a thread that lets the write lock go and then looks under
        ``guard`` for what was handed over to it cannot miss it."""
        with guard:
            if not self._thread_lock.acquire(blocking=False):
                yield False
                return
        try:
            with self.writing():
                yield True
        finally:
            self._thread_lock.release()

    def hold_serving(self) -> None:
        """Mark the index as served by this process until ``release_serving`` (a shared
        lock): a rebuild, which replaces the folder under a server, is refused meanwhile."""
        if self._serve_fd is None:
            fd = open_lock(self.serve_path)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._serve_fd = fd

    def release_serving(self) -> None:
        if self._serve_fd is not None:
            os.close(self._serve_fd)
            self._serve_fd = None

    @contextlib.contextmanager
    def replacing(self) -> Iterator[None]:
        """Hold the serve lock exclusively: StoreError when a server holds the index."""
        fd = open_lock(self.serve_path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(
                    f"a server is serving {self.path}: a rebuild would replace the index under "
                    "it; stop the server first (or ingest without --rebuild, which it sees)"
                ) from None
            yield
        finally:
            os.close(fd)

    def try_merging(self) -> int | None:
        """The merge lock's descriptor, held (``os.close`` releases it), or None at once when
        another merger holds it."""
        fd = open_lock(self.merge_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd
