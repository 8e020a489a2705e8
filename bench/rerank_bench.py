"""Answer-hit@k over the 2,067 SQuAD v1.1 dev paragraphs, fused vs. reranked, and what the
reranker costs per question, side by side in one run.

    .venv/bin/python bench/rerank_bench.py [--questions 0 (all 10,570)] [--timing 300]

Candidates come from the pipeline with the reranker off (its ``rerank_depth`` fused
passages per question); the reranker (``rag/data/reranker_fit.json``, fitted on SQuAD train)
reorders them. answer-hit@k: a gold answer string is in one of the first k passages. The cost
is timed on ``--timing`` questions: one fused retrieval and one rerank each, alternated,
medians reported (query encoding included in retrieval). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SQUAD_V11, percentile  # noqa: E402
from rag.eval import Evaluator  # noqa: E402
from rag.gold import load_gold  # noqa: E402
from rag.reranking import Reranker, load_rerank_model  # noqa: E402
from rag.settings import Settings  # noqa: E402

KS = (1, 3, 5, 10, 20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=0, help="0: all")
    ap.add_argument("--timing", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "rerank")
    args = ap.parse_args()

    settings = Settings(rerank=False)
    gold = load_gold(SQUAD_V11)
    questions = gold.questions
    if 0 < args.questions < len(questions):
        questions = random.Random(args.seed).sample(questions, args.questions)
    pipe = Evaluator(settings, progress=True).pipeline_for(gold)
    model = load_rerank_model()
    if model is None:
        raise SystemExit("no rag/data/reranker_fit.json: run bench/fit_reranker.py")
    reranker = Reranker(model)
    depth = settings.rerank_depth
    fused_hits = {k: 0 for k in KS}
    reranked_hits = {k: 0 for k in KS}
    for i in range(0, len(questions), 256):
        block = questions[i : i + 256]
        candidates = pipe.retrieve_batch([q.question for q in block], top_k=depth)
        for q, ps in zip(block, candidates, strict=True):
            for name, ranked in (("fused", ps), ("reranked", reranker.rerank(q.question, ps))):
                rel = [any(a in p.text for a in q.answer_texts) for p in ranked]
                target = fused_hits if name == "fused" else reranked_hits
                for k in KS:
                    target[k] += any(rel[:k])
    n = len(questions)
    retrieve_ms, rerank_ms = [], []
    for q in random.Random(args.seed + 1).sample(questions, min(args.timing, n)):
        t0 = time.perf_counter()
        ps = pipe.retrieve(q.question, top_k=depth)
        t1 = time.perf_counter()
        reranker.rerank(q.question, ps)
        t2 = time.perf_counter()
        retrieve_ms.append((t1 - t0) * 1000)
        rerank_ms.append((t2 - t1) * 1000)
    result = {
        "questions": n,
        "paragraphs": len(gold.documents),
        "depth": depth,
        "answer_hit": {
            f"@{k}": {
                "fused": round(fused_hits[k] / n, 4),
                "reranked": round(reranked_hits[k] / n, 4),
            }
            for k in KS
        },
        "cost_ms": {
            "timed_questions": len(rerank_ms),
            "retrieve_p50": round(statistics.median(retrieve_ms), 2),
            "rerank_p50": round(statistics.median(rerank_ms), 2),
            "rerank_p95": round(percentile(rerank_ms, 95), 2),
        },
        "command": f"python bench/rerank_bench.py --questions {args.questions} "
        f"--timing {args.timing}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rerank.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
