"""Atomic writes: rows, tombstones and a new vector segment in one SQLite transaction.

A change opens a write transaction (BEGIN IMMEDIATE), deletes and inserts rows, counts the
deleted rows' vectors as tombstones of their segments, writes the new vectors as a new
segment file (temp file, fsync, rename), points the manifest at the new segment list and
commits. A process killed anywhere before the commit leaves the previous manifest, rows and
segments untouched (an orphan file is removed by the next writer); after the commit the new
state is complete. A write never rewrites an old segment, so its cost follows the batch.
The caller holds the write lock (``rag.store.locks``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.models import Chunk, Document
from rag.store.cache import SegmentCache
from rag.store.files import file_sha256, fsync_dir
from rag.store.schema import (
    INDEX_METADATA,
    PENDING,
    SCHEMA_VERSION,
    check_version,
    dump_page_starts,
    manifest_of,
    migrate,
)
from rag.store.segments import (
    LEGACY_KEYS,
    AnnPolicy,
    Segment,
    dump_segments,
    read_segments,
    segment_file,
    tombstone,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Upsert:
    """A document to write, with its chunks and their vectors (row i of ``vectors``)."""

    document: Document
    chunks: Sequence[Chunk]
    vectors: np.ndarray


class Writer:
    """The write transactions of one index folder; segments it writes go to ``cache`` at
    commit."""

    def __init__(
        self,
        path: Path,
        cache: SegmentCache,
        connect: Callable[[], sqlite3.Connection],
        faiss_index_type: str,
        ann: AnnPolicy,
    ) -> None:
        self.path = path
        self.cache = cache
        self.connect = connect
        self.faiss_index_type = faiss_index_type
        self.ann = ann
        # Segments written by the transaction in flight (installed for readers at commit).
        self._written: dict[str, faiss.Index] = {}
        # Files a commit must not remove: the state before the write in flight, whose
        # merges keep it for a reader one write behind in another process.
        self.protect: set[str] = set()

    def new_index(self, dim: int, n: int = 0) -> faiss.Index:
        """An empty segment index for ``n`` vectors: approximate from ``ann.min_vectors``
        on (it must then be trained), exact below."""
        if self.ann.index_type and n >= self.ann.min_vectors:
            factory = f"IDMap,{self.ann.index_type}"
        else:
            factory = self.faiss_index_type
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        self.ann.tune(index)
        return index

    def write_vectors(self, index: faiss.Index, path: Path) -> str:
        """Write ``index`` to ``path`` durably; its sha256."""
        try:
            faiss.write_index(index, str(path))
        except RuntimeError as exc:  # FAISS reports a short write (a full disk) this way
            raise OSError(errno.EIO, f"could not write {path.name}: {exc}") from None
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
        return file_sha256(path)

    def stage(self, name: str, index: faiss.Index) -> None:
        """``index`` is segment file ``name`` of the transaction in flight."""
        self._written[name] = index

    def _write_segment(self, number: int, ids: np.ndarray, vectors: np.ndarray) -> str:
        """A new segment file of ``vectors`` keyed by ``ids``, durably: its sha256."""
        if len(ids) > 1 and not bool(np.all(np.diff(ids) > 0)):
            raise ValueError(
                "a segment's chunk ids must increase (they are looked up by bisection)"
            )
        index = self.new_index(vectors.shape[1])
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        path = self.path / segment_file(number)
        tmp = path.with_suffix(".tmp")
        try:
            digest = self.write_vectors(index, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        fsync_dir(self.path)
        self.stage(path.name, index)
        return digest

    @contextlib.contextmanager
    def transaction(
        self,
    ) -> Iterator[tuple[sqlite3.Connection, dict[str, str], list[Segment]]]:
        """One write transaction (BEGIN IMMEDIATE) with its manifest and segments; rolled
        back, and any segment file it wrote removed, unless it was committed."""
        conn = self.connect()
        conn.execute("BEGIN IMMEDIATE")
        self._written.clear()
        try:
            current = manifest_of(conn)
            self._upgrade(conn, current)
            yield conn, current, self._current_segments(conn, current)
        finally:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the transaction may be gone
                    conn.execute("ROLLBACK")
                for name in self._written:
                    (self.path / name).unlink(missing_ok=True)
                self._written.clear()

    def commit(
        self,
        conn: sqlite3.Connection,
        current: Mapping[str, str],
        segments: Sequence[Segment],
        updates: dict[str, str],
    ) -> None:
        """Name ``segments`` in the manifest with ``updates`` and commit; keep on disk the
        files of the new and of the replaced manifest only (a reader one commit behind, in
        another process, still finds its own)."""
        updates["segments"] = dump_segments(segments)
        conn.executemany("INSERT OR REPLACE INTO manifest VALUES (?, ?)", sorted(updates.items()))
        conn.executemany("DELETE FROM manifest WHERE key = ?", [(k,) for k in LEGACY_KEYS])
        # Still holding the database's write lock, so no other writer has a temp file in
        # flight.
        keep = {s.file for s in segments} | {s.file for s in read_segments(current)}
        self.remove_orphans(keep | self.protect)
        with self.cache.lock:
            conn.execute("COMMIT")
            self.cache.install(self._written, {**current, **updates}, segments)
            self._written.clear()

    def remove_orphans(self, keep: set[str]) -> None:
        """Delete vector files other than ``keep``: merged segments no manifest names any
        more and temp files of killed writers (write lock held)."""
        for f in self.path.glob("vectors.*"):
            if f.name not in keep:
                f.unlink(missing_ok=True)

    def apply(
        self,
        upserts: Sequence[Upsert],
        deletes: Sequence[str],
        manifest: Mapping[str, str] | None,
        metadata_only: Sequence[Document],
    ) -> None:
        """Replace/insert ``upserts``, delete ``deletes``, update the metadata of
        ``metadata_only`` and the manifest keys ``manifest``: one transaction."""
        with self.transaction() as (conn, current, segments):
            self.protect = {s.file for s in segments}
            replaced = [u.document.id for u in upserts] + list(deletes)
            stale = self._remove(conn, replaced)
            if len(stale):
                segments = tombstone(segments, stale)
            new_ids: list[np.ndarray] = []
            new_vectors: list[np.ndarray] = []
            for u in upserts:
                ids = self._insert(conn, u)
                if len(ids):
                    new_ids.append(ids)
                    new_vectors.append(np.asarray(u.vectors, dtype=np.float32))
            for d in metadata_only:
                metadata = json.dumps(d.metadata, sort_keys=True)
                conn.execute(
                    "UPDATE documents SET title = ?, metadata = ?, page_starts = ? WHERE id = ?",
                    (d.title, metadata, dump_page_starts(d.page_starts), d.id),
                )
                conn.execute("DELETE FROM document_metadata WHERE doc_id = ?", (d.id,))
                conn.execute(INDEX_METADATA, (d.id, metadata))
            updates = dict(manifest or {})
            if new_ids:
                ids = np.concatenate(new_ids)
                number = int(current.get("generation", "0")) + 1
                digest = self._write_segment(number, ids, np.concatenate(new_vectors))
                segments.append(Segment(segment_file(number), digest, len(ids), 0, int(ids.min())))
                updates["generation"] = str(number)
            if new_ids or len(stale):
                self.commit(conn, current, segments, updates)
            else:
                conn.executemany(
                    "INSERT OR REPLACE INTO manifest VALUES (?, ?)", sorted(updates.items())
                )
                conn.execute("COMMIT")

    def _current_segments(
        self, conn: sqlite3.Connection, manifest: Mapping[str, str]
    ) -> list[Segment]:
        """The manifest's segments; an index from before segments counts its one file's
        vectors once (as many as its chunk rows), the first time it is written to."""
        legacy = -1
        if "segments" not in manifest and "faiss_file" in manifest:
            legacy = int(conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
        return read_segments(manifest, legacy)

    def _upgrade(self, conn: sqlite3.Connection, manifest: dict[str, str]) -> None:
        """Bring an older schema to this one inside the write transaction."""
        version = check_version(self.path, manifest)
        if version != SCHEMA_VERSION:
            log.info(
                "migrating %s from schema version %s to %s (keyword index: tantivy)",
                self.path,
                version,
                SCHEMA_VERSION,
            )
            migrate(conn, version)
            manifest["schema_version"] = SCHEMA_VERSION

    @staticmethod
    def _insert(conn: sqlite3.Connection, u: Upsert) -> np.ndarray:
        """Rows for ``u``'s document and chunks, their ids pending for the keyword engine;
        the new chunk ids. A chunk whose text is not its document's slice is refused."""
        d = u.document
        if len(u.chunks) != len(u.vectors):
            raise ValueError(f"{d.id}: {len(u.chunks)} chunks but {len(u.vectors)} vectors")
        for c in u.chunks:
            if d.text[c.start : c.end] != c.text:
                raise ValueError(f"{d.id}: chunk [{c.start}, {c.end}) is not its text's slice")
        metadata = json.dumps(d.metadata, sort_keys=True)
        conn.execute(
            "INSERT INTO documents (id, title, sha256, metadata, text, n_chunks, page_starts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                d.id,
                d.title,
                d.sha256,
                metadata,
                d.text,
                len(u.chunks),
                dump_page_starts(d.page_starts),
            ),
        )
        conn.execute(INDEX_METADATA, (d.id, metadata))
        ids = []
        for c in u.chunks:
            cur = conn.execute(
                "INSERT INTO chunks (doc_id, start, end, n_tokens) VALUES (?, ?, ?, ?)",
                (d.id, c.start, c.end, c.n_tokens),
            )
            ids.append(cur.lastrowid)
        conn.executemany(PENDING, [(i,) for i in ids])
        return np.asarray(ids, dtype=np.int64)

    @staticmethod
    def _remove(conn: sqlite3.Connection, doc_ids: Sequence[str]) -> np.ndarray:
        """Delete the documents ``doc_ids`` (those stored) and their chunks, whose ids
        become pending for the keyword engine (which then drops them); their chunk ids."""
        ids: list[int] = []
        for doc_id in doc_ids:
            chunks = [
                int(r[0]) for r in conn.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))
            ]
            conn.executemany(PENDING, [(i,) for i in chunks])
            conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
            conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
            ids += chunks
        return np.asarray(ids, dtype=np.int64)
