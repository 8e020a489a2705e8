"""Fit the sentence reader's abstention threshold on SQuAD v2.0 dev (half).

The 646 paragraphs are indexed; a seeded sample of questions (answerable and not) is asked
open-corpus with abstention off. The threshold kept maximises the share of right decisions:
an answer whose cited sentence holds a gold answer scores 1, an abstention on an
unanswerable question scores 1, anything else 0. (The official v2.0 "best F1 threshold"
would judge a sentence-level answer by its token F1 against a short gold phrase, which
punishes this reader for its answer length rather than for being wrong, and drives it to
abstain on nearly everything; that figure is reported beside it.) The result goes to
rag/data/sentence_reader_fit.json, which Settings reads as the default ``abstain_threshold``.

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
    hit_rows: list[tuple[float, float | None]] = []
    f1_rows: list[tuple[float, float | None]] = []
    t0 = time.perf_counter()
    for q in questions:
        answer = pipe.ask(q.question)
        quote = answer.citations[0].quote if answer.citations else ""
        if q.is_impossible:
            hit_rows.append((answer.score, None))
            f1_rows.append((answer.score, None))
        else:
            hit_rows.append((answer.score, float(any(a in quote for a in q.answer_texts))))
            f1_rows.append((answer.score, f1(answer.text, q.answer_texts)))
    threshold, value = best_threshold(hit_rows)
    answered = [r for r in hit_rows if r[0] >= threshold]
    unanswerable = [r for r in hit_rows if r[1] is None]
    abstained_unanswerable = sum(r[0] < threshold for r in unanswerable)
    fit = {
        "abstain_threshold": round(threshold, 4),
        "decision_accuracy_at_threshold": round(100 * value, 2),
        "decision_accuracy_never_abstain": round(
            100 * sum(r[1] or 0.0 for r in hit_rows) / len(hit_rows), 2
        ),
        "answered_share": round(len(answered) / len(hit_rows), 3),
        "no_answer_recall": round(abstained_unanswerable / max(1, len(unanswerable)), 3),
        "v2_f1_at_threshold": round(
            100
            * sum((r[1] or 0.0) if r[0] >= threshold else float(r[1] is None) for r in f1_rows)
            / len(f1_rows),
            2,
        ),
        "official_best_f1_threshold": round(best_threshold(f1_rows)[0], 4),
        "questions": len(hit_rows),
        "unanswerable": len(unanswerable),
        "data": "SQuAD v2.0 dev (half), open corpus over its 646 paragraphs",
        "seed": args.seed,
        "command": "make fit-threshold",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    READER_FIT_FILE.write_text(json.dumps(fit, indent=2) + "\n")
    print(json.dumps(fit, indent=2))


if __name__ == "__main__":
    main()
