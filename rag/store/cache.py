"""Loaded segments: each segment file read once (memory-mapped where faiss allows) and shared
by every reader of this process.

A read transaction pins the segments its snapshot names, so its searches find them however
many writes and merges land meanwhile; a segment stays loaded while the newest manifest
names it or a reader pins it. Segment files are immutable (a merge writes a new one and
removal unlinks), so a mapping stays valid while a reader holds it. One lock guards the
cache and orders a reader's snapshot against a writer's commit (``lock``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import faiss

from rag.store.errors import StoreError
from rag.store.files import file_sha256
from rag.store.schema import check_version, manifest_of
from rag.store.segments import AnnPolicy, Segment, read_segments

# faiss >= 1.11 maps an IndexFlatCodes' codes in place; older ones read them (0: no flag).
MMAP_FLAG: int = getattr(faiss, "IO_FLAG_MMAP_IFC", 0)


class SegmentCache:
    """The loaded segment indexes of the index folder ``path``, with their pins."""

    def __init__(self, path: Path, ann: AnnPolicy, mmap_vectors: bool = True) -> None:
        self.path = path
        self.ann = ann
        self.mmap_vectors = mmap_vectors
        # Guards what follows; held by a reader fixing its snapshot and by a writer's commit.
        self.lock = threading.Lock()
        self.loaded: dict[str, faiss.Index] = {}
        self._pins: dict[str, int] = {}
        # The newest manifest seen: (generation, its segment files), which stay loaded.
        self._newest: tuple[int, frozenset[str]] = (-1, frozenset())
        # Whether this process has asked questions (then it keeps the newest segments
        # loaded; an ingest keeps only pinned ones, so its memory follows what it writes).
        self.has_read = False

    def read_file(self, path: Path) -> faiss.Index:
        """A segment file read (mapped with ``mmap_vectors``), its search parameters set."""
        flags = MMAP_FLAG if self.mmap_vectors else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise StoreError(f"the vector file {path} cannot be read: {exc}") from None
        self.ann.tune(index)
        return index

    def load(self, name: str, sha256: str | None = None) -> faiss.Index | None:
        """Segment file ``name``, from memory or disk; None when it is gone (lock held).

        A file read from disk must match the checksum its manifest recorded (indexes
        written before checksums were recorded have none): a truncated or corrupt file is
        a StoreError naming it, never a crash in FAISS or a wrong answer."""
        index = self.loaded.get(name)
        if index is None:
            path = self.path / name
            if not path.is_file():
                return None
            if sha256 is not None and file_sha256(path) != sha256:
                raise StoreError(
                    f"the vector file {path} is damaged (its checksum differs from the "
                    "manifest's): restore it, or rebuild the index (rag ingest --rebuild)"
                )
            index = self.read_file(path)
            self.loaded[name] = index
        return index

    def loaded_for(self, segments: Sequence[Segment]) -> list[tuple[Segment, faiss.Index]]:
        """``segments`` with their indexes; StoreError when one is gone (merged away by
        writers in another process since the snapshot was taken)."""
        with self.lock:
            loaded = []
            for s in segments:
                index = self.load(s.file, s.sha256)
                if index is None:
                    raise StoreError(
                        f"the index at {self.path} changed during this read; ask again"
                    )
                loaded.append((s, index))
            return loaded

    @contextlib.contextmanager
    def pinned(self, conn: sqlite3.Connection, path: Path) -> Iterator[None]:
        """A read transaction on ``conn`` with its snapshot's segments pinned and loaded
        (taken before any writer here can commit a merge and let them go)."""
        with self.lock:
            conn.execute("BEGIN")
            try:
                manifest = manifest_of(conn)
                check_version(path, manifest)
                pinned = self.pin(manifest, read_segments(manifest))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        try:
            yield
        finally:
            conn.execute("COMMIT")
            if pinned:
                with self.lock:
                    self.unpin(pinned)

    def pin(self, manifest: Mapping[str, str], segments: Sequence[Segment]) -> list[str]:
        """Pin and load the segments of a reader's snapshot (lock held); their files."""
        self.has_read = True
        pinned: list[str] = []
        try:
            for segment in segments:
                self._pins[segment.file] = self._pins.get(segment.file, 0) + 1
                pinned.append(segment.file)
                self.load(segment.file, segment.sha256)
            self.note(manifest, segments)
        except BaseException:
            self.unpin(pinned)
            raise
        return pinned

    def unpin(self, names: Sequence[str]) -> None:
        """A reader of ``names`` left: drop those no one needs from memory (lock held)."""
        for name in names:
            self._pins[name] -= 1
            if not self._pins[name]:
                del self._pins[name]
        self._evict()

    def install(
        self,
        written: Mapping[str, faiss.Index],
        manifest: Mapping[str, str],
        segments: Sequence[Segment],
    ) -> None:
        """A write committed ``manifest`` naming ``segments``, of which it wrote ``written``:
        readers reuse those instead of reading them again (lock held)."""
        if self.has_read:
            for index in written.values():  # tuned again now that their size is known
                self.ann.tune(index)
            self.loaded.update(written)
        self.note(manifest, segments)

    def note(self, manifest: Mapping[str, str], segments: Sequence[Segment]) -> None:
        """Remember the newest manifest's segment files: what stays loaded (lock held)."""
        generation = int(manifest.get("generation", "0"))
        if generation >= self._newest[0]:
            self._newest = (generation, frozenset(s.file for s in segments))
        self._evict()

    def _evict(self) -> None:
        """Drop loaded segments neither the newest manifest names nor a reader pins."""
        for name in list(self.loaded):
            newest = self.has_read and name in self._newest[1]
            if not newest and name not in self._pins:
                del self.loaded[name]
