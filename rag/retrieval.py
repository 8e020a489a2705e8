"""Hybrid retrieval over a ``Snapshot``: dense (FAISS inner product) + BM25 (the store's
keyword engine), fused with RRF.

BM25 comes from the store (``rag.store.keyword``: tantivy, kept in step with every write);
retrieval hands it the question's content words. Reciprocal-rank fusion (Cormack et al.,
2009): ``score = sum 1 / (k + rank)`` over the retrievers that returned the passage, rank
starting at 1.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from rag.ingest import Embedder
from rag.models import Hit, Passage
from rag.store import Snapshot
from rag.text import STOPWORDS

Mode = Literal["hybrid", "dense", "bm25"]
_WORD = re.compile(r"\w+", re.UNICODE)


def keyword_words(question: str) -> list[str]:
    """The question's content words for BM25: lowercased, stopwords dropped, each once."""
    terms = [w for w in _WORD.findall(question.lower()) if w not in STOPWORDS]
    return list(dict.fromkeys(terms))


def rrf(rankings: Mapping[str, Sequence[int]], k: int) -> dict[int, float]:
    """Reciprocal-rank fusion of several ranked id lists."""
    fused: dict[int, float] = {}
    for ranking in rankings.values():
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


class Retriever:
    """Finds the passages of a snapshot most likely to answer a question.

    With ``keyword_beside_dense``, a hybrid question's BM25 search runs on a thread of its
    own while the vector segments are searched (after the question is encoded, so it never
    competes with the encoder): the dense search waits on the store's search threads, and
    the keyword engine and faiss both let go of the GIL."""

    def __init__(
        self,
        embedder: Embedder,
        depth: int = 30,
        rrf_k: int = 60,
        mode: Mode = "hybrid",
        keyword_beside_dense: bool = True,
    ) -> None:
        self.embedder = embedder
        self.depth = depth
        self.rrf_k = rrf_k
        self.mode: Mode = mode
        self.keyword_beside_dense = keyword_beside_dense
        # Its one thread starts with the first question sent to it (the executor's own way).
        self._beside = ThreadPoolExecutor(1, thread_name_prefix="keyword-search")
        self._free = threading.Lock()

    def warm_up(self) -> None:
        self.embedder.warm_up()

    def retrieve(
        self,
        snapshot: Snapshot,
        question: str,
        top_k: int = 5,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
    ) -> list[Passage]:
        """The ``top_k`` fused passages for one question."""
        return self.retrieve_batch(snapshot, [question], top_k, filters, mode)[0]

    def retrieve_batch(
        self,
        snapshot: Snapshot,
        questions: Sequence[str],
        top_k: int = 5,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
    ) -> list[list[Passage]]:
        """``retrieve`` for many questions, the query encoder run once over all of them."""
        mode = mode or self.mode
        depth = max(self.depth, top_k)
        dense: list[list[Hit]] | None = None
        keyword: list[list[Hit]] | None = None
        vectors = self.embedder.embed(questions) if mode != "bm25" else None
        beside = mode == "hybrid" and self.keyword_beside_dense
        # One question at a time beside its dense search: others asked meanwhile search
        # one after the other on their own threads, never queued behind it.
        if beside and vectors is not None and self._free.acquire(blocking=False):
            try:
                pending = self._beside.submit(self._keyword, snapshot, questions, depth, filters)
                try:
                    dense = snapshot.dense(vectors, depth, filters)
                finally:
                    # Waited for even when the dense search failed: the snapshot must
                    # outlive every search of it.
                    keyword = pending.result()
            finally:
                self._free.release()
        else:
            if vectors is not None:
                dense = snapshot.dense(vectors, depth, filters)
            if mode != "dense":
                keyword = self._keyword(snapshot, questions, depth, filters)
        out: list[list[Passage]] = []
        for qi in range(len(questions)):
            runs: dict[str, list[Hit]] = {}
            if dense is not None:
                runs["dense"] = dense[qi]
            if keyword is not None:
                runs["bm25"] = keyword[qi]
            out.append(self._fuse(snapshot, runs, top_k))
        return out

    @staticmethod
    def _keyword(
        snapshot: Snapshot,
        questions: Sequence[str],
        depth: int,
        filters: Mapping[str, Any] | None,
    ) -> list[list[Hit]]:
        """Each question's BM25 hits (none for a question without content words)."""
        out = []
        for question in questions:
            words = keyword_words(question)
            out.append(snapshot.keyword(words, depth, filters) if words else [])
        return out

    def _fuse(
        self, snapshot: Snapshot, runs: Mapping[str, Sequence[Hit]], top_k: int
    ) -> list[Passage]:
        fused = rrf({name: [h.id for h in hits] for name, hits in runs.items()}, self.rrf_k)
        best = sorted(fused, key=lambda i: -fused[i])[:top_k]
        rows = snapshot.passages(best)
        scores = {name: {h.id: h.score for h in hits} for name, hits in runs.items()}
        ranks = {
            name: {h.id: r for r, h in enumerate(hits, start=1)} for name, hits in runs.items()
        }
        passages = []
        for i in best:
            row = rows.get(i)
            if row is None:  # deleted between the vector search and this snapshot
                continue
            passages.append(
                dataclasses.replace(
                    row,
                    score=fused[i],
                    dense_score=scores["dense"].get(i) if "dense" in runs else None,
                    bm25_score=scores["bm25"].get(i) if "bm25" in runs else None,
                    dense_rank=ranks.get("dense", {}).get(i),
                    bm25_rank=ranks.get("bm25", {}).get(i),
                )
            )
        return passages
