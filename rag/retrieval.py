"""Hybrid retrieval: dense (FAISS inner product) + BM25 (SQLite FTS5), fused with RRF.

BM25 comes from SQLite's FTS5 (porter stemmer, unicode61 tokenizer): it lives in the same
database file and transaction as the chunk rows, so it is persistent, incremental and
atomic with every ingest for free, with no second index to keep in step.
Reciprocal-rank fusion (Cormack et al., 2009): ``score = sum 1 / (k + rank)`` over the
retrievers that returned the passage, rank starting at 1.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np

from rag.embedding import Embedder
from rag.models import Passage
from rag.store import Store
from rag.text import STOPWORDS

Mode = Literal["hybrid", "dense", "bm25"]
_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(question: str) -> str:
    """An FTS5 MATCH expression: the question's content words, each quoted, OR-ed."""
    terms = [w for w in _WORD.findall(question.lower()) if w not in STOPWORDS]
    unique = list(dict.fromkeys(terms))
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in unique)


def rrf(rankings: Mapping[str, Sequence[int]], k: int) -> dict[int, float]:
    """Reciprocal-rank fusion of several ranked id lists."""
    fused: dict[int, float] = {}
    for ranking in rankings.values():
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


@dataclass(frozen=True, slots=True)
class _Hits:
    ids: list[int]
    scores: dict[int, float]


class Retriever:
    """Finds the passages of an index most likely to answer a question."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        depth: int = 30,
        rrf_k: int = 60,
        mode: Mode = "hybrid",
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.depth = depth
        self.rrf_k = rrf_k
        self.mode: Mode = mode

    def warm_up(self) -> None:
        self.embedder.warm_up()

    def retrieve(
        self,
        question: str,
        top_k: int = 5,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
    ) -> list[Passage]:
        """The ``top_k`` fused passages for one question."""
        return self.retrieve_batch([question], top_k, filters, mode)[0]

    def retrieve_batch(
        self,
        questions: Sequence[str],
        top_k: int = 5,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
    ) -> list[list[Passage]]:
        """``retrieve`` for many questions, the query encoder run once over all of them."""
        mode = mode or self.mode
        depth = max(self.depth, top_k)
        vectors = self.embedder.embed(questions) if mode != "bm25" else None
        out: list[list[Passage]] = []
        with self.store.read() as conn:
            index = self.store.vectors(conn)
            allowed = self.store.filtered_chunk_ids(conn, filters) if filters else None
            for qi, question in enumerate(questions):
                runs: dict[str, _Hits] = {}
                if vectors is not None and index is not None:
                    runs["dense"] = self._dense(index, vectors[qi], depth, allowed)
                if mode != "dense":
                    runs["bm25"] = self._bm25(conn, question, depth, filters)
                out.append(self._fuse(conn, runs, top_k))
        return out

    def _dense(
        self, index: faiss.Index, vector: np.ndarray, depth: int, allowed: np.ndarray | None
    ) -> _Hits:
        if index.ntotal == 0 or (allowed is not None and len(allowed) == 0):
            return _Hits([], {})
        params = None
        if allowed is not None:
            # The kwarg form keeps the selector alive for the search (faiss's Python wrapper).
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))  # type: ignore[call-arg]
        scores, ids = index.search(vector.reshape(1, -1), min(depth, index.ntotal), params=params)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        return _Hits([i for i, _ in pairs], dict(pairs))

    def _bm25(
        self,
        conn: sqlite3.Connection,
        question: str,
        depth: int,
        filters: Mapping[str, Any] | None,
    ) -> _Hits:
        match = fts_query(question)
        if not match:
            return _Hits([], {})
        pairs = self.store.bm25(conn, match, depth, filters)
        return _Hits([i for i, _ in pairs], dict(pairs))

    def _fuse(
        self, conn: sqlite3.Connection, runs: Mapping[str, _Hits], top_k: int
    ) -> list[Passage]:
        fused = rrf({name: hits.ids for name, hits in runs.items()}, self.rrf_k)
        best = sorted(fused, key=lambda i: -fused[i])[:top_k]
        rows = self.store.chunks_by_id(conn, best)
        ranks = {name: {i: r for r, i in enumerate(h.ids, start=1)} for name, h in runs.items()}
        dense, bm25 = runs.get("dense"), runs.get("bm25")
        passages = []
        for i in best:
            row = rows.get(i)
            if row is None:  # deleted between the vector search and this snapshot
                continue
            passages.append(
                Passage(
                    id=i,
                    doc_id=row.doc_id,
                    title=row.title,
                    start=row.start,
                    end=row.end,
                    text=row.text,
                    score=fused[i],
                    dense_score=dense.scores.get(i) if dense else None,
                    bm25_score=bm25.scores.get(i) if bm25 else None,
                    dense_rank=ranks.get("dense", {}).get(i),
                    bm25_rank=ranks.get("bm25", {}).get(i),
                )
            )
        return passages
