"""The persisted index: FAISS vectors beside an SQLite database, under ``index/<name>/``.

FAISS holds one vector per chunk, keyed by the chunk's row id; the database (``schema``)
holds the manifest, documents, chunks and the keyword table. Reads go through a
``Snapshot``.

Atomic writes: a change opens an SQLite write transaction, inserts the new rows, writes the
new FAISS file under a fresh generation name (temp file, fsync, rename), points the manifest
at it and commits. A process killed anywhere before the commit leaves the previous manifest,
rows and FAISS file untouched (the orphan file is removed by the next writer); after the
commit the new state is complete. Readers take the FAISS generation named by the manifest
inside their own read transaction, so they never pair new rows with old vectors.

Generations and readers: a read transaction pins and loads the generation its snapshot
names (held in memory until the last reader of it leaves; only the newest and pinned ones
stay loaded), and the writer commits and installs a new generation under the same lock, so
a reader in this process never finds its generation gone. On disk the writer keeps the
generation it replaced beside the new one, for a reader whose snapshot is one commit behind
when it loads (writes from another process, e.g. `rag ingest` beside a server); two commits
behind, it gets a StoreError ("ask again") instead of a torn read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.models import Chunk, Document, DocumentInfo
from rag.store.errors import StoreBusy, StoreError, StoreWriteFailed
from rag.store.files import file_sha256, fsync_dir
from rag.store.schema import DB_FILE, SCHEMA, SCHEMA_VERSION
from rag.store.snapshot import Snapshot

LOCK_DIR = ".locks"


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


class Store:
    """One named index on disk. Thread-safe: one connection per thread, writes serialised."""

    def __init__(self, path: Path, faiss_index_type: str = "IDMap2,Flat") -> None:
        self.path = Path(path)
        self.faiss_index_type = faiss_index_type
        self._local = threading.local()
        # Writes: one thread at a time here (re-entrant: an ingest's read-compare-write
        # holds it across its commits), and one process at a time through an flock on
        # ``<name>.lock`` beside the index folder, which a rebuild's swap does not replace.
        self._write_lock = threading.RLock()
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._serve_fd: int | None = None
        # Guards the loaded generations and pins, and orders a reader's snapshot against
        # the writer's commit (see the module docstring).
        self._faiss_lock = threading.Lock()
        self._indexes: dict[str, faiss.Index] = {}
        self._pins: dict[str, int] = {}

    # ---- connections -------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.path / DB_FILE

    def exists(self) -> bool:
        return self.db_path.is_file()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
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
        self.path.mkdir(parents=True, exist_ok=True)
        vectors = sorted(p.name for p in self.path.glob("vectors.*.faiss"))
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
        if not {"manifest", "documents", "chunks", "chunks_fts"} <= tables:
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

    @contextlib.contextmanager
    def writing(self, blocking: bool = True) -> Iterator[None]:
        """Hold the index's write lock (re-entrant in this process; other processes wait,
        or with ``blocking=False`` get StoreBusy at once)."""
        if not self._write_lock.acquire(blocking=blocking):
            raise StoreBusy(f"another writer is writing {self.path}")
        try:
            if self._lock_depth == 0:
                self.lock_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
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

    def hold_serving(self) -> None:
        """Mark the index as served by this process until ``close`` (a shared lock): a
        rebuild, which replaces the folder under a server, is refused meanwhile."""
        if self._serve_fd is None:
            self.serve_lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.serve_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._serve_fd = fd

    @contextlib.contextmanager
    def replacing(self) -> Iterator[None]:
        """Hold the serve lock exclusively: StoreError when a server holds the index."""
        self.serve_lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.serve_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
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

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._serve_fd is not None:
            os.close(self._serve_fd)
            self._serve_fd = None

    @contextlib.contextmanager
    def read(self) -> Iterator[Snapshot]:
        """A read transaction: one consistent snapshot of rows, FTS and manifest.

        Re-entrant per thread: a nested ``read()`` joins the outer snapshot, so a caller can
        hold one snapshot across retrieval and the document reads that follow it (a question
        answered during an ingest sees the index before it or after it, never a mix). The
        outermost one pins the snapshot's FAISS generation, so its ``vectors()`` finds it
        however many writes land meanwhile.
        """
        conn = self._conn()
        depth: int = getattr(self._local, "depth", 0)
        pinned: str | None = None
        if depth == 0:
            with self._faiss_lock:
                conn.execute("BEGIN")
                try:
                    # The first read fixes the snapshot; its generation is pinned and loaded
                    # before any writer here can commit the next one and let this one go.
                    manifest = self._manifest(conn)
                    pinned = manifest.get("faiss_file")
                    if pinned is not None:
                        self._pins[pinned] = self._pins.get(pinned, 0) + 1
                        self._load(pinned, manifest.get("faiss_sha256"))
                except BaseException:
                    if pinned is not None:
                        self._unpin(pinned)
                    conn.execute("ROLLBACK")
                    raise
            self._local.snapshot = Snapshot(conn, self._vectors)
        snapshot: Snapshot = self._local.snapshot
        self._local.depth = depth + 1
        try:
            yield snapshot
        finally:
            self._local.depth = depth
            if depth == 0:
                self._local.snapshot = None
                conn.execute("COMMIT")
                if pinned is not None:
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
    def _new_faiss(self, dim: int) -> faiss.Index:
        return faiss.index_factory(dim, self.faiss_index_type, faiss.METRIC_INNER_PRODUCT)

    def _vectors(self, conn: sqlite3.Connection) -> faiss.Index | None:
        """The FAISS index named by the manifest of ``conn``'s snapshot (loaded once, kept
        while it is the newest loaded generation or a reader has it pinned)."""
        manifest = self._manifest(conn)
        name = manifest.get("faiss_file")
        if name is None:
            return None
        with self._faiss_lock:
            index = self._load(name, manifest.get("faiss_sha256"))
            if index is None:  # deleted by writers in another process, two commits ahead
                raise StoreError(f"the index at {self.path} changed during this read; ask again")
            return index

    def _load(self, name: str, sha256: str | None = None) -> faiss.Index | None:
        """Generation ``name``, from memory or disk; None when its file is gone (lock held).

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
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as exc:
                raise StoreError(f"the vector file {path} cannot be read: {exc}") from None
            self._indexes[name] = index
            self._evict()
        return index

    def _unpin(self, name: str) -> None:
        """A reader of ``name`` left: drop it from memory if no one needs it (lock held)."""
        self._pins[name] -= 1
        if not self._pins[name]:
            del self._pins[name]
        self._evict()

    @staticmethod
    def _generation(name: str) -> int:
        """The number in ``vectors.<n>.faiss`` (-1 for any other name)."""
        parts = name.split(".")
        return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else -1

    def _evict(self) -> None:
        """Drop loaded generations that are neither the newest nor pinned (lock held)."""
        newest = max(self._indexes, key=self._generation, default=None)
        for name in list(self._indexes):
            if name != newest and name not in self._pins:
                del self._indexes[name]

    # ---- writes ------------------------------------------------------------------------
    def apply(
        self,
        upserts: Sequence[Upsert] = (),
        deletes: Sequence[str] = (),
        manifest: Mapping[str, str] | None = None,
        metadata_only: Sequence[Document] = (),
    ) -> None:
        """Replace/insert documents, delete others, in one atomic step.

        A failure on the way (a full disk while writing the vector file or committing)
        leaves the previous state as it was and raises StoreError saying so."""
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

    def _apply(
        self,
        upserts: Sequence[Upsert],
        deletes: Sequence[str],
        manifest: Mapping[str, str] | None,
        metadata_only: Sequence[Document],
    ) -> None:
        with self.writing():
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            committed = False
            new_file: Path | None = None
            try:
                current = self._manifest(conn)
                index = self._vectors(conn)
                dim = next((u.vectors.shape[1] for u in upserts if len(u.chunks)), None)
                if index is None and dim is not None:
                    index = self._new_faiss(dim)
                elif index is not None:
                    index = faiss.clone_index(index)
                replaced = [u.document.id for u in upserts] + list(deletes)
                stale = self._chunk_ids(conn, replaced)
                if index is not None and len(stale):
                    index.remove_ids(faiss.IDSelectorBatch(stale))
                pairs = [(d,) for d in replaced]
                conn.executemany("DELETE FROM chunks WHERE doc_id = ?", pairs)
                conn.executemany("DELETE FROM documents WHERE id = ?", pairs)
                for u in upserts:
                    ids = self._insert(conn, u)
                    if index is not None and len(ids):
                        index.add_with_ids(np.ascontiguousarray(u.vectors, dtype=np.float32), ids)
                for d in metadata_only:
                    conn.execute(
                        "UPDATE documents SET title = ?, metadata = ? WHERE id = ?",
                        (d.title, json.dumps(d.metadata, sort_keys=True), d.id),
                    )
                updates = dict(manifest or {})
                if index is not None and (len(stale) or any(len(u.chunks) for u in upserts)):
                    generation = int(current.get("generation", "0")) + 1
                    new_file = self.path / f"vectors.{generation}.faiss"
                    tmp = new_file.with_suffix(".tmp")
                    try:
                        digest = self._write_vectors(index, tmp)
                    except BaseException:
                        tmp.unlink(missing_ok=True)
                        raise
                    os.replace(tmp, new_file)
                    fsync_dir(self.path)
                    updates["generation"] = str(generation)
                    updates["faiss_file"] = new_file.name
                    updates["faiss_sha256"] = digest
                conn.executemany(
                    "INSERT OR REPLACE INTO manifest VALUES (?, ?)", sorted(updates.items())
                )
                if new_file is not None:
                    # Still holding the database's write lock, so no other writer has a
                    # temp file in flight: keep the new and the replaced generation only.
                    self.remove_orphans(keep={new_file.name, current.get("faiss_file", "")})
                with self._faiss_lock:
                    conn.execute("COMMIT")
                    committed = True
                    if new_file is not None and index is not None:  # readers reuse it
                        self._indexes[new_file.name] = index
                        self._evict()
            finally:
                if not committed:
                    with contextlib.suppress(sqlite3.Error):  # the transaction may be gone
                        conn.execute("ROLLBACK")
                    if new_file is not None:
                        new_file.unlink(missing_ok=True)

    def _insert(self, conn: sqlite3.Connection, u: Upsert) -> np.ndarray:
        d = u.document
        if len(u.chunks) != len(u.vectors):
            raise ValueError(f"{d.id}: {len(u.chunks)} chunks but {len(u.vectors)} vectors")
        conn.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)",
            (
                d.id,
                d.title,
                d.sha256,
                json.dumps(d.metadata, sort_keys=True),
                d.text,
                len(u.chunks),
            ),
        )
        ids = []
        for c in u.chunks:
            cur = conn.execute(
                "INSERT INTO chunks (doc_id, start, end, n_tokens, text) VALUES (?, ?, ?, ?, ?)",
                (d.id, c.start, c.end, c.n_tokens, c.text),
            )
            ids.append(cur.lastrowid)
        return np.asarray(ids, dtype=np.int64)

    @staticmethod
    def _chunk_ids(conn: sqlite3.Connection, doc_ids: Sequence[str]) -> np.ndarray:
        ids: list[int] = []
        for d in doc_ids:
            ids += [r[0] for r in conn.execute("SELECT id FROM chunks WHERE doc_id = ?", (d,))]
        return np.asarray(ids, dtype=np.int64)

    def remove_orphans(self, keep: set[str] | None = None) -> None:
        """Delete FAISS files other than ``keep`` (default: the manifest's generation and
        the one before it): older generations and temp files of killed writers. Call it
        only while holding the database's write lock, as ``apply`` does."""
        if keep is None:
            current = self.manifest().get("faiss_file", "")
            keep = {current, f"vectors.{self._generation(current) - 1}.faiss"}
        for f in self.path.glob("vectors.*"):
            if f.name not in keep:
                f.unlink(missing_ok=True)

    # ---- health --------------------------------------------------------------------------
    def check(self) -> IndexHealth:
        """Open the index and verify what start-up can afford: the database is an index,
        the manifest's vector file is there with its recorded checksum, and vectors, chunk
        rows and keyword rows agree in number. StoreError with the reason otherwise."""
        if not self.exists():
            raise StoreError(f"no index at {self.path} (run `rag ingest PATH` first)")
        try:
            with self.read() as snap:
                self._check_is_index(self._conn())
                manifest = snap.manifest()
                docs, chunks = snap.counts()
                fts = snap.keyword_rows()
                name = manifest.get("faiss_file")
                if name is not None and not (self.path / name).is_file():
                    raise StoreError(f"the vector file {self.path / name} is missing")
                index = snap.vectors()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the index database {self.db_path} is damaged: {exc}") from None
        vectors = 0 if index is None else int(index.ntotal)
        if not vectors == chunks == fts:
            raise StoreError(
                f"the index at {self.path} is inconsistent: {vectors} vectors, {chunks} chunk "
                f"rows, {fts} keyword rows"
            )
        return IndexHealth(int(docs), int(chunks), vectors, int(fts))

    # ---- reads ------------------------------------------------------------------------
    def _view(self) -> Snapshot:
        """The thread's connection as a snapshot (outside a ``read()``: each query on its
        own; inside one: that read's snapshot)."""
        return Snapshot(self._conn(), self._vectors)

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
