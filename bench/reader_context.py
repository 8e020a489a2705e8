"""How the span reader reads questions that carry context their passage does not hold.

    .venv/bin/python bench/reader_context.py --weights rag/data/reader runs/otherpre/reader

News quizzes ask with context from the news, not from the evidence snippet they come with
("The US observed the first anniversary of ... this week. About how many people ...?");
SQuAD questions were written from their paragraph. Each reader reads, given the gold
passage (no retrieval): the news quiz years (2020-2021, the development years; 2022-2023,
measured), the first ``--squad-questions`` answerable SQuAD v1.1 dev questions as they are,
and the same questions after a sentence of another paragraph of their article
(``rag.reader.context_sentence``, seeded). Reported per set: the median margin of the best
span over the window's "no answer" score, the median "no answer" score, the share of
questions whose margin is positive, and F1 of the best span. The margin is what the
selection and the verifier read, so a reader whose margins fall on such questions abstains
on them. Nothing is asserted; news is read only to measure.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SQUAD_V11,
    siblings_of,
    with_context,
)
from bench.news_eval import DEV_YEARS, NEWS, news_years  # noqa: E402
from bench.reader_answerability import best_spans  # noqa: E402
from rag.gold import GoldQuestion, GoldSet, f1, load_gold  # noqa: E402
from rag.reader import context_sentence  # noqa: E402

MEASURED_YEARS = ("2022", "2023")


def read(folder: Path, gold: GoldSet) -> dict[str, float]:
    """The reader at ``folder`` on each answerable question of ``gold`` with its passage."""
    answerable = GoldSet(
        documents=gold.documents, questions=[q for q in gold.questions if q.answers]
    )
    spans = best_spans(folder, answerable) if answerable.questions else []
    if not spans:
        return {"questions": 0}
    margins = [r.margin for r in spans]
    return {
        "questions": len(spans),
        "median_margin": round(statistics.median(margins), 2),
        "median_null": round(statistics.median(r.null for r in spans), 2),
        "margin_positive_pct": round(100 * sum(m > 0 for m in margins) / len(margins), 1),
        "f1": round(100 * sum(f1(r.text, r.question.answer_texts) for r in spans) / len(spans), 2),
    }


def sets(squad_questions: int, seed: int) -> dict[str, GoldSet]:
    """The gold sets read: news years, SQuAD dev as is and with a context sentence."""
    news = load_gold(NEWS)
    out = {
        "news 2020-2021 (dev)": news_years(news, DEV_YEARS),
        "news 2022-2023 (measured)": news_years(news, MEASURED_YEARS),
    }
    dev = load_gold(SQUAD_V11)
    asked = [q for q in dev.questions if q.answers][:squad_questions]
    siblings = siblings_of(dev)
    rng = random.Random(seed)
    given: list[GoldQuestion] = []
    for q in asked:
        context = context_sentence(siblings.get(q.doc_id or "", []), rng)
        if context is not None:
            given.append(with_context(q, context))
    out["SQuAD v1.1 dev"] = GoldSet(documents=dev.documents, questions=asked)
    out["SQuAD v1.1 dev, another paragraph's sentence first"] = GoldSet(
        documents=dev.documents, questions=given
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, nargs="+", default=[ROOT / "rag" / "data" / "reader"])
    ap.add_argument("--squad-questions", type=int, default=600)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="results JSON")
    args = ap.parse_args()
    gold = sets(args.squad_questions, args.seed)
    results: dict[str, dict[str, dict[str, float]]] = {}
    print("| reader | set | questions | median margin | median no-answer | margin > 0 % | F1 |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.weights:
        results[str(folder)] = {}
        for name, g in gold.items():
            r = read(folder, g)
            results[str(folder)][name] = r
            cells = [r.get(k, "-") for k in ("median_margin", "median_null")]
            cells += [r.get(k, "-") for k in ("margin_positive_pct", "f1")]
            print(
                f"| {folder} | {name} | {r['questions']} | " + " | ".join(map(str, cells)) + " |",
                flush=True,
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
