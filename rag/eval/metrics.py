"""Judging answers against gold questions, and the metrics over many: EM/F1 (official
SQuAD scoring, from ``rag.gold``), abstention, retrieval recall/MRR/nDCG, citations,
calibration, cost."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.gold import GoldQuestion, exact_match, f1
from rag.models import Answer, Document, Passage

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


@dataclass(frozen=True, slots=True)
class PassageRef:
    """Where a retrieved passage was, as an error report lists it."""

    doc_id: str
    start: int
    end: int
    score: float


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
    passages: list[PassageRef] = field(default_factory=list)
    citation_failures: list[str] = field(default_factory=list)
    # The verifier's inputs for the reader's best span (``Answer.features``).
    features: dict[str, float] = field(default_factory=dict)
    # When it abstained on a span: that span's F1 against the gold answers (was the right
    # answer read and held back?); None when it answered or had no span.
    withheld_f1: float | None = None

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
        features=dict(answer.features),
        answer_rank=first_rank([any(g in p.text for g in golds) for p in passages])
        if golds
        else None,
        doc_rank=first_rank([d == q.doc_id for d in doc_ranking(passages)]) if q.doc_id else None,
        retrieve_ms=retrieve_ms,
        read_ms=read_ms,
        passages=[PassageRef(p.doc_id, p.start, p.end, round(p.score, 5)) for p in passages[:5]],
        citation_failures=failures,
        withheld_f1=None
        if answer.answered or answer.withheld is None
        else f1(answer.withheld, golds),
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


# Where an answerable question's F1 was lost (see ``loss_split``), in the order checked.
LOSS_STAGES = ("retrieval", "abstention", "reader")


def loss_stage(r: QuestionResult, top_k: int) -> str | None:
    """Which stage lost an answerable question's F1: ``retrieval`` when no passage read
    (the top ``top_k``) holds a gold answer; ``abstention`` when the span it held back was
    right (F1 > 0.5); else ``reader`` (a wrong or partial span, or none). None when the
    question lost nothing or has no answer."""
    if r.impossible or r.f1 >= 1.0:
        return None
    if r.answer_rank is None or r.answer_rank > top_k:
        return "retrieval"
    if not r.answered and r.withheld_f1 is not None and r.withheld_f1 > CORRECT_F1:
        return "abstention"
    return "reader"


def loss_split(results: Sequence[QuestionResult], top_k: int) -> dict[str, Any]:
    """The answerable questions' F1 loss split three ways (``loss_stage``): per stage, the
    share of questions it lost F1 on and the F1 points lost there (they sum to 100 minus
    the has-answer F1), so that work goes where the loss is."""
    has = [r for r in results if not r.impossible]
    out: dict[str, Any] = {"n": len(has), "top_k": top_k}
    for stage in LOSS_STAGES:
        lost = [r for r in has if loss_stage(r, top_k) == stage]
        out[stage] = {
            "questions": round(100 * len(lost) / max(1, len(has)), 2),
            "f1_lost": round(100 * sum(1.0 - r.f1 for r in lost) / max(1, len(has)), 2),
        }
    return out


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
