"""Span reader speed and quantisation cost: fp32 vs int8 on the same passages, side by side.

    .venv/bin/python bench/reader_bench.py [--weights rag/data/reader] [--questions 200]

Retrieves the top 5 passages for seeded SQuAD v1.1 dev questions once (index
``bench-squad-dev``), then reads each question with the fp32 reader and the int8 (dynamic
quantisation) reader in rotation, so all see the same machine load: read latency p50/p95
(ms) and open-corpus EM/F1 of each. Nothing is asserted; results go to stdout and
bench/results/reader_bench.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SQUAD_DEV, gold_index, load_squad, percentile  # noqa: E402
from rag.gold import exact_match, f1  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.span_reader import SpanReader  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=Settings().reader_weights)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reader_bench.json")
    args = ap.parse_args()

    gold = load_squad(SQUAD_DEV)
    pipe = gold_index(gold, "bench-squad-dev")
    questions = random.Random(args.seed).sample(
        [q for q in gold.questions if q.answers], args.questions
    )
    s = Settings()
    # fp32 and int8 with the configured windows per forward pass, and int8 one window at a
    # time (no padding between windows of different lengths).
    variants = [("fp32", False, s.span_batch_windows), ("int8", True, s.span_batch_windows)]
    variants.append(("int8-b1", True, 1))
    readers = {
        name: SpanReader(args.weights, s.span_margin_chars, s.span_max_answer_tokens, batch, q)
        for name, q, batch in variants
    }
    for r in readers.values():
        r.warm_up()
    times: dict[str, list[float]] = {n: [] for n in readers}
    em: dict[str, float] = dict.fromkeys(readers, 0.0)
    f1s: dict[str, float] = dict.fromkeys(readers, 0.0)
    for i, q in enumerate(questions):
        passages = pipe.retriever.retrieve(q.question, args.top_k)
        documents = pipe._documents(passages)
        names = list(readers)
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate: same load for all
        for name in order:
            t = time.perf_counter()
            spans = readers[name].read(q.question, passages, documents)
            times[name].append((time.perf_counter() - t) * 1000)
            pred = spans[0].text if spans else ""
            em[name] += exact_match(pred, q.answer_texts)
            f1s[name] += f1(pred, q.answer_texts)
    n = len(questions)
    results = {
        "weights": str(args.weights),
        "questions": n,
        "top_k": args.top_k,
        "readers": {
            name: {
                "read_p50_ms": round(percentile(times[name], 50), 1),
                "read_p95_ms": round(percentile(times[name], 95), 1),
                "em": round(100 * em[name] / n, 2),
                "f1": round(100 * f1s[name] / n, 2),
            }
            for name in readers
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
