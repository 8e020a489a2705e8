"""The persisted index: FAISS vector segments beside an SQLite database, under
``index/<name>/``; ``Store`` is its face.

The vectors live in immutable segment files (``segments``), one per commit until merged,
each keyed by chunk row id; the database (``schema``) holds the manifest (which names the
live segments), documents and chunks, and is the source of truth the keyword engine
(``keyword``, tantivy) follows: a write's chunk ids wait in the database until the writer
has brought them into it after the commit. Reads go through a ``Snapshot``.

``Store`` composes one collaborator per idea: ``locks`` (who writes, serves, merges),
``writes`` (a change as one atomic transaction: rows, tombstones, a new segment),
``cache`` (segments loaded once and pinned by readers), ``merging`` (merges built off the
writer's path and committed atomically), ``keyword`` (the engine kept in step) and
``health`` (the start-up check).

Segments and readers: a read transaction pins and loads the segments its snapshot names
(held in memory until the last reader of them leaves; only the newest manifest's and pinned
ones stay loaded), and the writer commits under the same lock, so a reader in this process
never finds a segment gone. On disk the writer keeps the segments of the manifest it
replaced beside the new one's, for a reader whose snapshot is one commit behind when it
loads (writes from another process, e.g. `rag ingest` beside a server); a merge two commits
ahead of it gives it a StoreError ("ask again") instead of a torn read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import faiss

from rag.models import Document, DocumentInfo
from rag.settings import IndexSettings
from rag.store import health
from rag.store.cache import SegmentCache
from rag.store.connections import Connections
from rag.store.errors import StoreError, StoreWriteFailed
from rag.store.files import fsync_dir
from rag.store.health import IndexHealth
from rag.store.keyword import KeywordIndex, sync_pending
from rag.store.locks import IndexLocks
from rag.store.merging import Merger
from rag.store.schema import (
    DB_FILE,
    FTS5_VERSIONS,
    SCHEMA_VERSION,
    create_database,
    manifest_of,
)
from rag.store.segments import (
    ID_MAPS,
    AnnPolicy,
    SearchThreads,
    Segment,
    read_segments,
    same_storage,
)
from rag.store.snapshot import Snapshot
from rag.store.writes import Upsert, Writer

# A dropped index's folder on its way out (hidden: never an index name).
DROPPED_PREFIX = ".deleting-"
log = logging.getLogger(__name__)

__all__ = ["DROPPED_PREFIX", "IndexHealth", "Store", "Upsert"]


class Store:
    """One named index on disk. Thread-safe: one connection per thread, writes serialised."""

    def __init__(
        self,
        path: Path,
        faiss_index_type: str = "IDMap,Flat",
        merge_factor: int = 10,
        max_dead: float = 0.3,
        filter_exact_max: int = 20_000,
        ann: AnnPolicy | None = None,
        search_threads: int = 1,
        mmap_vectors: bool = True,
        background_merges: bool = False,
    ) -> None:
        if merge_factor < 2 or not 0.0 < max_dead <= 1.0:
            raise ValueError("merge_factor must be >= 2 and max_dead in (0, 1]")
        if not faiss_index_type.startswith(ID_MAPS):
            raise ValueError("faiss_index_type must start with IDMap (segments keyed by chunk id)")
        self.path = Path(path)
        self.filter_exact_max = filter_exact_max
        self.search_threads = search_threads
        self._local = threading.local()
        self._dropped = False
        self._connections = Connections(self.db_path, lambda: self._dropped)
        self._conn = self._connections.get
        self._pool = SearchThreads(search_threads)
        self.keywords = KeywordIndex(self.path)
        self.locks = IndexLocks(self.path)
        self.cache = SegmentCache(self.path, ann or AnnPolicy(), mmap_vectors)
        self.writer = Writer(self.path, self.cache, self._conn, faiss_index_type, self.cache.ann)
        self.merger = Merger(
            self.locks,
            self.cache,
            self.writer,
            merge_factor,
            max_dead,
            background_merges,
            lambda: self._dropped,
            self._connections.close,
        )

    @classmethod
    def from_settings(cls, settings: IndexSettings, path: Path | None = None) -> Store:
        """The store of ``settings.index_dir`` (or ``path``) with its vector settings."""
        return cls(
            settings.index_dir if path is None else path,
            settings.faiss_index_type,
            settings.segment_merge_factor,
            settings.segment_max_dead,
            settings.filter_exact_max,
            AnnPolicy(
                settings.ann_index_type,
                settings.ann_min_vectors,
                settings.ann_ef_search,
                settings.ann_nprobe,
                settings.ann_ef_construction,
                settings.ann_small_vectors,
                settings.ann_small_ef_search,
            ),
            settings.search_threads,
            settings.mmap_vectors,
            settings.segment_merge_background,
        )

    @property
    def faiss_index_type(self) -> str:
        """The factory string of exact (small) segments, which the manifest records."""
        return self.writer.faiss_index_type

    # ---- connections -------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.path / DB_FILE

    def exists(self) -> bool:
        return self.db_path.is_file()

    def has_vector_files(self) -> bool:
        """Whether vector files are in the folder (an index's remains, with or without its
        database)."""
        return any(self.path.glob("vectors.*.faiss"))

    def create(self) -> None:
        """Create an empty index (idempotent), never over the remains of another one
        (``rag.store.schema.create_database``)."""
        # Under the write lock: a second process creating the same new index waits for
        # the first one's schema instead of finding it half made.
        with self.writing():
            if self._dropped:
                raise StoreError(f"the index {self.path.name!r} was deleted")
            create_database(self.path)

    # ---- locks -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, blocking: bool = True) -> Iterator[None]:
        """Hold the index's write lock (re-entrant in this process; other processes wait,
        or with ``blocking=False`` get StoreBusy at once)."""
        try:
            with self.locks.writing(blocking):
                yield
        finally:  # a failed write too: a merge handed over meanwhile is not left behind
            try:
                self.merger.write_lock_released()
            except RuntimeError as exc:  # no new thread at interpreter exit: not the error
                log.warning("merges of %s not asked for: %s", self.path, exc)

    def hold_serving(self) -> None:
        """Mark the index as served by this process until ``close`` (a shared lock): a
        rebuild, which replaces the folder under a server, is refused meanwhile."""
        self.locks.hold_serving()

    def replacing(self) -> contextlib.AbstractContextManager[None]:
        """Hold the serve lock exclusively: StoreError when a server holds the index."""
        return self.locks.replacing()

    # ---- lifecycle -------------------------------------------------------------------------
    def drop(self) -> None:
        """Delete this index for good (a collection deleted): once no other process serves
        it and no writer holds it (a writer in this process or another is waited for), the
        folder is renamed to a hidden name (``DROPPED_PREFIX``: never an index name, and
        removed by whoever finds it) and removed; every later use of this store raises
        StoreError instead of creating the index again. StoreError while another process
        serves it."""
        self.close()  # this process's own serve lock
        with self.replacing(), self.writing():
            self._dropped = True
            self.close(wait_merges=False)  # a merge waiting for this lock fails: dropped
            if self.path.exists():
                trash = self.path.with_name(f"{DROPPED_PREFIX}{self.path.name}-{os.getpid()}")
                shutil.rmtree(trash, ignore_errors=True)
                self.path.rename(trash)
                fsync_dir(self.path.parent)
                shutil.rmtree(trash, ignore_errors=True)

    def retire(self) -> None:
        """This folder is being replaced (a rebuild swaps another in): a merge of it still
        in flight is dropped, never committed into what the path holds next."""
        self._dropped = True

    def close(self, wait_merges: bool = True) -> None:
        """Close this thread's connection and the serve lock; first let the merges asked
        for finish (``wait_merges``; a server stopping passes False: a merge cut short by
        the exit is atomic, and the next writer asks for it again)."""
        self.merger.close(wait=wait_merges)
        self.keywords.close()
        self._connections.close()
        self.locks.release_serving()

    # ---- reads -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[Snapshot]:
        """A read transaction: one consistent snapshot of rows, FTS and manifest.

        Re-entrant per thread: a nested ``read()`` joins the outer snapshot, so a caller can
        hold one snapshot across retrieval and the document reads that follow it (a question
        answered during an ingest sees the index before it or after it, never a mix). The
        outermost one pins the snapshot's segments, so its ``segments()`` finds them however
        many writes and merges land meanwhile.
        """
        depth: int = getattr(self._local, "depth", 0)
        if depth:  # joins the thread's outer snapshot
            self._local.depth = depth + 1
            try:
                yield self._local.snapshot
            finally:
                self._local.depth = depth
            return
        with self.cache.pinned(self._conn(), self.path):
            self._local.snapshot = self._view()
            self._local.depth = 1
            try:
                yield self._local.snapshot
            finally:
                self._local.depth = 0
                self._local.snapshot = None

    def _segments(self, conn: sqlite3.Connection) -> list[tuple[Segment, faiss.Index]]:
        """The segments named by the manifest of ``conn``'s snapshot, loaded."""
        return self.cache.loaded_for(read_segments(manifest_of(conn)))

    def _view(self) -> Snapshot:
        """The thread's connection as a snapshot (outside a ``read()``: each query on its
        own; inside one: that read's snapshot)."""
        return Snapshot(
            self._conn(), self._segments, self.filter_exact_max, self.keywords, self._pool
        )

    def manifest(self) -> dict[str, str]:
        return self._view().manifest()

    def check_compatible(self, expected: Mapping[str, str]) -> None:
        """Raise StoreError when the manifest disagrees with ``expected`` on a key it has."""
        have = self.manifest()
        for key, want in expected.items():
            got = have.get(key)
            if key == "faiss_index_type" and got is not None and same_storage(got, want):
                continue
            if got is not None and got != want:
                raise StoreError(
                    f"index {self.path} was built with {key}={got}, but this run uses "
                    f"{key}={want}; rebuild it (`rag ingest PATH --rebuild`) or use another index"
                )

    def document_infos(self, doc_ids: Sequence[str]) -> dict[str, DocumentInfo]:
        """The stored identities of ``doc_ids``, by id, for incremental ingest."""
        return self._view().document_infos(doc_ids)

    def document(self, doc_id: str) -> Document | None:
        return self._view().document(doc_id)

    def document_info(self, doc_id: str) -> DocumentInfo | None:
        return self._view().document_info(doc_id)

    def documents(self, limit: int = 100, offset: int = 0) -> list[DocumentInfo]:
        return self._view().documents(limit, offset)

    def is_empty(self) -> bool:
        """True when no document is stored (cheap, unlike counting)."""
        return self._view().is_empty()

    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""
        return self._view().counts()

    # ---- writes ----------------------------------------------------------------------------
    def apply(
        self,
        upserts: Sequence[Upsert] = (),
        deletes: Sequence[str] = (),
        manifest: Mapping[str, str] | None = None,
        metadata_only: Sequence[Document] = (),
    ) -> None:
        """Replace/insert documents, delete others, in one atomic step (``rag.store.writes``);
        then bring it into the keyword engine and merge segments if the policy asks (each
        merge its own atomic step).

        A failure on the way (a full disk while writing the vector file or committing)
        leaves the previous state as it was and raises StoreError saying so."""
        with self.writing():
            try:
                self.writer.apply(upserts, deletes, manifest, metadata_only)
            except OSError as exc:
                raise StoreWriteFailed(
                    f"could not write the index at {self.path} ({exc.strerror or exc}); "
                    "nothing was changed"
                ) from None
            except sqlite3.OperationalError as exc:
                raise StoreWriteFailed(
                    f"could not commit to the index at {self.path} ({exc}); nothing was changed"
                ) from None
            else:
                self._sync_after_commit()
                self.merger.after_commit()
            finally:
                self.writer.protect = set()

    def _sync_after_commit(self) -> None:
        """Bring a committed write into the keyword engine: a failure (a full disk) leaves
        its ids pending for the next writer or start-up, and is logged, not raised (the
        write itself stands)."""
        try:
            self.sync_keywords()
        except (OSError, ValueError, RuntimeError, sqlite3.Error) as exc:
            log.warning("keyword index of %s left behind (caught up later): %s", self.path, exc)

    def sync_keywords(self) -> int:
        """Apply the chunk ids pending for the keyword engine (``rag.store.keyword``); the
        ids applied."""
        with self.writing():
            conn = self._conn()
            if manifest_of(conn).get("schema_version", SCHEMA_VERSION) in FTS5_VERSIONS:
                return 0  # an older schema: its keyword table is in the database
            return sync_pending(conn, self.keywords, self._view().chunk_texts)

    # ---- merges and health -----------------------------------------------------------------
    def merge(self, limit: int | None = None) -> int:
        """Merge segments while the policy asks (at most ``limit`` merges), now, in this
        thread: each merge an atomic step of its own, readers of older snapshots
        undisturbed. The number done (0 also when another process is merging)."""
        return self.merger.merge(limit)

    def wait_for_merges(self, timeout: float | None = None) -> bool:
        """Wait until the background merges asked for are done; False on timeout."""
        return self.merger.wait(timeout)

    def check(self) -> IndexHealth:
        """Open the index and verify what start-up can afford (``rag.store.health``)."""
        return health.check(self)
