"""The persisted index: FAISS vector segments beside an SQLite database, under
``index/<name>/``.

The vectors live in immutable segment files (``segments``), one per commit until merged,
each keyed by chunk row id; the database (``schema``) holds the manifest (which names the
live segments), documents and chunks, and is the source of truth the keyword engine
(``keyword``, tantivy) follows: a write's chunk ids wait in the database until the writer
has brought them into it after the commit. Reads go through a ``Snapshot``.

Atomic writes: a change opens an SQLite write transaction, deletes and inserts rows, counts
the deleted rows' vectors as tombstones of their segments, writes the new vectors as a new
segment file (temp file, fsync, rename), points the manifest at the new segment list and
commits. A process killed anywhere before the commit leaves the previous manifest, rows and
segments untouched (an orphan file is removed by the next writer); after the commit the new
state is complete. A write never rewrites an old segment, so its cost follows the batch.
Merges (asked for after a write when the policy asks; ``rag.store.merging``) are atomic
steps of their own, built on a thread of their own without the write lock.

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
import errno
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.models import Chunk, Document, DocumentInfo
from rag.settings import IndexSettings
from rag.store.errors import StoreBusy, StoreError, StoreWriteFailed
from rag.store.files import file_sha256, fsync_dir
from rag.store.keyword import KeywordIndex
from rag.store.merging import MERGING_PREFIX, MergeBuild, MergeScheduler
from rag.store.schema import (
    DB_FILE,
    FTS5_VERSIONS,
    INDEX_METADATA,
    PENDING,
    READABLE_VERSIONS,
    SCHEMA,
    SCHEMA_VERSION,
    dump_page_starts,
    migrate,
)
from rag.store.segments import (
    LEGACY_KEYS,
    AnnPolicy,
    Segment,
    dump_segments,
    plan_merge,
    read_segments,
    run_dim,
    segment_file,
    segment_vectors,
    tombstone,
)
from rag.store.snapshot import SQL_BATCH, Snapshot, existing_ids

LOCK_DIR = ".locks"
# faiss >= 1.11 maps an IndexFlatCodes' codes in place; older ones read them (0: no flag).
MMAP_FLAG: int = getattr(faiss, "IO_FLAG_MMAP_IFC", 0)
# A dropped index's folder on its way out (hidden: never an index name).
DROPPED_PREFIX = ".deleting-"
# Pending chunk ids brought into the keyword engine per commit of it (a write's own are
# fewer; a migration's are every chunk, committed in steps so that it resumes).
KEYWORD_BATCH = 20_000
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexHealth:
    """What ``Store.check`` counted: equal vectors, chunk rows and keyword rows."""

    documents: int
    chunks: int
    vectors: int
    keyword_rows: int


@dataclass(frozen=True, slots=True)
class Upsert:
    """A document to write, with its chunks and their vectors (row i of ``vectors``)."""

    document: Document
    chunks: Sequence[Chunk]
    vectors: np.ndarray


def _one_omp_thread() -> None:
    """A search thread's faiss runs single-threaded (an OpenMP setting of the calling
    thread): the pool already runs segments side by side, and a single query's search
    gains nothing from an OpenMP team but its start-up cost (on 2 cores, nested teams
    oversubscribe them)."""
    faiss.omp_set_num_threads(1)


def _open_lock(path: Path) -> int:
    """A descriptor of the lock file ``path`` (made, with its folder, when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


class Store:
    """One named index on disk. Thread-safe: one connection per thread, writes serialised."""

    def __init__(
        self,
        path: Path,
        faiss_index_type: str = "IDMap2,Flat",
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
        if not faiss_index_type.startswith("IDMap2,"):
            raise ValueError("faiss_index_type must start with IDMap2 (lookups by chunk id)")
        self.path = Path(path)
        self.faiss_index_type = faiss_index_type
        self.merge_factor = merge_factor
        self.max_dead = max_dead
        self.filter_exact_max = filter_exact_max
        self.ann = ann or AnnPolicy()
        self._local = threading.local()
        # Writes: one thread at a time here (re-entrant: an ingest's read-compare-write
        # holds it across its commits), and one process at a time through an flock on
        # ``<name>.lock`` beside the index folder, which a rebuild's swap does not replace.
        self._write_lock = threading.RLock()
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._serve_fd: int | None = None
        self._dropped = False
        # Guards the loaded generations and pins, and orders a reader's snapshot against
        # the writer's commit (see the module docstring).
        self._faiss_lock = threading.Lock()
        self._indexes: dict[str, faiss.Index] = {}
        self._pins: dict[str, int] = {}
        # The newest manifest seen: (generation, its segment files), which stay loaded.
        self._newest: tuple[int, frozenset[str]] = (-1, frozenset())
        # Segments written by the transaction in flight (installed for readers at commit).
        self._written: dict[str, faiss.Index] = {}
        # Files the writes in flight must not remove (see ``apply``).
        self._protect: set[str] = set()
        # Whether this process has asked questions (kept loaded: the newest segments).
        self._has_read = False
        self.keywords = KeywordIndex(self.path)
        self.search_threads = search_threads
        self.mmap_vectors = mmap_vectors
        self._search_pool: ThreadPoolExecutor | None = None
        # Merges: one at a time in this process (and one process at a time, by flock); on
        # a thread of their own after writes when ``background_merges``.
        self._merge_lock = threading.Lock()
        # A merge built while a writer of this process held the write lock (an ingest holds
        # it across its commits): committed by that writer's next commit, or by the merge
        # thread once the lock is free.
        self._park_lock = threading.Lock()
        self._parked: MergeBuild | None = None
        self._merge_count = 0
        self._merges = MergeScheduler(
            self._merge_in_background, self.path.name, self._close_connection
        )
        self.background_merges = background_merges

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
            ),
            settings.search_threads,
            settings.mmap_vectors,
            settings.segment_merge_background,
        )

    # ---- connections -------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.path / DB_FILE

    def exists(self) -> bool:
        return self.db_path.is_file()

    def has_vector_files(self) -> bool:
        """Whether vector files are in the folder (an index's remains, with or without its
        database)."""
        return any(self._vector_files())

    def _vector_files(self) -> Iterator[Path]:
        return self.path.glob("vectors.*.faiss")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._dropped:
                raise StoreError(f"the index {self.path.name!r} was deleted")
            if not self.exists():
                raise StoreError(f"no index at {self.path} (run `rag ingest PATH` first)")
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
        return conn

    def create(self) -> None:
        """Create an empty index (idempotent), never over the remains of another one.

        An existing database must be an index; a missing or zero-byte one is created only
        when no vector file is there (otherwise the next commit would delete vectors that
        a restore could still pair with their rows).
        """
        # Under the write lock: a second process creating the same new index waits for
        # the first one's schema instead of finding it half made.
        with self.writing():
            self._create()

    def _create(self) -> None:
        if self._dropped:
            raise StoreError(f"the index {self.path.name!r} was deleted")
        self.path.mkdir(parents=True, exist_ok=True)
        vectors = sorted(p.name for p in self._vector_files())
        empty = not self.db_path.exists() or self.db_path.stat().st_size == 0
        if empty and vectors:
            what = "missing" if not self.db_path.exists() else "empty (0 bytes)"
            raise StoreError(
                f"the index database {self.db_path} is {what} but vector files are there "
                f"({', '.join(vectors[:3])}): restore the database or move the folder away; "
                "it is not recreated over them"
            )
        try:
            conn = sqlite3.connect(self.db_path, isolation_level=None)
            try:
                if not empty:
                    self._check_is_index(conn)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(SCHEMA)
                conn.execute(
                    "INSERT OR IGNORE INTO manifest VALUES ('schema_version', ?)",
                    (SCHEMA_VERSION,),
                )
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the index database {self.db_path} is damaged: {exc}") from None

    def _check_is_index(self, conn: sqlite3.Connection) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if not {"manifest", "documents", "chunks"} <= tables:
            raise StoreError(
                f"{self.db_path} is not an index database (tables: "
                f"{', '.join(sorted(tables)) or 'none'}); it is not overwritten"
            )

    # ---- inter-process locks -------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        """``<index_root>/.locks/<name>.lock``: outside the folder a rebuild replaces, and
        out of the way of anything listing the indexes."""
        return self.path.parent / LOCK_DIR / f"{self.path.name}.lock"

    @property
    def serve_lock_path(self) -> Path:
        return self.path.parent / LOCK_DIR / f"{self.path.name}.serve.lock"

    @property
    def merge_lock_path(self) -> Path:
        return self.path.parent / LOCK_DIR / f"{self.path.name}.merge.lock"

    @contextlib.contextmanager
    def writing(self, blocking: bool = True) -> Iterator[None]:
        """Hold the index's write lock (re-entrant in this process; other processes wait,
        or with ``blocking=False`` get StoreBusy at once)."""
        if not self._write_lock.acquire(blocking=blocking):
            raise StoreBusy(f"another writer is writing {self.path}")
        try:
            if self._lock_depth == 0:
                fd = _open_lock(self.lock_path)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    os.close(fd)
                    raise StoreBusy(f"another process is writing {self.path}") from None
                self._lock_fd = fd
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # closing the descriptor releases the flock
                    self._lock_fd = None
        finally:
            self._write_lock.release()
        if self._parked is not None and self.background_merges:
            self._merges.request()  # the lock is free: the merge thread commits it

    def hold_serving(self) -> None:
        """Mark the index as served by this process until ``close`` (a shared lock): a
        rebuild, which replaces the folder under a server, is refused meanwhile."""
        if self._serve_fd is None:
            fd = _open_lock(self.serve_lock_path)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._serve_fd = fd

    @contextlib.contextmanager
    def replacing(self) -> Iterator[None]:
        """Hold the serve lock exclusively: StoreError when a server holds the index."""
        fd = _open_lock(self.serve_lock_path)
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

    def _pool(self) -> ThreadPoolExecutor | None:
        """The threads a question's dense search spreads its segments over (made on first
        use, shared by every snapshot of this store); None for one thread."""
        if self.search_threads < 2:
            return None
        with self._faiss_lock:
            if self._search_pool is None:
                self._search_pool = ThreadPoolExecutor(
                    self.search_threads,
                    thread_name_prefix="segment-search",
                    initializer=_one_omp_thread,
                )
        return self._search_pool

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
        self._merges.stop(wait=wait_merges)
        parked = self._take_parked()
        if parked is not None:  # built while the lock was held, not committed since
            if wait_merges and not self._dropped:
                with self.writing():
                    self._commit_parked(parked)
            else:
                parked.tmp.unlink(missing_ok=True)
        self.keywords.close()
        self._close_connection()
        if self._serve_fd is not None:
            os.close(self._serve_fd)
            self._serve_fd = None

    def _close_connection(self) -> None:
        """Close this thread's connection (a later use opens another)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextlib.contextmanager
    def read(self) -> Iterator[Snapshot]:
        """A read transaction: one consistent snapshot of rows, FTS and manifest.

        Re-entrant per thread: a nested ``read()`` joins the outer snapshot, so a caller can
        hold one snapshot across retrieval and the document reads that follow it (a question
        answered during an ingest sees the index before it or after it, never a mix). The
        outermost one pins the snapshot's segments, so its ``segments()`` finds them however
        many writes and merges land meanwhile.
        """
        conn = self._conn()
        depth: int = getattr(self._local, "depth", 0)
        pinned: list[str] = []
        if depth == 0:
            with self._faiss_lock:
                self._has_read = True
                conn.execute("BEGIN")
                try:
                    # The first read fixes the snapshot; its segments are pinned and loaded
                    # before any writer here can commit a merge and let them go.
                    manifest = self._manifest(conn)
                    self._check_version(manifest)
                    segments = read_segments(manifest)
                    for segment in segments:
                        self._pins[segment.file] = self._pins.get(segment.file, 0) + 1
                        pinned.append(segment.file)
                        self._load(segment.file, segment.sha256)
                    self._note(manifest, segments)
                except BaseException:
                    self._unpin(pinned)
                    conn.execute("ROLLBACK")
                    raise
            self._local.snapshot = Snapshot(
                conn, self._segments, self.filter_exact_max, self.keywords, self._pool()
            )
        snapshot: Snapshot = self._local.snapshot
        self._local.depth = depth + 1
        try:
            yield snapshot
        finally:
            self._local.depth = depth
            if depth == 0:
                self._local.snapshot = None
                conn.execute("COMMIT")
                if pinned:
                    with self._faiss_lock:
                        self._unpin(pinned)

    # ---- manifest ----------------------------------------------------------------------
    def manifest(self) -> dict[str, str]:
        return self._view().manifest()

    @staticmethod
    def _manifest(conn: sqlite3.Connection) -> dict[str, str]:
        return dict(conn.execute("SELECT key, value FROM manifest").fetchall())

    def check_compatible(self, expected: Mapping[str, str]) -> None:
        """Raise StoreError when the manifest disagrees with ``expected`` on a key it has."""
        have = self.manifest()
        for key, want in expected.items():
            got = have.get(key)
            if got is not None and got != want:
                raise StoreError(
                    f"index {self.path} was built with {key}={got}, but this run uses "
                    f"{key}={want}; rebuild it (`rag ingest PATH --rebuild`) or use another index"
                )

    # ---- vectors -----------------------------------------------------------------------
    def _new_faiss(self, dim: int, n: int = 0) -> faiss.Index:
        """An empty segment index for ``n`` vectors: approximate from ``ann.min_vectors``
        on (it must then be trained), exact below."""
        if self.ann.index_type and n >= self.ann.min_vectors:
            factory = f"IDMap2,{self.ann.index_type}"
        else:
            factory = self.faiss_index_type
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        self.ann.tune(index)
        return index

    def _segments(self, conn: sqlite3.Connection) -> list[tuple[Segment, faiss.Index]]:
        """The segments named by the manifest of ``conn``'s snapshot, loaded (each file
        loaded once, kept while the newest manifest names it or a reader has it pinned)."""
        segments = read_segments(self._manifest(conn))
        with self._faiss_lock:
            loaded = []
            for s in segments:
                index = self._load(s.file, s.sha256)
                if index is None:  # merged away by writers in another process meanwhile
                    raise StoreError(
                        f"the index at {self.path} changed during this read; ask again"
                    )
                loaded.append((s, index))
            return loaded

    def _load(self, name: str, sha256: str | None = None) -> faiss.Index | None:
        """Segment file ``name``, from memory or disk; None when it is gone (lock held).

        A file read from disk must match the checksum its manifest recorded (indexes
        written before checksums were recorded have none): a truncated or corrupt file is
        a StoreError naming it, never a crash in FAISS or a wrong answer."""
        index = self._indexes.get(name)
        if index is None:
            path = self.path / name
            if not path.is_file():
                return None
            if sha256 is not None and file_sha256(path) != sha256:
                raise StoreError(
                    f"the vector file {path} is damaged (its checksum differs from the "
                    "manifest's): restore it, or rebuild the index (rag ingest --rebuild)"
                )
            index = self._read_segment(path)
            self._indexes[name] = index
        return index

    def _read_segment(self, path: Path) -> faiss.Index:
        """A segment file read (mapped with ``mmap_vectors``: segment files are immutable, a
        merge writes a new one and removal unlinks, so a mapping stays valid while a reader
        holds it), its search parameters set."""
        flags = MMAP_FLAG if self.mmap_vectors else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise StoreError(f"the vector file {path} cannot be read: {exc}") from None
        self.ann.tune(index)
        return index

    def _note(self, manifest: Mapping[str, str], segments: Sequence[Segment]) -> None:
        """Remember the newest manifest's segment files: what stays loaded (lock held)."""
        generation = int(manifest.get("generation", "0"))
        if generation >= self._newest[0]:
            self._newest = (generation, frozenset(s.file for s in segments))
        self._evict()

    def _unpin(self, names: Sequence[str]) -> None:
        """A reader of ``names`` left: drop those no one needs from memory (lock held)."""
        for name in names:
            self._pins[name] -= 1
            if not self._pins[name]:
                del self._pins[name]
        self._evict()

    def _evict(self) -> None:
        """Drop loaded segments neither the newest manifest names nor a reader pins; a
        process that has never read (an ingest) keeps only pinned ones, so its memory
        follows what it writes, not the index."""
        for name in list(self._indexes):
            newest = self._has_read and name in self._newest[1]
            if not newest and name not in self._pins:
                del self._indexes[name]

    # ---- writes ------------------------------------------------------------------------
    def apply(
        self,
        upserts: Sequence[Upsert] = (),
        deletes: Sequence[str] = (),
        manifest: Mapping[str, str] | None = None,
        metadata_only: Sequence[Document] = (),
    ) -> None:
        """Replace/insert documents, delete others, in one atomic step; then merge segments
        if the policy asks (each merge its own atomic step).

        A failure on the way (a full disk while writing the vector file or committing)
        leaves the previous state as it was and raises StoreError saying so."""
        with self.writing():
            try:
                self._apply(upserts, deletes, manifest, metadata_only)
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
                self._merge_after_commit()
            finally:
                self._protect = set()

    def _write_vectors(self, index: faiss.Index, path: Path) -> str:
        """Write ``index`` to ``path`` durably; its sha256. (The seam where tests inject a
        full disk.)"""
        try:
            faiss.write_index(index, str(path))
        except RuntimeError as exc:  # FAISS reports a short write (a full disk) this way
            raise OSError(errno.EIO, f"could not write {path.name}: {exc}") from None
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
        return file_sha256(path)

    def _write_segment(self, number: int, ids: np.ndarray, vectors: np.ndarray) -> tuple[Path, str]:
        """A new segment file of ``vectors`` keyed by ``ids``: (path, sha256)."""
        index = self._new_faiss(vectors.shape[1])
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        return self._write_index(number, index)

    def _write_index(self, number: int, index: faiss.Index) -> tuple[Path, str]:
        """``index`` as segment file number ``number``, durably: (path, sha256)."""
        path = self.path / segment_file(number)
        tmp = path.with_suffix(".tmp")
        try:
            digest = self._write_vectors(index, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        fsync_dir(self.path)
        self._written[path.name] = index
        return path, digest

    def _current_segments(
        self, conn: sqlite3.Connection, manifest: Mapping[str, str]
    ) -> list[Segment]:
        """The manifest's segments; an index from before segments counts its one file's
        vectors once (as many as its chunk rows), the first time it is written to."""
        legacy = -1
        if "segments" not in manifest and "faiss_file" in manifest:
            legacy = int(conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
        return read_segments(manifest, legacy)

    def _commit(
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
        keep |= self._protect
        self.remove_orphans(keep=keep)
        with self._faiss_lock:
            conn.execute("COMMIT")
            if self._has_read:
                self._indexes.update(self._written)  # readers reuse what was just written
            self._written.clear()
            self._note({**current, **updates}, segments)

    @contextlib.contextmanager
    def _transaction(
        self,
    ) -> Iterator[tuple[sqlite3.Connection, dict[str, str], list[Segment]]]:
        """One write transaction (BEGIN IMMEDIATE) with its manifest and segments; rolled
        back, and any segment file it wrote removed, unless it was committed."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        self._written.clear()
        try:
            current = self._manifest(conn)
            self._upgrade(conn, current)
            yield conn, current, self._current_segments(conn, current)
        finally:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the transaction may be gone
                    conn.execute("ROLLBACK")
                for name in self._written:
                    (self.path / name).unlink(missing_ok=True)
                self._written.clear()

    def _check_version(self, manifest: Mapping[str, str]) -> str:
        """The index's schema version, when this code reads it (a newer one is refused:
        its rows may mean something this code does not know)."""
        version = manifest.get("schema_version", SCHEMA_VERSION)
        if version not in READABLE_VERSIONS:
            raise StoreError(
                f"index {self.path} has schema version {version}, newer than this code's "
                f"{SCHEMA_VERSION}: upgrade rag-extractive or rebuild the index"
            )
        return version

    def _upgrade(self, conn: sqlite3.Connection, manifest: dict[str, str]) -> None:
        """Bring an older schema to this one inside the write transaction."""
        version = self._check_version(manifest)
        if version != SCHEMA_VERSION:
            log.info(
                "migrating %s from schema version %s to %s (keyword index: tantivy)",
                self.path,
                version,
                SCHEMA_VERSION,
            )
            migrate(conn, version)
            manifest["schema_version"] = SCHEMA_VERSION

    def _apply(
        self,
        upserts: Sequence[Upsert],
        deletes: Sequence[str],
        manifest: Mapping[str, str] | None,
        metadata_only: Sequence[Document],
    ) -> None:
        with self._transaction() as (conn, current, segments):
            # The merges this write sets off keep the files of the state before it, so a
            # reader one write behind in another process still finds its segments.
            self._protect = {s.file for s in segments}
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
                path, digest = self._write_segment(number, ids, np.concatenate(new_vectors))
                segments.append(Segment(path.name, digest, len(ids), 0, int(ids.min())))
                updates["generation"] = str(number)
            if new_ids or len(stale):
                self._commit(conn, current, segments, updates)
            else:
                conn.executemany(
                    "INSERT OR REPLACE INTO manifest VALUES (?, ?)", sorted(updates.items())
                )
                conn.execute("COMMIT")

    # ---- the keyword engine --------------------------------------------------------------
    def _sync_after_commit(self) -> None:
        """Bring a committed write into the keyword engine: a failure (a full disk) leaves
        its ids pending for the next writer or start-up, and is logged, not raised (the
        write itself stands)."""
        try:
            self.sync_keywords()
        except (OSError, ValueError, RuntimeError, sqlite3.Error) as exc:
            log.warning("keyword index of %s left behind (caught up later): %s", self.path, exc)

    def sync_keywords(self) -> int:
        """Apply the pending chunk ids to the keyword engine (see ``rag.store.keyword``),
        ``KEYWORD_BATCH`` per commit of it, each followed by a database commit that clears
        them and counts the engine's version (what readers reload on). The ids applied."""
        done = 0
        with self.writing():
            conn = self._conn()
            if self._manifest(conn).get("schema_version", SCHEMA_VERSION) in FTS5_VERSIONS:
                return 0  # an older schema: its keyword table is in the database
            while True:
                ids = [
                    int(r[0])
                    for r in conn.execute(
                        "SELECT chunk_id FROM keyword_pending ORDER BY chunk_id LIMIT ?",
                        (KEYWORD_BATCH,),
                    )
                ]
                if not ids:
                    return done
                texts = self._chunk_texts(ids)
                self.keywords.update((i, texts.get(i)) for i in ids)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute("DELETE FROM keyword_pending WHERE chunk_id <= ?", (ids[-1],))
                    conn.execute(
                        "INSERT INTO manifest VALUES ('keyword_version', '1') ON CONFLICT(key) "
                        "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                    )
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                done += len(ids)

    def _chunk_texts(self, ids: Sequence[int]) -> dict[int, str]:
        """The texts of those of ``ids`` whose chunk rows exist: their passages' (each a
        slice of its document, read once)."""
        view = self._view()
        texts: dict[int, str] = {}
        for k in range(0, len(ids), SQL_BATCH):
            texts.update((i, p.text) for i, p in view.passages(ids[k : k + SQL_BATCH]).items())
        return texts

    # ---- merges ------------------------------------------------------------------------
    def merge(self, limit: int | None = None) -> int:
        """Merge segments while the policy asks (at most ``limit`` merges), now, in this
        thread: each merge an atomic step of its own, readers of older snapshots
        undisturbed. The number done (0 also when another process is merging)."""
        done = 0
        while (limit is None or done < limit) and self._merge_once():
            done += 1
        return done

    def wait_for_merges(self, timeout: float | None = None) -> bool:
        """Wait until the background merges asked for are done; False on timeout."""
        return self._merges.drain(timeout)

    def _merge_after_commit(self) -> None:
        """Merges after a write has committed: asked of the merge thread, or (without
        background merges) run here; a failure (a full disk) leaves the committed write and
        the segments as they were, and is logged, not raised."""
        if self.background_merges:
            parked = None
            if self._merge_lock.acquire(blocking=False):  # else the merge thread has it
                try:
                    parked = self._take_parked()
                finally:
                    self._merge_lock.release()
            if parked is not None:  # this writer holds the lock the merge thread wanted
                self._commit_parked(parked)
            self._merges.request()
            return
        try:
            # Holding the write lock: another process's merger waiting for it must not be
            # waited for in turn (it merges; this write does not).
            while self._merge_once(wait=False):
                pass
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.warning("segment merge of %s skipped: %s", self.path, exc)

    def _merge_in_background(self) -> bool:
        """One merge on the merge thread; a failure is logged and ends this round."""
        try:
            return self._merge_once()
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.warning("segment merge of %s skipped: %s", self.path, exc)
            return False

    def _merge_once(self, wait: bool = True) -> bool:
        """One merge the policy asks for: planned and built without the write lock,
        committed under it (``rag.store.merging``). False when none is asked for, or when
        another merger holds the merge lock (another process: it merges instead)."""
        if not self._merge_lock.acquire(blocking=wait):
            return False
        try:
            build = self._take_parked()
            if build is None:
                with self._merge_flock() as mine:
                    if not mine:
                        return False
                    build = self._build_merge()
                    if build is None:
                        return False
            # Never wait for the write lock held by another thread here (an ingest holds it
            # across its commits, and would wait for the merges at its end): hand the
            # build over to it instead. Another process's writer is waited for.
            if not self._write_lock.acquire(blocking=False):
                with self._park_lock:
                    self._parked = build
                return False
            try:
                with self.writing():
                    return self._commit_merge(build)
            finally:
                self._write_lock.release()
                build.tmp.unlink(missing_ok=True)
        finally:
            self._merge_lock.release()

    def _commit_parked(self, build: MergeBuild) -> None:
        """Commit a handed-over merge (write lock held); a failure is logged, not raised."""
        try:
            self._commit_merge(build)
        except (OSError, sqlite3.Error, StoreError) as exc:
            log.warning("segment merge of %s skipped: %s", self.path, exc)
        finally:
            build.tmp.unlink(missing_ok=True)

    def _take_parked(self) -> MergeBuild | None:
        with self._park_lock:
            build, self._parked = self._parked, None
        return build

    @contextlib.contextmanager
    def _merge_flock(self) -> Iterator[bool]:
        """The inter-process merge lock, without waiting (False: another process merges);
        held, it also means any merge temp file in the folder is a killed merger's."""
        fd = _open_lock(self.merge_lock_path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            parked = self._parked
            for stale in self.path.glob(f"{MERGING_PREFIX}*"):
                if parked is None or stale != parked.tmp:
                    stale.unlink(missing_ok=True)
            yield True
        finally:
            os.close(fd)

    def _build_merge(self) -> MergeBuild | None:
        """Plan a merge on the newest manifest and build it: the run's live vectors (read in
        one short read transaction) into one index (an approximate one is trained on them),
        written durably to a temp file. None when the policy asks for no merge. The merge
        holds one copy of the run's live vectors beside the index it builds."""
        if self._dropped:
            raise StoreError(f"the index {self.path.name!r} was deleted")
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            manifest = self._manifest(conn)
            if "segments" not in manifest:
                return None  # an index from before segments: its next write converts it
            segments = read_segments(manifest)
            plan = plan_merge(segments, self.merge_factor, self.max_dead)
            if plan is None:
                return None
            run = segments[plan[0] : plan[1]]
            with self._faiss_lock:
                found = [self._load(s.file, s.sha256) for s in run]
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
        merged = self._new_faiss(run_dim(indexes), live)
        if parts:
            all_ids = np.concatenate([ids for ids, _ in parts])
            all_vectors = np.concatenate([v for _, v in parts])
            parts.clear()
            if not merged.is_trained:
                merged.train(all_vectors)
            merged.add_with_ids(all_vectors, all_ids)
            del all_vectors
        self._merge_count += 1
        tmp = self.path / f"{MERGING_PREFIX}{os.getpid()}.{self._merge_count}.tmp"
        digest = ""
        if merged.ntotal:
            try:
                digest = self._write_vectors(merged, tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return MergeBuild(tuple(run), merged, tmp, digest, int(merged.ntotal), run[0].lo)

    def _commit_merge(self, build: MergeBuild) -> bool:
        """Put ``build`` in place of its run, in one write transaction (write lock held):
        the run's vectors deleted since the build read them become the merged segment's
        dead ones. False, and nothing changed, when the run is no longer as it was."""
        if self._dropped:  # deleted, or replaced by a rebuild, while it was built
            raise StoreError(f"the index {self.path.name!r} was deleted")
        with self._transaction() as (conn, current, segments):
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
                self._written[path.name] = (
                    self._read_segment(path) if self.mmap_vectors else build.index
                )
                dead = build.dead_since(segments[i:j])
                merged = [Segment(path.name, build.digest, build.count, dead, build.lo)]
                updates["generation"] = str(number)
            self._commit(conn, current, [*segments[:i], *merged, *segments[j:]], updates)
            return True

    def _insert(self, conn: sqlite3.Connection, u: Upsert) -> np.ndarray:
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

    def remove_orphans(self, keep: set[str] | None = None) -> None:
        """Delete vector files other than ``keep`` (default: the manifest's segments): merged
        segments no manifest names any more and temp files of killed writers. Call it only
        while holding the database's write lock, as ``apply`` does."""
        if keep is None:
            keep = {s.file for s in read_segments(self.manifest())}
        for f in self.path.glob("vectors.*"):
            if f.name not in keep:
                f.unlink(missing_ok=True)

    # ---- health --------------------------------------------------------------------------
    def check(self) -> IndexHealth:
        """Open the index and verify what start-up can afford: the database is an index,
        the manifest's segment files are there with their recorded checksums and sizes, and
        live vectors, chunk rows and keyword rows agree in number. Chunk ids a killed writer
        left pending for the keyword engine are applied first, unless another process is
        writing (it applies them itself; the keyword count is then not compared). StoreError
        with the reason otherwise."""
        if not self.exists():
            raise StoreError(f"no index at {self.path} (run `rag ingest PATH` first)")
        try:
            try:
                with self.writing(blocking=False):
                    self.sync_keywords()
                    return self._check(settled=True)
            except StoreBusy:
                return self._check(settled=False)
        except StoreError:
            raise  # already says what is wrong (it is a RuntimeError too)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the index database {self.db_path} is damaged: {exc}") from None
        except (OSError, ValueError, RuntimeError) as exc:
            raise StoreError(f"the keyword index of {self.path} cannot be read: {exc}") from None

    def _check(self, settled: bool) -> IndexHealth:
        try:
            with self.read() as snap:
                self._check_is_index(self._conn())
                manifest = snap.manifest()
                self._check_version(manifest)
                docs, chunks = snap.counts()
                keyword = snap.keyword_rows()
                settled = settled and not snap.keyword_pending()
                for segment in read_segments(manifest):
                    if not (self.path / segment.file).is_file():
                        raise StoreError(f"the vector file {self.path / segment.file} is missing")
                loaded = snap.segments()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the index database {self.db_path} is damaged: {exc}") from None
        for segment, index in loaded:
            if segment.count >= 0 and index.ntotal != segment.count:
                raise StoreError(
                    f"the vector file {self.path / segment.file} holds {index.ntotal} vectors, "
                    f"its manifest says {segment.count}"
                )
        vectors = sum(int(index.ntotal) - segment.dead for segment, index in loaded)
        if vectors != chunks or (settled and keyword != chunks):
            raise StoreError(
                f"the index at {self.path} is inconsistent: {vectors} vectors, {chunks} chunk "
                f"rows, {keyword} keyword rows"
            )
        return IndexHealth(int(docs), int(chunks), vectors, int(keyword))

    # ---- reads ------------------------------------------------------------------------
    def _view(self) -> Snapshot:
        """The thread's connection as a snapshot (outside a ``read()``: each query on its
        own; inside one: that read's snapshot)."""
        return Snapshot(
            self._conn(), self._segments, self.filter_exact_max, self.keywords, self._pool()
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
