"""Running a gold set through the pipeline: open corpus (the gold documents indexed once,
cached by content) or a named index; answers judged and summed up by ``rag.eval.metrics``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag.eval.metrics import (
    QuestionResult,
    answer_metrics,
    calibration,
    citation_metrics,
    cost_metrics,
    doc_ranking,
    first_rank,
    judge,
    loss_split,
    ndcg_at,
    retrieval_metrics,
)
from rag.gold import GoldFormatError, GoldSet
from rag.ingest import Embedder
from rag.models import Document, ReaderInfo
from rag.pipeline import Pipeline
from rag.retrieval import Mode
from rag.settings import Settings
from rag.store import StoreError

# ---- the run ---------------------------------------------------------------------------
MODES: tuple[Mode, ...] = ("hybrid", "dense", "bm25")
BEIR_DEPTH = 100  # passages retrieved per BEIR query to rank 10+ distinct documents


@dataclass
class EvalRun:
    """Metrics of one evaluation and the per-question results behind them."""

    metrics: dict[str, Any]
    results: list[QuestionResult]
    # The reader that answered (None for a retrieval-only run).
    reader: ReaderInfo | None = None


def corpus_index_name(gold: GoldSet, build: Mapping[str, str]) -> str:
    """A name for the open-corpus index of ``gold``: a hash of its documents and of how the
    pipeline builds indexes, so a re-run reuses it and any change gets a new one."""
    h = hashlib.sha256(json.dumps(sorted(build.items())).encode())
    for d in gold.documents:
        h.update(f"{d.id}\0{d.sha256}\0".encode())
    return f"eval-{h.hexdigest()[:16]}"


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not enabled)


class Evaluator:
    """Runs a gold set through the pipeline: open corpus (default) or a named index."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        ks: Sequence[int] = (1, 5, 10, 20),
        ablation: bool = False,
        progress: bool = True,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(batch_size=settings.embed_batch_size)
        self.ks = tuple(sorted(ks))
        self.ablation = ablation
        self.progress = progress

    def pipeline_for(self, gold: GoldSet, index_name: str | None = None) -> Pipeline:
        """The pipeline to ask: the named index, or the gold corpus indexed (once, cached)."""
        if index_name is not None:
            pipe = Pipeline(
                self.settings.model_copy(update={"index_name": index_name}), embedder=self.embedder
            )
            if not pipe.exists():
                raise StoreError(f"no index at {pipe.index_path}")
            return pipe
        if not gold.documents:
            raise GoldFormatError("the gold set has no documents; name an index with --index")
        probe = Pipeline(self.settings, embedder=self.embedder)
        name = corpus_index_name(gold, probe.build_manifest())
        pipe = Pipeline(
            self.settings.model_copy(update={"index_name": name}), embedder=self.embedder
        )
        if pipe.exists() and pipe.manifest().get("corpus") == name:
            # A write of nothing brings a cached index of an older schema to this code's
            # (e.g. its keyword engine), so the evaluation measures what this code serves.
            pipe.stamp({"corpus": name})
            return pipe
        bar = _progress(0, "indexing", self.progress)
        bar.unit = "chunk"
        pipe.ingest(gold.documents, progress=bar.update)
        bar.close()
        pipe.stamp({"corpus": name})
        return pipe

    def run(self, gold: GoldSet, index_name: str | None = None) -> EvalRun:
        pipe = self.pipeline_for(gold, index_name)
        if gold.retrieval_only:
            return self._run_beir(pipe, gold)
        return self._run_answers(pipe, gold)

    def _run_answers(self, pipe: Pipeline, gold: GoldSet) -> EvalRun:
        depth = max(max(self.ks), pipe.settings.top_k)
        results: list[QuestionResult] = []
        t_start = time.perf_counter()
        bar = _progress(len(gold.questions), "answering", self.progress)
        for q in gold.questions:
            t0 = time.perf_counter()
            passages = pipe.retrieve(q.question, top_k=depth)
            t1 = time.perf_counter()
            answer = pipe.read(q.question, passages[: pipe.settings.top_k])
            t2 = time.perf_counter()
            docs: dict[str, Document] = {}
            for c in answer.citations:
                doc = pipe.document(c.doc_id)
                if doc is not None:
                    docs[c.doc_id] = doc
            results.append(
                judge(
                    q,
                    answer,
                    passages,
                    docs,
                    (t1 - t0) * 1000,
                    (t2 - t1) * 1000,
                )
            )
            bar.update()
        bar.close()
        wall = time.perf_counter() - t_start
        retrieval = {
            "hybrid": retrieval_metrics(
                [r.answer_rank for r in results if not r.impossible],
                [r.doc_rank for r in results if r.gold_doc and not r.impossible],
                self.ks,
            )
        }
        if self.ablation:
            for mode in MODES[1:]:
                retrieval[mode] = self._ranks_only(pipe, gold, mode, depth)
        metrics = {
            "questions": len(results),
            "answers": answer_metrics(results),
            "loss_split": loss_split(results, pipe.settings.top_k),
            "retrieval": retrieval,
            "citations": citation_metrics(results),
            "calibration": calibration(results),
            "cost": cost_metrics(results, wall),
            "settings": {
                "top_k": pipe.settings.top_k,
                "rrf_k": pipe.settings.rrf_k,
                "reader": pipe.reader.kind,
                "abstain_threshold": pipe.reader.abstention.threshold,
                "index": pipe.index_path.name,
            },
        }
        return EvalRun(metrics, results, pipe.reader)

    def _ranks_only(self, pipe: Pipeline, gold: GoldSet, mode: Mode, depth: int) -> dict[str, Any]:
        answerable = [q for q in gold.questions if not q.is_impossible]
        ranks_a, ranks_d = [], []
        bar = _progress(len(answerable), f"retrieving ({mode})", self.progress)
        for q in answerable:
            passages = pipe.retrieve(q.question, top_k=depth, mode=mode)
            ranks_a.append(first_rank([any(g in p.text for g in q.answer_texts) for p in passages]))
            if q.doc_id:
                ranks_d.append(first_rank([d == q.doc_id for d in doc_ranking(passages)]))
            bar.update()
        bar.close()
        return retrieval_metrics(ranks_a, ranks_d, self.ks)

    def _run_beir(self, pipe: Pipeline, gold: GoldSet) -> EvalRun:
        modes = MODES if self.ablation else MODES[:1]
        retrieval: dict[str, Any] = {}
        t_start = time.perf_counter()
        for mode in modes:
            ndcgs, ranks = [], []
            bar = _progress(len(gold.questions), f"retrieving ({mode})", self.progress)
            for q in gold.questions:
                ranking = doc_ranking(pipe.retrieve(q.question, BEIR_DEPTH, mode=mode))
                qrels = gold.qrels[q.id]
                ndcgs.append(ndcg_at(ranking, qrels, 10))
                ranks.append(first_rank([qrels.get(d, 0) > 0 for d in ranking]))
                bar.update()
            bar.close()
            retrieval[mode] = {
                "ndcg@10": round(sum(ndcgs) / len(ndcgs), 4) if ndcgs else None,
                **retrieval_metrics([], ranks, self.ks),
            }
        metrics = {
            "questions": len(gold.questions),
            "retrieval": retrieval,
            "cost": {"seconds": round(time.perf_counter() - t_start, 1)},
            "settings": {"rrf_k": pipe.settings.rrf_k, "index": pipe.index_path.name},
        }
        return EvalRun(metrics, [])
