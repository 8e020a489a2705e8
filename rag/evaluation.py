"""Evaluation against gold sets: SQuAD answer metrics, retrieval, citations, calibration.

The official SQuAD answer scoring (``normalize_answer``, ``exact_match``, ``f1``) lives in
``rag.gold`` beside the gold formats, so that reader training can score without the
retrieval stack; ``exact_match`` and ``f1`` are imported from there.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.embedding import Embedder
from rag.gold import (
    GoldFormatError,
    GoldQuestion,
    GoldSet,
    exact_match,
    f1,
)
from rag.models import Answer, Document, Passage
from rag.pipeline import Pipeline
from rag.retrieval import Mode
from rag.settings import Settings
from rag.store import StoreError

# ---- question types --------------------------------------------------------------------
QUESTION_TYPES = ("who", "when", "where", "what", "how many", "why", "other")
_QWORDS = {
    "who": "who",
    "whom": "who",
    "whose": "who",
    "when": "when",
    "where": "where",
    "why": "why",
    "what": "what",
    "which": "what",
}


def question_kind(question: str) -> str:
    """who/when/where/what/how many/why/other, from the first question word found."""
    q = question.lower()
    if "how many" in q or "how much" in q:
        return "how many"
    for word in re.findall(r"[a-z]+", q):
        if word in _QWORDS:
            return _QWORDS[word]
    return "other"


# ---- per-question results --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QuestionResult:
    """What happened to one gold question."""

    id: str
    question: str
    kind: str
    gold_answers: list[str]
    gold_doc: str | None
    impossible: bool
    prediction: str
    answered: bool
    score: float
    confidence: float
    narrowed: bool
    em: float
    f1: float
    citations_round_trip: bool
    citation_holds_answer: bool
    # 1-based rank of the first passage holding a gold answer string / the gold document.
    answer_rank: int | None
    doc_rank: int | None
    retrieve_ms: float
    read_ms: float
    passages: list[dict[str, Any]] = field(default_factory=list)
    citation_failures: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        """Correct for calibration: F1 > 0.5 or exact match (an abstention is not judged)."""
        return self.f1 > CORRECT_F1 or self.em == 1.0


# F1 above this counts an answer as correct in the calibration and fitting.
CORRECT_F1 = 0.5


def first_rank(items: Sequence[bool]) -> int | None:
    return next((i for i, ok in enumerate(items, start=1) if ok), None)


def doc_ranking(passages: Sequence[Passage]) -> list[str]:
    """Documents in the order of their best passage."""
    return list(dict.fromkeys(p.doc_id for p in passages))


def judge(
    q: GoldQuestion,
    answer: Answer,
    passages: Sequence[Passage],
    documents: Mapping[str, Document],
    retrieve_ms: float,
    read_ms: float,
) -> QuestionResult:
    """Score one answer against its gold question."""
    golds = q.answer_texts
    failures = []
    for c in answer.citations:
        doc = documents.get(c.doc_id)
        if doc is None or doc.text[c.start : c.end] != c.quote:
            failures.append(f"{c.doc_id}[{c.start}:{c.end}] does not round-trip")
    holds = True
    if answer.answered:
        c0 = answer.citations[0] if answer.citations else None
        inside = (
            c0 is not None
            and answer.start is not None
            and answer.end is not None
            and c0.doc_id == answer.doc_id
            and c0.start <= answer.start <= answer.end <= c0.end
        )
        if not inside:
            failures.append("the answer span lies outside its citation")
        holds = inside and bool(golds) and any(g in (c0.quote if c0 else "") for g in golds)
    else:
        holds = False
    prediction = answer.text if answer.answered else ""
    return QuestionResult(
        id=q.id,
        question=q.question,
        kind=question_kind(q.question),
        gold_answers=golds,
        gold_doc=q.doc_id,
        impossible=q.is_impossible,
        prediction=prediction,
        answered=answer.answered,
        score=answer.score,
        confidence=answer.confidence,
        narrowed=bool(
            answer.answered
            and answer.citations
            and len(answer.text) < len(answer.citations[0].quote)
        ),
        em=exact_match(prediction, golds),
        f1=f1(prediction, golds),
        citations_round_trip=not failures,
        citation_holds_answer=holds,
        answer_rank=first_rank([any(g in p.text for g in golds) for p in passages])
        if golds
        else None,
        doc_rank=first_rank([d == q.doc_id for d in doc_ranking(passages)]) if q.doc_id else None,
        retrieve_ms=retrieve_ms,
        read_ms=read_ms,
        passages=[
            {"doc_id": p.doc_id, "start": p.start, "end": p.end, "score": round(p.score, 5)}
            for p in passages[:5]
        ],
        citation_failures=failures,
    )


# ---- aggregate metrics -----------------------------------------------------------------
def _pct(values: Sequence[float]) -> float | None:
    return round(100 * sum(values) / len(values), 2) if values else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 2)


def answer_metrics(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """EM/F1 overall and split, abstention precision/recall, by question type."""
    has = [r for r in results if not r.impossible]
    no = [r for r in results if r.impossible]
    abstained = [r for r in results if not r.answered]
    by_kind = {}
    for kind in QUESTION_TYPES:
        rs = [r for r in has if r.kind == kind]
        if rs:
            by_kind[kind] = {
                "n": len(rs),
                "em": _pct([r.em for r in rs]),
                "f1": _pct([r.f1 for r in rs]),
            }
    return {
        "n": len(results),
        "em": _pct([r.em for r in results]),
        "f1": _pct([r.f1 for r in results]),
        "has_answer": {
            "n": len(has),
            "em": _pct([r.em for r in has]),
            "f1": _pct([r.f1 for r in has]),
        },
        "no_answer": {"n": len(no), "accuracy": _pct([float(not r.answered) for r in no])},
        "answered_share": _pct([float(r.answered) for r in results]),
        "abstention": {
            "n": len(abstained),
            "precision": _pct([float(r.impossible) for r in abstained]),
            "recall": _pct([float(not r.answered) for r in no]),
        },
        "by_type": by_kind,
    }


def retrieval_metrics(
    ranks_answer: Sequence[int | None], ranks_doc: Sequence[int | None], ks: Sequence[int]
) -> dict[str, Any]:
    """recall@k by answer string and by gold document, and their MRR."""
    out: dict[str, Any] = {}
    for name, ranks in (("answer", ranks_answer), ("doc", ranks_doc)):
        if not ranks:
            continue
        out[f"recall_{name}"] = {
            str(k): round(sum(r is not None and r <= k for r in ranks) / len(ranks), 4) for k in ks
        }
        out[f"mrr_{name}"] = round(sum(1 / r for r in ranks if r) / len(ranks), 4)
    return out


def ndcg_at(ranking: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains (trec_eval's ndcg_cut, as BEIR reports it)."""
    dcg = sum(qrels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted(qrels.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def citation_metrics(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """Share of answers whose citations round-trip and contain the answer span (must be 100)."""
    answered = [r for r in results if r.answered]
    failures = [
        {"id": r.id, "problems": r.citation_failures} for r in results if r.citation_failures
    ]
    return {
        "answered": len(answered),
        "faithful": _pct([float(r.citations_round_trip) for r in answered]),
        "failures": failures,
    }


def calibration(results: Sequence[QuestionResult], bins: int = 10) -> dict[str, Any]:
    """Reliability table and expected calibration error of confidence vs correctness."""
    answered = [r for r in results if r.answered]
    table = []
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        rs = [
            r
            for r in answered
            if lo <= r.confidence < hi or (b == bins - 1 and r.confidence == 1.0)
        ]
        if not rs:
            table.append(
                {"bin": f"{lo:.1f}-{hi:.1f}", "n": 0, "confidence": None, "accuracy": None}
            )
            continue
        conf = sum(r.confidence for r in rs) / len(rs)
        acc = sum(r.correct for r in rs) / len(rs)
        ece += len(rs) / len(answered) * abs(acc - conf)
        table.append(
            {
                "bin": f"{lo:.1f}-{hi:.1f}",
                "n": len(rs),
                "confidence": round(conf, 4),
                "accuracy": round(acc, 4),
            }
        )
    return {
        "ece": round(ece, 4) if answered else None,
        "bins": table,
        "correct_means": f"F1 > {CORRECT_F1} or exact match",
    }


def cost_metrics(results: Sequence[QuestionResult], wall_seconds: float) -> dict[str, Any]:
    retrieve = [r.retrieve_ms for r in results]
    read = [r.read_ms for r in results]
    return {
        "retrieve_ms": {"p50": _percentile(retrieve, 50), "p95": _percentile(retrieve, 95)},
        "read_ms": {"p50": _percentile(read, 50), "p95": _percentile(read, 95)},
        "questions_per_s": round(len(results) / wall_seconds, 2) if wall_seconds else None,
    }


# ---- the run ---------------------------------------------------------------------------
MODES: tuple[Mode, ...] = ("hybrid", "dense", "bm25")
BEIR_DEPTH = 100  # passages retrieved per BEIR query to rank 10+ distinct documents


@dataclass
class EvalRun:
    """Metrics of one evaluation and the per-question results behind them."""

    metrics: dict[str, Any]
    results: list[QuestionResult]


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
            if not pipe.store.exists():
                raise StoreError(f"no index at {pipe.store.path}")
            return pipe
        if not gold.documents:
            raise GoldFormatError("the gold set has no documents; name an index with --index")
        probe = Pipeline(self.settings, embedder=self.embedder)
        name = corpus_index_name(gold, probe.build_manifest())
        pipe = Pipeline(
            self.settings.model_copy(update={"index_name": name}), embedder=self.embedder
        )
        if pipe.store.exists() and pipe.store.manifest().get("corpus") == name:
            return pipe
        bar = _progress(0, "indexing", self.progress)
        bar.unit = "chunk"
        pipe.ingest(gold.documents, progress=bar.update)
        bar.close()
        pipe.store.apply(manifest={"corpus": name})
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
            passages = pipe.retriever.retrieve(q.question, top_k=depth)
            t1 = time.perf_counter()
            answer = pipe.read(q.question, passages[: pipe.settings.top_k])
            t2 = time.perf_counter()
            docs = {c.doc_id: pipe.store.document(c.doc_id) for c in answer.citations}
            results.append(
                judge(
                    q,
                    answer,
                    passages,
                    {k: v for k, v in docs.items() if v is not None},
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
            "retrieval": retrieval,
            "citations": citation_metrics(results),
            "calibration": calibration(results),
            "cost": cost_metrics(results, wall),
            "settings": {
                "top_k": pipe.settings.top_k,
                "rrf_k": pipe.settings.rrf_k,
                "reader": pipe.reader.kind,
                "abstain_threshold": pipe.abstention()[0],
                "index": pipe.store.path.name,
            },
        }
        return EvalRun(metrics, results)

    def _ranks_only(self, pipe: Pipeline, gold: GoldSet, mode: Mode, depth: int) -> dict[str, Any]:
        answerable = [q for q in gold.questions if not q.is_impossible]
        ranks_a, ranks_d = [], []
        bar = _progress(len(answerable), f"retrieving ({mode})", self.progress)
        for q in answerable:
            passages = pipe.retriever.retrieve(q.question, top_k=depth, mode=mode)
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
                ranking = doc_ranking(pipe.retriever.retrieve(q.question, BEIR_DEPTH, mode=mode))
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
            "settings": {"rrf_k": pipe.settings.rrf_k, "index": pipe.store.path.name},
        }
        return EvalRun(metrics, [])


# ---- fitting the reader's abstention threshold and confidence --------------------------
def best_threshold(
    rows: Sequence[tuple[float, float | None]], keep: float = 0.0
) -> tuple[float, float]:
    """(threshold, value) maximising the mean decision value over ``(score, gain)`` rows.

    ``gain`` is what answering earns (None for an unanswerable question, where abstaining
    earns 1 and answering 0); abstaining on an answerable question earns 0. The threshold
    is the midpoint between the two scores where the best split falls. ``keep`` bounds what
    abstention may cost the answerable questions: only thresholds that keep at least this
    share of their gain (vs. never abstaining) are considered.
    """
    ordered = sorted(rows, key=lambda r: r[0])
    n = len(ordered)
    if n == 0:
        return 0.0, 0.0
    answer_gain = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        answer_gain[i] = answer_gain[i + 1] + (ordered[i][1] or 0.0)
    best_t, best = ordered[0][0] - 1e-6, answer_gain[0] / n
    abstain_gain = 0.0
    for i in range(1, n + 1):
        abstain_gain += 1.0 if ordered[i - 1][1] is None else 0.0
        if answer_gain[i] < keep * answer_gain[0] - 1e-9:
            break  # the kept gain only falls from here on
        value = (abstain_gain + answer_gain[i]) / n
        if value > best:
            upper = ordered[i][0] if i < n else ordered[-1][0] + 2e-6
            best_t, best = (ordered[i - 1][0] + upper) / 2, value
    return best_t, best


def fit_logistic(
    features: Sequence[Sequence[float]], labels: Sequence[bool], steps: int = 500
) -> list[float]:
    """Weights (one per feature, then a bias) of a logistic regression, by Newton's method
    with a small ridge so that separable data stays finite."""
    x = np.hstack([np.asarray(features, dtype=float), np.ones((len(features), 1))])
    y = np.asarray(labels, dtype=float)
    w = np.zeros(x.shape[1])
    ridge = 1e-3 * np.eye(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + ridge @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return [round(float(v), 6) for v in w]


def fit_reader(
    results: Sequence[QuestionResult], kind: str = "sentence", keep: float = 0.0
) -> dict[str, Any]:
    """The abstention threshold and confidence calibration, from a run with abstention off.

    Sentence reader: the threshold maximises right decisions (an answer whose cited
    sentence holds a gold answer, or an abstention on an unanswerable question); confidence
    is a logistic model of P(correct) on the score and whether the span was narrowed.
    Span reader (phrase answers): the threshold maximises the official SQuAD v2.0 F1 (an
    answer earns its F1, an abstention on an unanswerable question 1) among thresholds that
    keep at least ``keep`` of the answerable questions' F1; confidence is Platt scaling of
    the margin, sigmoid(score / T + c), stored as [1/T, 0, c].
    """
    f1_rows = [(r.score, None if r.impossible else r.f1) for r in results]
    if kind == "span":
        rows = f1_rows
        a, c = fit_logistic([(r.score,) for r in results], [r.correct for r in results])
        weights = [a, 0.0, c]
    else:
        rows = [
            (r.score, None if r.impossible else float(r.citation_holds_answer)) for r in results
        ]
        weights = fit_logistic(
            [(r.score, float(r.narrowed)) for r in results], [r.correct for r in results]
        )
    threshold, value = best_threshold(rows, keep if kind == "span" else 0.0)
    unanswerable = [r for r in results if r.impossible]
    answerable = [r for r in results if not r.impossible]
    abstained = [r for r in results if r.score < threshold]
    return {
        "reader": kind,
        "abstain_threshold": round(threshold, 4),
        "confidence_calibration": weights,
        "decision_accuracy_at_threshold": round(100 * value, 2),
        "decision_accuracy_never_abstain": round(
            100 * sum(g or 0.0 for _, g in rows) / max(1, len(rows)), 2
        ),
        "answered_share": round(sum(r.score >= threshold for r in results) / max(1, len(rows)), 3),
        "no_answer_recall": round(
            sum(r.score < threshold for r in unanswerable) / max(1, len(unanswerable)), 3
        ),
        "no_answer_precision": round(
            sum(r.impossible for r in abstained) / max(1, len(abstained)), 3
        ),
        "has_answer_f1_at_threshold": round(
            100 * sum(r.f1 for r in answerable if r.score >= threshold) / max(1, len(answerable)),
            2,
        ),
        "has_answer_f1_never_abstain": round(
            100 * sum(r.f1 for r in answerable) / max(1, len(answerable)), 2
        ),
        "keep": keep if kind == "span" else 0.0,
        "official_best_f1_threshold": round(best_threshold(f1_rows)[0], 4),
        "questions": len(results),
        "unanswerable": len(unanswerable),
    }
