"""Span readers compared at matched answered share, apart from where each fitted threshold lands.

    .venv/bin/python bench/coverage_compare.py \\
        --reader shipped=- \\
        --reader replay=runs/replay/w50:runs/replay/soup50/span_reader_fit.json \\
        [--cache runs/coverage] [--out runs/coverage/report.md]

Two readers of nearly the same quality can differ by several points of answered share at
their fitted thresholds (``make fit-threshold``'s keep-90 %-of-F1 rule lands where it
lands), and the default figures then mix the reader with that operating point. Here each
reader's questions are answered once with abstention off (cached by pipeline fingerprint,
under the names ``bench/abstention_heldout.py`` and ``bench/news_eval.py`` use, so their
caches can be copied in) and ranked by the reader's own default verifier's P(correct);
answering the top share ``s`` of all questions and abstaining on the rest (scored as SQuAD
v2.0 scores an empty prediction: 1 when unanswerable, 0 when not) gives F1(s), the
risk-coverage curve. Reported per set: F1 at fixed shares, the curve's mean over s in
[0.5, 1] (where every reader here operates), and each reader's own fitted point. Sets:
the held-out v2.0 articles and SQuAD v1.1 dev open (abstention_heldout's samples), news
2022-2023 (news_eval's measured years; evaluation only). Nothing is asserted.

``--reader NAME=WEIGHTS:FIT_FILE[:CHECKER]``: ``-`` for the shipped weights or fit file;
CHECKER, an answer checker's weights (``RAG_SPAN_CHECKER``) read beside the reader, with
FIT_FILE a verifier fitted with its feature.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SHARED, SQUAD_V2_HALF, collect_results  # noqa: E402
from bench.fit_verifier import no_abstention, v11_parts  # noqa: E402
from bench.news_eval import NEWS, TEST_YEARS, news_years  # noqa: E402
from rag.eval import QuestionResult, apply_abstention, result_values, split_articles  # noqa: E402
from rag.gold import GoldSet, load_gold  # noqa: E402
from rag.models import Abstention  # noqa: E402
from rag.reader import VERIFIER_FIT_FILE, SpanReader, load_abstention  # noqa: E402

SHARES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def f1_at_share(
    results: Sequence[QuestionResult], p_correct: Sequence[float], share: float
) -> float:
    """Mean F1 (SQuAD v2.0 scoring) answering the ``share`` of all questions with the highest
    P(correct) among those with a span; the rest abstain."""
    n = len(results)
    order = sorted(
        (i for i, r in enumerate(results) if r.answered), key=lambda i: p_correct[i], reverse=True
    )
    chosen = set(order[: round(share * n)])
    total = sum(r.f1 if i in chosen else float(r.impossible) for i, r in enumerate(results))
    return 100 * total / max(1, n)


def sets(seed: int, sample_seed: int, questions: int) -> dict[str, tuple[str, GoldSet]]:
    """(cache name, gold) per set, drawn as the two benches draw them."""
    _, held = split_articles(load_gold(SQUAD_V2_HALF), 0.5, seed)
    _, v11 = v11_parts(seed)
    for gold in (held, v11):
        if questions < len(gold.questions):
            gold.questions = random.Random(sample_seed).sample(gold.questions, questions)
    tag = f"seed{seed}-n{questions}-s{sample_seed}"
    news = load_gold(NEWS)
    return {
        "v2.0 held-out articles": (f"squad-v2-heldout-articles-{tag}", held),
        "v1.1 dev open": (f"squad-v1.1-heldout-articles-{tag}", v11),
        "news 2022-2023": ("news-2022-2023", news_years(news, TEST_YEARS)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--reader", action="append", required=True, help="NAME=WEIGHTS:FIT_FILE[:CHECKER]"
    )
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--sample-seed", type=int, default=1)
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "coverage")
    ap.add_argument("--out", type=Path, default=None, help="report.md (default: print)")
    args = ap.parse_args()
    if not (SHARED / "news-qa").exists():
        raise SystemExit(f"needs {SHARED}/news-qa and {SHARED}/squad")

    drawn = sets(args.seed, args.sample_seed, args.questions)
    lines = [
        "| set | reader | "
        + " | ".join(f"F1 @ {s:.0%}" for s in SHARES)
        + " | mean F1, 50-100 % | fitted: answered / F1 |",
        "|---|---|" + "---|" * (len(SHARES) + 2),
    ]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for spec in args.reader:
        name, _, paths = spec.partition("=")
        weights, _, rest = paths.partition(":")
        fit, _, checker = rest.partition(":")
        settings = no_abstention(None if weights in ("", "-") else Path(weights))
        settings = settings.model_copy(update={"span_checker": Path(checker) if checker else None})
        fit_file = VERIFIER_FIT_FILE if fit in ("", "-") else Path(fit)
        verifier = load_abstention(fit_file, SpanReader.kind, Abstention())
        for set_name, (cache_name, gold) in drawn.items():
            results = collect_results(cache_name, gold, args.cache, settings)
            p = [
                verifier.probability(result_values(r)) or 0.0 if r.answered else 0.0
                for r in results
            ]
            curve = [f1_at_share(results, p, s) for s in SHARES]
            grid = [0.5 + i / 100 for i in range(51)]
            mean = sum(f1_at_share(results, p, s) for s in grid) / len(grid)
            fitted = apply_abstention(results, verifier)
            answered = 100 * sum(r.answered for r in fitted) / max(1, len(fitted))
            fitted_f1 = 100 * sum(r.f1 for r in fitted) / max(1, len(fitted))
            summary.setdefault(set_name, {})[name] = {
                "mean": round(mean, 2),
                "answered": round(answered, 1),
                "f1": round(fitted_f1, 2),
            }
            lines.append(
                f"| {set_name} | {name} | "
                + " | ".join(f"{x:.2f}" for x in curve)
                + f" | {mean:.2f} | {answered:.1f} % / {fitted_f1:.2f} |"
            )
    text = "\n".join(sorted(lines[2:], key=lambda row: row.split("|")[1]))
    report = "\n".join(lines[:2]) + "\n" + text + "\n"
    if args.out is None:
        print(report)
        print(json.dumps(summary, indent=2))
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
        print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
