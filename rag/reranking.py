"""Reranking: the fused candidates reordered so that the passage holding the answer is among
the few the reader reads.

A logistic model of P(the passage holds the answer) over what retrieval already knows
(dense similarity and rank, BM25 rank, fused rank) and over the lexical fit of question and
passage that neither retriever sees (coverage of the question's content words weighted by
their rarity among the candidates, in the passage and in its best sentence; the question's
word pairs found in the passage; the title). No model is run: the cost is a sentence split
and set lookups per candidate (``bench/rerank_bench.py`` measures it). Fitted by
``bench/fit_reranker.py`` (``make fit-threshold``) on SQuAD train, never on the gold sets
the tests ask; weights in ``rag/data/reranker_fit.json``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.models import Passage
from rag.reader import content_terms, split_sentences
from rag.settings import DATA_DIR
from rag.text import STOPWORDS

FIT_FILE = DATA_DIR / "reranker_fit.json"
_WORD = re.compile(r"\w+", re.UNICODE)

RERANK_FEATURES: tuple[str, ...] = (
    "fused_rr",
    "dense",
    "dense_gap",
    "dense_rr",
    "bm25_rr",
    "coverage",
    "sentence_coverage",
    "pairs",
    "title",
)


def _pairs(text: str) -> set[tuple[str, str]]:
    """Adjacent content words (stopwords skipped: "capital of France" gives one pair)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    return set(itertools.pairwise(words))


def rerank_features(question: str, passages: Sequence[Passage]) -> list[dict[str, float]]:
    """Feature values (``RERANK_FEATURES``) of each candidate, in the given (fused) order."""
    q_terms = content_terms(question)
    passage_terms = [content_terms(p.text) for p in passages]
    # A term found in few candidates tells them apart: log-scaled rarity among them.
    n = len(passages)
    weight = {t: math.log(1.0 + n / (1.0 + sum(t in ts for ts in passage_terms))) for t in q_terms}
    total = sum(weight.values()) or 1.0
    q_pairs = _pairs(question)
    dense_top = max((p.dense_score for p in passages if p.dense_score is not None), default=0.0)
    out = []
    for rank, (p, terms) in enumerate(zip(passages, passage_terms, strict=True), start=1):
        best_sentence = max(
            (
                sum(weight[t] for t in q_terms & content_terms(s.text))
                for s in split_sentences(p.text)
            ),
            default=0.0,
        )
        dense = p.dense_score if p.dense_score is not None else 0.0
        out.append(
            {
                "fused_rr": 1.0 / rank,
                "dense": dense,
                "dense_gap": dense - dense_top if p.dense_score is not None else -1.0,
                "dense_rr": 1.0 / p.dense_rank if p.dense_rank else 0.0,
                "bm25_rr": 1.0 / p.bm25_rank if p.bm25_rank else 0.0,
                "coverage": sum(weight[t] for t in q_terms & terms) / total,
                "sentence_coverage": best_sentence / total,
                "pairs": len(q_pairs & _pairs(p.text)) / max(1, len(q_pairs)),
                "title": len(q_terms & content_terms(p.title)) / max(1, len(q_terms)),
            }
        )
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class RerankModel:
    """Logistic weights, one per name in ``features`` and then a bias."""

    weights: tuple[float, ...]
    features: tuple[str, ...] = RERANK_FEATURES

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.features) + 1:
            raise ValueError(
                f"a reranker over {list(self.features)} has {len(self.features) + 1} weights, "
                f"not {len(self.weights)}"
            )

    def score(self, values: dict[str, float]) -> float:
        *w, bias = self.weights
        return sum(wi * values[f] for wi, f in zip(w, self.features, strict=True)) + bias


def load_rerank_model(path: Path = FIT_FILE) -> RerankModel | None:
    """The fitted reranker, or None when the file is absent (a trimmed install)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return RerankModel(tuple(float(v) for v in data["weights"]), tuple(data["features"]))


def save_rerank_model(path: Path, model: RerankModel, **report: Any) -> None:
    data = {"features": list(model.features), "weights": list(model.weights), **report}
    path.write_text(json.dumps(data, indent=2) + "\n")


def _squash(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


class Reranker:
    """Reorders a question's fused candidates by the fitted model (stable on ties); each
    passage's ``score`` becomes sigmoid(its reranker score): in (0, 1), best first (a
    ranking, not a probability: the pairwise fit has no bias)."""

    def __init__(self, model: RerankModel) -> None:
        self.model = model

    def rerank(self, question: str, passages: Sequence[Passage]) -> list[Passage]:
        if len(passages) < 2:
            return list(passages)
        scores = [self.model.score(f) for f in rerank_features(question, passages)]
        order = sorted(range(len(passages)), key=lambda i: -scores[i])
        return [dataclasses.replace(passages[i], score=_squash(scores[i])) for i in order]

    def rerank_batch(
        self, questions: Sequence[str], passages: Sequence[Sequence[Passage]]
    ) -> list[list[Passage]]:
        return [self.rerank(q, ps) for q, ps in zip(questions, passages, strict=True)]
