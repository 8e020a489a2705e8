"""Fit the reranker (``make fit-threshold``), reproducibly from a seed.

    .venv/bin/python bench/fit_reranker.py [--seed 13] [--questions 3000]

SQuAD v1.1 train articles (the verifier's: ``bench/fit_verifier.py``'s draw, same index),
never the gold sets the tests ask. Each question's fused top ``rerank_depth`` candidates are
taken with the reranker off; a passage is relevant when it holds a gold answer string. The
model is a pairwise logistic regression (RankNet with a linear scorer): for each question
with a relevant candidate, every (relevant, irrelevant) pair's feature difference, both
ways. Writes ``rag/data/reranker_fit.json`` with answer-hit@k on the fit questions, fused
vs. reranked.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fit_verifier import train_withheld  # noqa: E402
from rag.eval import Evaluator, fit_reranker  # noqa: E402
from rag.reranking import (  # noqa: E402
    FIT_FILE,
    Reranker,
    rerank_features,
    save_rerank_model,
)
from rag.settings import Settings  # noqa: E402


def hits(ranked: list[list[bool]], k: int) -> float:
    return round(sum(any(r[:k]) for r in ranked) / max(1, len(ranked)), 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--questions", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=FIT_FILE)
    args = ap.parse_args()

    settings = Settings(rerank=False)
    gold = train_withheld(args.seed, 30, 10**9, 0.3)
    answerable = [q for q in gold.questions if not q.is_impossible]
    questions = random.Random(args.seed).sample(answerable, min(args.questions, len(answerable)))
    pipe = Evaluator(settings, progress=True).pipeline_for(gold)
    texts = [q.question for q in questions]
    candidates = pipe.retrieve_batch(texts, top_k=settings.rerank_depth)
    relevant = [
        [any(a in p.text for a in q.answer_texts) for p in ps]
        for q, ps in zip(questions, candidates, strict=True)
    ]
    features = [
        rerank_features(q.question, ps) for q, ps in zip(questions, candidates, strict=True)
    ]
    model = fit_reranker(features, relevant)
    reranker = Reranker(model)
    reranked = [
        [any(a in p.text for a in q.answer_texts) for p in reranker.rerank(q.question, ps)]
        for q, ps in zip(questions, candidates, strict=True)
    ]
    report = {
        "questions": len(questions),
        "depth": settings.rerank_depth,
        "fit_answer_hit": {
            f"@{k}": {"fused": hits(relevant, k), "reranked": hits(reranked, k)} for k in (1, 5, 10)
        },
        "data": "SQuAD v1.1 train, 30 articles (bench/fit_verifier.py's draw), 30% withheld",
        "seed": args.seed,
        "command": f"python bench/fit_reranker.py --seed {args.seed} --questions {args.questions}",
    }
    save_rerank_model(args.out, model, **report)
    print(report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
