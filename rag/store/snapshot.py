"""One consistent view of an index: the rows, the keyword table and the vectors of one
moment, with the queries retrieval and the readers need.

``Store.read()`` hands one out inside a read transaction (a question answered during an
ingest sees the index before it or after it, never a mix); the store's own convenience
reads use one over the plain connection. Callers never see SQL or a connection: this is the
face a segmented store implements as well.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import faiss
import numpy as np

from rag.models import Document, DocumentInfo, Hit, Passage
from rag.store.files import load_metadata
from rag.store.filters import SQL_BATCH, Filters, existing_ids
from rag.store.keyword import KeywordIndex
from rag.store.schema import (
    FTS5_VERSIONS,
    SCHEMA_VERSION,
    UNPAGED_VERSIONS,
    load_page_starts,
)
from rag.store.segments import (
    PARALLEL_MIN_VECTORS,
    SearchThreads,
    Segment,
    exact_search,
    search_segments,
)


class Snapshot:
    """Queries over one snapshot of an index (see the module docstring)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        segments: Callable[[sqlite3.Connection], list[tuple[Segment, faiss.Index]]],
        exact_max: int = 20_000,
        keywords: KeywordIndex | None = None,
        pool: SearchThreads | None = None,
    ) -> None:
        self._conn = conn
        self._pool = pool
        self._segments = segments
        self._filters = Filters(conn, exact_max, self._indexed)
        self._keywords = keywords
        self._version: str | None = None
        self._documents: dict[str, Document] = {}

    # ---- what the index holds ------------------------------------------------------------
    def table_names(self) -> set[str]:
        """The database's tables (an index has ``manifest``, ``documents``, ``chunks``)."""
        return {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}

    def manifest(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM manifest").fetchall())

    def is_empty(self) -> bool:
        """True when no document is stored (cheap, unlike counting)."""
        row = self._conn.execute("SELECT EXISTS (SELECT 1 FROM documents)").fetchone()
        return not row[0]

    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""
        docs = self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self._conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks)

    def keyword_rows(self) -> int:
        """Chunks the keyword index holds (one per chunk when the index is consistent and
        nothing is pending)."""
        if self.schema_version() in FTS5_VERSIONS:
            row = self._conn.execute("SELECT COUNT(*) FROM chunks_fts_docsize").fetchone()
            return int(row[0])
        return self._engine().count()

    def keyword_pending(self) -> int:
        """Chunk ids written but not yet in the keyword engine (0 on older schemas)."""
        if self.schema_version() in FTS5_VERSIONS:
            return 0
        return int(self._conn.execute("SELECT COUNT(*) FROM keyword_pending").fetchone()[0])

    def schema_version(self) -> str:
        """The snapshot's schema version (read once)."""
        if self._version is None:
            row = self._conn.execute(
                "SELECT value FROM manifest WHERE key = 'schema_version'"
            ).fetchone()
            self._version = SCHEMA_VERSION if row is None else str(row[0])
        return self._version

    def _engine(self) -> KeywordIndex:
        """The keyword engine, showing at least what this snapshot's manifest says it took
        in (hits are still checked against the snapshot's rows)."""
        if self._keywords is None:
            raise RuntimeError("this snapshot has no keyword engine")
        row = self._conn.execute(
            "SELECT value FROM manifest WHERE key = 'keyword_version'"
        ).fetchone()
        self._keywords.refresh("0" if row is None else str(row[0]))
        return self._keywords

    def segments(self) -> list[tuple[Segment, faiss.Index]]:
        """The vector segments of this snapshot, loaded (empty before the first vector)."""
        return self._segments(self._conn)

    # ---- documents -----------------------------------------------------------------------
    def document(self, doc_id: str) -> Document | None:
        """The stored document ``doc_id``; read once per snapshot (passages and the
        readers' windows slice the same texts)."""
        if doc_id in self._documents:
            return self._documents[doc_id]
        row = self._conn.execute(
            f"SELECT id, text, title, metadata, {self._pages_column()} FROM documents WHERE id = ?",
            (doc_id,),
        ).fetchone()
        doc = (
            None
            if row is None
            else Document(row[0], row[1], row[2], load_metadata(row[3]), load_page_starts(row[4]))
        )
        if doc is not None:
            self._documents[doc_id] = doc
        return doc

    def documents_by_id(self, doc_ids: Sequence[str]) -> dict[str, Document]:
        """The stored documents among ``doc_ids`` (missing ones left out)."""
        out: dict[str, Document] = {}
        for doc_id in dict.fromkeys(doc_ids):
            doc = self.document(doc_id)
            if doc is not None:
                out[doc_id] = doc
        return out

    def _pages_column(self) -> str:
        """The page map's column, or ``''`` for a schema from before it (read unpaged)."""
        return "''" if self.schema_version() in UNPAGED_VERSIONS else "page_starts"

    def _info_columns(self) -> str:
        return f"id, title, sha256, metadata, n_chunks, {self._pages_column()}"

    def document_info(self, doc_id: str) -> DocumentInfo | None:
        row = self._conn.execute(
            f"SELECT {self._info_columns()} FROM documents WHERE id = ?",
            (doc_id,),
        ).fetchone()
        return None if row is None else _info(row)

    def documents(self, limit: int = 100, offset: int = 0) -> list[DocumentInfo]:
        rows = self._conn.execute(
            f"SELECT {self._info_columns()} FROM documents ORDER BY id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_info(r) for r in rows]

    def document_infos(self, doc_ids: Sequence[str]) -> dict[str, DocumentInfo]:
        """The identities of those of ``doc_ids`` that are stored, by id: what incremental
        ingest compares with (a lookup per id, so its cost follows the batch, not the index)."""
        out: dict[str, DocumentInfo] = {}
        ids = list(dict.fromkeys(doc_ids))
        for i in range(0, len(ids), SQL_BATCH):
            part = ids[i : i + SQL_BATCH]
            rows = self._conn.execute(
                f"SELECT {self._info_columns()} FROM documents "
                f"WHERE id IN ({','.join('?' * len(part))})",
                part,
            )
            out.update((r[0], _info(r)) for r in rows)
        return out

    # ---- retrieval -----------------------------------------------------------------------
    def chunk_texts(self, ids: Sequence[int]) -> dict[int, str]:
        """The texts of those of ``ids`` whose chunk rows exist (each its document's slice,
        every document read once), however many ids."""
        texts: dict[int, str] = {}
        for k in range(0, len(ids), SQL_BATCH):
            texts.update((i, p.text) for i, p in self.passages(ids[k : k + SQL_BATCH]).items())
        return texts

    def passages(self, ids: Sequence[int]) -> dict[int, Passage]:
        """The chunks ``ids`` as passages (scores unset), by id; deleted ones left out. A
        chunk's text is its document's slice (stored once, in the document)."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(
            "SELECT c.id, c.doc_id, d.title, c.start, c.end FROM chunks c "
            f"JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
            [int(i) for i in ids],
        ).fetchall()
        docs = self.documents_by_id([r[1] for r in rows])
        return {
            r[0]: Passage(r[0], r[1], r[2], r[3], r[4], docs[r[1]].text[r[3] : r[4]], score=0.0)
            for r in rows
        }

    def dense(
        self,
        queries: np.ndarray,
        depth: int,
        filters: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Per query vector (rows of ``queries``), the ``depth`` nearest chunks by inner
        product among those ``filters`` allow, best first: every segment searched, the hits
        whose chunk rows this snapshot holds kept (``search_segments``). A filter allowing
        at most ``exact_max`` chunks is answered from exactly their vectors; a wider one
        searches every segment and keeps the hits it allows."""
        loaded = self.segments()
        matrix = np.ascontiguousarray(
            np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
        )
        if not loaded:
            return [[] for _ in range(len(queries))]
        pool = self._pool_for(loaded)
        if not filters:
            alive = functools.partial(existing_ids, self._conn)
            runs = search_segments(loaded, matrix, depth, alive, pool=pool)
            return [[Hit(i, s) for i, s in run] for run in runs]
        sql = self._filters.compile(filters)
        listed, share = self._filters.plan(sql, "doc_id" in filters)
        if listed is not None:
            ids = np.unique(np.asarray(listed, dtype=np.int64))
            return [[Hit(i, s) for i, s in run] for run in exact_search(loaded, matrix, ids, depth)]
        allowed = functools.partial(self._filters.allowed, sql)
        runs = search_segments(loaded, matrix, depth, allowed, share=share, pool=pool)
        return [[Hit(i, s) for i, s in run] for run in runs]

    def _indexed(self) -> bool:
        """Whether the metadata table is there (schema version 2 on)."""
        return self.schema_version() != "1"

    def _pool_for(self, loaded: Sequence[tuple[Segment, faiss.Index]]) -> SearchThreads | None:
        """The search threads, for an index large enough in two segments or more."""
        if self._pool is None or self._pool.count < 2 or len(loaded) < 2:
            return None
        total = sum(index.ntotal for _, index in loaded)
        return self._pool if total >= PARALLEL_MIN_VECTORS else None

    def keyword(
        self, words: Sequence[str], depth: int, filters: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The ``depth`` best chunks by BM25 for any of ``words`` (a question's content
        words; higher is better). Hits are chunks of this snapshot only; a filter of at
        most ``exact_max`` chunks restricts the engine's search to them, a wider one is
        checked per hit by index lookups."""
        if not words:
            return []
        if self.schema_version() in FTS5_VERSIONS:
            return self._fts5(words, depth, filters)
        engine = self._engine()
        if not filters:
            return engine.search(words, depth, lambda ids: existing_ids(self._conn, ids))
        sql = self._filters.compile(filters)
        allowed = functools.partial(self._filters.allowed, sql)
        listed, share = self._filters.plan(sql, "doc_id" in filters)
        if listed is not None:
            return engine.search(words, depth, allowed, allowed=listed)
        return engine.search(words, depth, allowed, share=share)

    def _fts5(
        self, words: Sequence[str], depth: int, filters: Mapping[str, Any] | None
    ) -> list[Hit]:
        """``keyword`` on a schema before version 3 (read as it is until its next write):
        its FTS5 table, each word quoted, OR-ed."""
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        if filters:
            sql = self._filters.compile(filters)
            rows = self._conn.execute(
                "SELECT f.rowid, bm25(chunks_fts) AS s FROM chunks_fts f "
                f"JOIN chunks c ON c.id = f.rowid WHERE chunks_fts MATCH ? AND {sql.check} "
                "ORDER BY s LIMIT ?",
                [match, *sql.check_params, depth],
            )
        else:
            rows = self._conn.execute(
                "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? "
                "ORDER BY s LIMIT ?",
                [match, depth],
            )
        # FTS5's bm25() is negated so that ORDER BY ascending puts the best first.
        return [Hit(int(r[0]), -float(r[1])) for r in rows]


def _info(row: Sequence[Any]) -> DocumentInfo:
    return DocumentInfo(
        row[0], row[1], row[2], load_metadata(row[3]), row[4], load_page_starts(row[5])
    )
