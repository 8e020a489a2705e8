"""Segment merges off the writer's path: a merge is planned and built without the write
lock and committed under it in one short step; a scheduler runs them on a thread of their
own after writes.

A merge reads its run of adjacent segments (immutable files) and the run's live chunk ids
in one short read transaction, builds the merged index and writes it to a temp file
(``MERGING_PREFIX``: never a segment name, so a writer's orphan sweep leaves it alone)
while writers go on committing; then, under the write lock, it checks that the run is still
in the manifest as it was, counts the run's vectors tombstoned meanwhile as the merged
segment's dead ones, renames the file to its segment name and commits. Questions are never
blocked, and a write waits at most for that commit, not for the build. One merger per index
at a time (a thread lock here, an flock beside the index across processes); a killed one
leaves a temp file, which the next merger removes.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss

from rag.store.segments import Segment

# Temp files of merges being built: ``merging.<pid>.tmp`` in the index folder.
MERGING_PREFIX = "merging."
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MergeBuild:
    """A merged segment built from ``run`` (the run's segments as the build read them),
    written to ``tmp`` (sha256 ``digest``), ``count`` vectors from chunk id ``lo`` on."""

    run: tuple[Segment, ...]
    index: faiss.Index
    tmp: Path
    digest: str
    count: int
    lo: int

    def place(self, segments: list[Segment]) -> int | None:
        """Where the run stands in ``segments`` (the manifest at commit), or None when it is
        no longer there as the build read it (another merger replaced it)."""
        files = [s.file for s in segments]
        run = [s.file for s in self.run]
        if run[0] not in files:
            return None
        i = files.index(run[0])
        return i if files[i : i + len(run)] == run else None

    def dead_since(self, now: list[Segment]) -> int:
        """Vectors of the run tombstoned after the build read it (they were live then, so
        the merged segment holds them): its dead count. Chunk ids are never reused."""
        return sum(n.dead - b.dead for n, b in zip(now, self.run, strict=True))


class MergeScheduler:
    """Runs ``merge_once`` (one merge; False when the policy asks for none) on a thread of
    its own until the policy is satisfied, each time ``request`` is called; the thread ends
    when nothing more is asked, calling ``done`` first (to close what it opened). ``drain``
    waits for the merges asked for; ``stop`` lets only the merge in flight finish. At
    interpreter exit the merges asked for are finished first (a `rag ingest` leaves its
    index merged), unless ``stop(wait=False)`` abandoned them (a server stopping: a merge
    cut short is atomic, and the next write asks for it again)."""

    def __init__(self, merge_once: Callable[[], bool], name: str, done: Callable[[], None]) -> None:
        self._merge_once = merge_once
        self._done = done
        self._name = name
        self._cond = threading.Condition()
        self._pending = False
        self._busy = False
        self._stopping = False
        self._abandoned = False  # stop(wait=False) was called: not waited for at exit
        self._thread: threading.Thread | None = None
        _LIVE.add(self)

    def request(self) -> None:
        """Ask for merges (after a write): they run soon, on the scheduler's thread."""
        with self._cond:
            self._pending = True
            self._stopping = False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"merge-{self._name}", daemon=True
                )
                self._thread.start()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until no merge is asked for or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._thread is None, timeout)

    def stop(self, wait: bool = True) -> None:
        """With ``wait``, let the merges asked for finish; without, only the one in flight
        (not waited for)."""
        if wait:
            self.drain()
        with self._cond:
            self._stopping = not wait and self._thread is not None
            self._pending = self._pending and wait
            self._abandoned = self._abandoned or not wait

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending or self._stopping:
                    try:
                        self._done()
                    except Exception:
                        log.exception("closing the merge thread of %s failed", self._name)
                    self._thread = None
                    self._pending = False
                    self._cond.notify_all()
                    return
                self._pending = False
            try:
                while not self._stopping and self._merge_once():
                    pass
            except Exception:  # logged; the next request tries again
                log.exception("segment merge of %s failed", self._name)


_LIVE: weakref.WeakSet[MergeScheduler] = weakref.WeakSet()


@atexit.register
def _finish_merges() -> None:
    """Before the interpreter exits, the merges writes asked for (see ``MergeScheduler``)."""
    for scheduler in list(_LIVE):
        if not scheduler._abandoned:
            scheduler.drain()
