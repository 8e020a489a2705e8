"""Fit the sentence reader's abstention threshold on SQuAD v2.0 dev (half).

The 646 paragraphs are indexed; a seeded sample of questions (answerable and not) is asked
open-corpus with abstention off. The threshold kept is the one that maximises the SQuAD v2.0
F1 (abstaining scores 1 on an unanswerable question and 0 on an answerable one), the
official "best F1 threshold". The result goes to rag/data/sentence_reader_fit.json, which
Settings reads as the default ``abstain_threshold``.

    .venv/bin/python bench/fit_threshold.py [--sample 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SQUAD_V2_HALF, gold_index
from rag.evaluation import f1, load_squad
from rag.settings import READER_FIT_FILE


def best_threshold(rows: list[tuple[float, float | None]]) -> tuple[float, float]:
    """(threshold, v2 F1) maximising v2 F1 over ``(score, f1 or None if unanswerable)``."""
    rows = sorted(rows, key=lambda r: r[0])
    n = len(rows)
    # Abstaining on everything below rows[i][0]: gain of the unanswerable ones below, plus
    # the F1 of the answerable ones at or above.
    answer_gain = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        answer_gain[i] = answer_gain[i + 1] + (rows[i][1] or 0.0)
    best_t, best = float("-inf"), answer_gain[0] / n
    abstain_gain = 0.0
    for i in range(1, n + 1):
        abstain_gain += 1.0 if rows[i - 1][1] is None else 0.0
        value = (abstain_gain + answer_gain[i]) / n
        t = rows[i][0] if i < n else rows[-1][0] + 1e-6
        if value > best:
            best_t, best = (rows[i - 1][0] + t) / 2, value
    return best_t, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    gold = load_squad(SQUAD_V2_HALF)
    pipe = gold_index(gold, "bench-squad-v2-half", abstain_threshold=float("-inf"))
    questions = random.Random(args.seed).sample(gold.questions, args.sample)
    rows: list[tuple[float, float | None]] = []
    t0 = time.perf_counter()
    for q in questions:
        answer = pipe.ask(q.question)
        rows.append((answer.score, None if q.is_impossible else f1(answer.text, q.answer_texts)))
    threshold, value = best_threshold(rows)
    never = sum(r[1] or 0.0 for r in rows) / len(rows)
    fit = {
        "abstain_threshold": round(threshold, 4),
        "v2_f1_at_threshold": round(100 * value, 2),
        "v2_f1_never_abstain": round(100 * never, 2),
        "questions": len(rows),
        "unanswerable": sum(r[1] is None for r in rows),
        "data": "SQuAD v2.0 dev (half), open corpus over its 646 paragraphs",
        "seed": args.seed,
        "command": "make fit-threshold",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    READER_FIT_FILE.write_text(json.dumps(fit, indent=2) + "\n")
    print(json.dumps(fit, indent=2))


if __name__ == "__main__":
    main()
