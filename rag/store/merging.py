"""Segment merges off the writer's path: a merge is planned and built without the write
lock and committed under it in one short step; a scheduler runs them on a thread of their
own after writes.

A merge reads its run of adjacent segments (immutable files) and the run's live chunk ids
in one short read transaction, builds the merged index and writes it to a temp file
(``MERGING_PREFIX``: never a segment name, so a writer's orphan sweep leaves it alone)
while writers go on committing; then, under the write lock, it checks that the run is still
in the manifest as it was, counts the run's vectors tombstoned meanwhile as the merged
segment's dead ones, renames the file to its segment name and commits. Questions are never
blocked, and a write waits at most for that commit, not for the build. One merge build per
index at a time (a thread lock here, an flock beside the index across processes); a killed
merger leaves a temp file, which the next merger removes (a temp file names its process, so
a live process's build, parked or being committed, is never taken for a killed one's).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.store.cache import SegmentCache
from rag.store.errors import StoreError
from rag.store.files import fsync_dir
from rag.store.filters import existing_ids
from rag.store.locks import IndexLocks
from rag.store.schema import manifest_of
from rag.store.segments import (
    Segment,
    plan_merge,
    read_segments,
    run_dim,
    segment_file,
    segment_vectors,
)
from rag.store.writes import Writer

# Temp files of merges being built: ``merging.<pid>.<merger>.<n>.tmp`` in the index folder.
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

    @property
    def stopping(self) -> bool:
        """Whether ``stop(wait=False)`` asked the merges to end after the one in flight."""
        return self._stopping

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


class Merger:
    """The merges of one index folder: planned on the newest manifest, built without the
    write lock, committed under it (see the module docstring); on the scheduler's thread
    after writes when ``background``, else in the writer. ``dropped`` says whether the
    index was deleted or is being replaced (then a merge of it is never committed)."""

    def __init__(
        self,
        locks: IndexLocks,
        cache: SegmentCache,
        writer: Writer,
        merge_factor: int,
        max_dead: float,
        background: bool,
        dropped: Callable[[], bool],
        done: Callable[[], None],
    ) -> None:
        self.path = writer.path
        self.locks = locks
        self.cache = cache
        self.writer = writer
        self.merge_factor = merge_factor
        self.max_dead = max_dead
        self.background = background
        self._dropped = dropped
        # One merge at a time in this process (and one process at a time, by flock).
        self._lock = threading.Lock()
        # A merge built while a writer of this process held the write lock (an ingest holds
        # it across its commits): committed by that writer's next commit, or by the merge
        # thread once the lock is free.
        self._park_lock = threading.Lock()
        self.parked: MergeBuild | None = None
        self._token = secrets.token_hex(4)  # two Stores of one index in a process apart
        self._count = 0
        self.scheduler = MergeScheduler(self._in_background, self.path.name, done)

    def merge(self, limit: int | None = None) -> int:
        """Merge while the policy asks (at most ``limit`` merges), now, in this thread; the
        number done (0 also when another process is merging)."""
        done = 0
        while (limit is None or done < limit) and self._once():
            done += 1
        return done

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the background merges asked for are done; False on timeout."""
        return self.scheduler.drain(timeout)

    def after_commit(self) -> None:
        """Merges after a write has committed (write lock held): asked of the merge thread,
        or (without background merges) run here; a failure (a full disk) leaves the
        committed write and the segments as they were, and is logged, not raised."""
        if self.background:
            if self._lock.acquire(blocking=False):  # else the merge thread has it
                try:  # held through the commit: no merge is built meanwhile on its old run
                    parked = self._take_parked()
                    if parked is not None:  # this writer holds the lock the merge wanted
                        self._commit_parked(parked)
                finally:
                    self._lock.release()
            self.scheduler.request()
            return
        try:
            # Holding the write lock: another process's merger waiting for it must not be
            # waited for in turn (it merges; this write does not).
            while self._once(wait=False):
                pass
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.warning("segment merge of %s skipped: %s", self.path, exc)

    def write_lock_released(self) -> None:
        """A writer of this process let the write lock go: a merge handed over to it and
        not committed is committed by the merge thread. (Without background merges, a build
        handed over by ``merge`` called in another thread waits for the next write or
        ``close``.)"""
        with self._park_lock:  # a merge handing a build over holds it (see _once)
            parked = self.parked is not None
        if parked and self.background:
            self.scheduler.request()

    def close(self, wait: bool) -> None:
        """With ``wait``, finish the merges asked for (and commit a handed-over one); else
        abandon them (a merge cut short is atomic; the next write asks again)."""
        self.scheduler.stop(wait=wait)
        if not wait:  # a merge in flight is not waited for; a handed-over one is dropped
            parked = self._take_parked()
            if parked is not None:
                self._finish(parked)
            return
        with self._lock:  # as a writer's commit of it: no merge built meanwhile on its run
            parked = self._take_parked()
            if parked is not None:  # built while the lock was held, not committed since
                try:
                    if not self._dropped():
                        with self.locks.writing():
                            self._commit_parked(parked)
                finally:
                    self._finish(parked)
        self.write_lock_released()  # a merge handed over to this commit meanwhile
        self.scheduler.drain()

    def _finish(self, build: MergeBuild) -> None:
        """``build`` is committed or dropped: its temp file goes."""
        build.tmp.unlink(missing_ok=True)

    def _in_background(self) -> bool:
        """One merge on the merge thread; a failure is logged and ends this round."""
        try:
            return self._once()
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.warning("segment merge of %s skipped: %s", self.path, exc)
            return False

    def _once(self, wait: bool = True) -> bool:
        """One merge the policy asks for, committed. False when none is asked for, when it
        was handed over to a writer of this process, or when another merger holds the merge
        lock (another process: it merges instead). A build whose run changed before its
        commit is dropped and the merge planned again on the newest manifest."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            while True:
                build = self._take_parked() or self._build_locked()
                if build is None:
                    return False
                # Never wait for the write lock held by another thread here (an ingest holds
                # it across its commits, and would wait for the merges at its end): hand the
                # build over to it instead, under the park lock that its release looks under.
                # Another process's writer is waited for.
                parked = False
                try:
                    with self.locks.writing_unless_held_here(self._park_lock) as held:
                        if not held:
                            self.parked = build
                            parked = True
                            return False
                        if self.commit(build):
                            return True
                finally:
                    if not parked:
                        self._finish(build)
                if self.scheduler.stopping:  # a merge dropped is not planned again
                    return False
        finally:
            self._lock.release()

    def _build_locked(self) -> MergeBuild | None:
        """A build under the merge lock (held while it reads and builds); None when another
        merger holds the lock or none is asked for."""
        fd = self.locks.try_merging()
        if fd is None:
            return None
        try:
            # Holding the lock, a merge temp file of a process that is gone is a killed
            # merger's; a live one's is a build parked or being committed (this process's
            # too), or a killed merger's whose process id was reused (removed later).
            for stale in self.path.glob(f"{MERGING_PREFIX}*"):
                if not _process_alive(_merger_pid(stale.name)):
                    stale.unlink(missing_ok=True)
            return self.build()
        finally:
            os.close(fd)

    def _commit_parked(self, build: MergeBuild) -> None:
        """Commit a handed-over merge (write lock held); a failure is logged, not raised."""
        try:
            self.commit(build)
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.warning("segment merge of %s skipped: %s", self.path, exc)
        finally:
            self._finish(build)

    def _take_parked(self) -> MergeBuild | None:
        with self._park_lock:
            build, self.parked = self.parked, None
        return build

    def build(self) -> MergeBuild | None:
        """Plan a merge on the newest manifest and build it: the run's live vectors (read in
        one short read transaction) into one index (an approximate one is trained on them),
        written durably to a temp file. None when the policy asks for no merge. The merge
        holds one copy of the run's live vectors beside the index it builds."""
        if self._dropped():
            raise StoreError(f"the index {self.path.name!r} was deleted")
        conn = self.writer.connect()
        conn.execute("BEGIN")
        try:
            manifest = manifest_of(conn)
            if "segments" not in manifest:
                return None  # an index from before segments: its next write converts it
            segments = read_segments(manifest)
            plan = plan_merge(segments, self.merge_factor, self.max_dead)
            if plan is None:
                return None
            run = segments[plan[0] : plan[1]]
            with self.cache.lock:
                found = [self.cache.load(s.file, s.sha256) for s in run]
            indexes = [index for index in found if index is not None]
            if len(indexes) < len(run):
                raise StoreError(f"a segment of {self.path} is missing; rebuild the index")
            parts: list[tuple[np.ndarray, np.ndarray]] = []
            for index in indexes:
                ids, vectors = segment_vectors(index)
                keep = np.isin(ids, np.fromiter(existing_ids(conn, ids), dtype=np.int64))
                if keep.any():
                    parts.append((ids[keep], vectors[keep]))
                del vectors
        finally:
            conn.execute("COMMIT")
        live = sum(len(ids) for ids, _ in parts)
        merged = self.writer.new_index(run_dim(indexes), live)
        if parts:
            all_ids = np.concatenate([ids for ids, _ in parts])
            all_vectors = np.concatenate([v for _, v in parts])
            parts.clear()
            if len(all_ids) > 1 and not bool(np.all(np.diff(all_ids) > 0)):
                # Rows in id order, as lookups by bisection need (a run's segments are in
                # id order already; an old IDMap2 one need not be inside).
                order = np.argsort(all_ids, kind="stable")
                all_ids, all_vectors = all_ids[order], all_vectors[order]
            if not merged.is_trained:
                merged.train(all_vectors)
            merged.add_with_ids(all_vectors, all_ids)
            del all_vectors
        self._count += 1
        tmp = self.path / f"{MERGING_PREFIX}{os.getpid()}.{self._token}.{self._count}.tmp"
        digest = ""
        if merged.ntotal:
            try:
                digest = self.writer.write_vectors(merged, tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return MergeBuild(tuple(run), merged, tmp, digest, int(merged.ntotal), run[0].lo)

    def commit(self, build: MergeBuild) -> bool:
        """Put ``build`` in place of its run, in one write transaction (write lock held):
        the run's vectors deleted since the build read them become the merged segment's
        dead ones. False, and nothing changed, when the run is no longer as it was."""
        if self._dropped():  # deleted, or replaced by a rebuild, while it was built
            raise StoreError(f"the index {self.path.name!r} was deleted")
        with self.writer.transaction() as (conn, current, segments):
            i = build.place(segments)
            if i is None:
                log.info("segment merge of %s dropped: its segments changed", self.path)
                return False
            j = i + len(build.run)
            merged: list[Segment] = []
            updates: dict[str, str] = {}
            if build.count:
                number = int(current.get("generation", "0")) + 1
                path = self.path / segment_file(number)
                os.replace(build.tmp, path)
                fsync_dir(self.path)
                # Readers get the file mapped, as if loaded (not the build's heap copy).
                mapped = self.cache.mmap_vectors
                self.writer.stage(path.name, self.cache.read_file(path) if mapped else build.index)
                dead = build.dead_since(segments[i:j])
                merged = [Segment(path.name, build.digest, build.count, dead, build.lo)]
                updates["generation"] = str(number)
            self.writer.commit(conn, current, [*segments[:i], *merged, *segments[j:]], updates)
            return True


def _merger_pid(name: str) -> int | None:
    """The process id a merge temp file's name holds (None: not one of ours)."""
    pid = name[len(MERGING_PREFIX) :].split(".", 1)[0]
    return int(pid) if pid.isdigit() else None


def _process_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists (signal 0 probes without signalling)."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


_LIVE: weakref.WeakSet[MergeScheduler] = weakref.WeakSet()


@atexit.register
def _finish_merges() -> None:
    """Before the interpreter exits, the merges writes asked for (see ``MergeScheduler``)."""
    for scheduler in list(_LIVE):
        if not scheduler._abandoned:
            scheduler.drain()
