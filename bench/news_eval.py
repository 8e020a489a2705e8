"""News beside SQuAD-open: answers, abstention, calibration, and where the F1 is lost.

    .venv/bin/python bench/news_eval.py [--out eval/reports/news]

Sets, each open corpus (retrieval over every passage of its file):

- SQuAD v1.1 dev, the 1,000 questions ``bench/abstention_heldout.py`` samples of the
  articles the verifier's fit leaves out (sample seed 1; its cached run is reused);
- news quizzes (RealTimeQA 2020-2023, ``../shared/data/news-qa``; evaluation only, never
  copied into the project) split by the quiz's year: 2020-2021 is the part that may be used
  for development and fitting, 2022-2023 the part that is only measured.

Every question is answered once with abstention off (cached by the pipeline fingerprint);
each decision rule is then applied to the same results (``rag.eval.apply_abstention``):
never abstain, the one-model verifier, the factorised verifier at the answerable share
EM estimates from the set's own unlabelled P(answerable), and at the share estimated as the
questions come, in the set's order (``RAG_SPAN_ANSWERABLE_PRIOR=online``). For each:
EM/F1, answered share, ECE, answer-hit@5/@20, and the three-way loss split
(``rag.eval.loss_split``: retrieval, abstention, reader). Nothing is asserted; report.md
and results.json go to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SHARED, collect_results, verifier_fits  # noqa: E402
from bench.fit_verifier import no_abstention, v11_parts  # noqa: E402
from rag.eval import (  # noqa: E402
    QuestionResult,
    answer_metrics,
    apply_abstention,
    apply_online_prior,
    calibration,
    loss_split,
    result_values,
    retrieval_metrics,
)
from rag.gold import GoldSet, load_gold  # noqa: E402
from rag.models import Abstention  # noqa: E402
from rag.reader import SpanReader, estimate_prior, load_abstention  # noqa: E402

NEWS = SHARED / "news-qa" / "realtimeqa-2020-2023.json.gz"
# The quiz years: development (may be fitted on) and measurement (never fitted on).
DEV_YEARS = ("2020", "2021")
TEST_YEARS = ("2022", "2023")


def news_years(gold: GoldSet, years: Sequence[str]) -> GoldSet:
    """The questions of quizzes dated in ``years`` (ids start with the date), over the
    whole corpus of evidence passages."""
    part = dataclasses.replace(gold)
    part.questions = [q for q in gold.questions if q.id[:4] in years]
    return part


def figures(results: Sequence[QuestionResult], top_k: int) -> dict[str, Any]:
    """One set under one rule."""
    a = answer_metrics(results)
    ranks = [r.answer_rank for r in results if not r.impossible]
    hit = retrieval_metrics(ranks, [], (5, 20))["recall_answer"]
    return {
        "n": a["n"],
        "em": a["em"],
        "f1": a["f1"],
        "answered": a["answered_share"],
        "ece": calibration(results)["ece"],
        "hit@5": hit["5"],
        "hit@20": hit["20"],
        "loss_split": loss_split(results, top_k),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--squad-questions", type=int, default=1000)
    ap.add_argument("--sample-seed", type=int, default=1)
    ap.add_argument("--fit-seed", type=int, default=13, help="the verifier fit's seed (its runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "news")
    ap.add_argument("--cache", type=Path, default=ROOT / "eval" / "reports" / "verifier" / "runs")
    ap.add_argument("--reader-weights", type=Path, default=None, help="default: the shipped")
    ap.add_argument("--fit-file", type=Path, help="default: the shipped fit")
    ap.add_argument("--prior-fit-file", type=Path, help="default: the shipped fit")
    args = ap.parse_args()

    settings = no_abstention(args.reader_weights)
    args.fit_file, args.prior_fit_file = verifier_fits(settings, args.fit_file, args.prior_fit_file)
    _, squad = v11_parts(args.fit_seed)
    squad.questions = random.Random(args.sample_seed).sample(squad.questions, args.squad_questions)
    news = load_gold(NEWS)
    tag = f"seed{args.fit_seed}-n{args.squad_questions}-s{args.sample_seed}"
    sets = {
        "SQuAD v1.1 dev open": collect_results(
            f"squad-v1.1-heldout-articles-{tag}", squad, args.cache, settings
        ),
        "news 2020-2021 (dev)": collect_results(
            "news-2020-2021", news_years(news, DEV_YEARS), args.cache, settings
        ),
        "news 2022-2023 (measured)": collect_results(
            "news-2022-2023", news_years(news, TEST_YEARS), args.cache, settings
        ),
    }
    default = load_abstention(args.fit_file, SpanReader.kind, Abstention())
    factorised = load_abstention(args.prior_fit_file, SpanReader.kind, Abstention())
    if factorised.answerable is None or factorised.fit_prior is None:
        raise SystemExit(f"{args.prior_fit_file} holds no factorised verifier: make fit-threshold")
    top_k = settings.top_k
    rows: dict[str, dict[str, Any]] = {}
    priors: dict[str, float] = {}
    for name, rs in sets.items():
        p = [factorised.answerable_probability(result_values(r)) or 0.0 for r in rs if r.answered]
        priors[name] = round(min(1.0, max(1e-4, estimate_prior(p, factorised.fit_prior))), 4)
        rules = {
            "never abstain": Abstention(threshold=float("-inf")),
            "one-model verifier": default,
            "factorised, estimated prior": dataclasses.replace(factorised, prior=priors[name]),
        }
        for rule, abstention in rules.items():
            rows.setdefault(rule, {})[name] = figures(apply_abstention(rs, abstention), top_k)
        # As a pipeline with RAG_SPAN_ANSWERABLE_PRIOR=online decides them, asked in order.
        online = apply_online_prior(
            rs, factorised, settings.span_prior_window, settings.span_prior_pseudo_count
        )
        rows.setdefault("factorised, online prior (the default)", {})[name] = figures(online, top_k)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"estimated_answerable_share": priors, "rules": rows}, indent=2) + "\n"
    )
    lines = [
        "# News beside SQuAD-open",
        "",
        "Command: `python bench/news_eval.py`. Open corpus per set; questions: "
        + ", ".join(f"{name} {len(rs)}" for name, rs in sets.items())
        + f". The reader reads the top {top_k} passages.",
        "",
        "| rule | set | EM | F1 | answered % | ECE | hit@5 | hit@20 | F1 lost: retrieval "
        "| abstention | reader |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rule, by_set in rows.items():
        for name, f in by_set.items():
            s = f["loss_split"]
            lines.append(
                f"| {rule} | {name} | {f['em']} | {f['f1']} | {f['answered']} | {f['ece']} "
                f"| {f['hit@5']} | {f['hit@20']} | {s['retrieval']['f1_lost']} "
                f"| {s['abstention']['f1_lost']} | {s['reader']['f1_lost']} |"
            )
    lines += [
        "",
        "F1 lost: F1 points of the answerable questions lost where no passage read holds a "
        "gold answer (retrieval), where the span held back was right (abstention), and "
        "where the span was wrong or partial (reader); with the F1 they sum to 100.",
        "",
        "Answerable share estimated (EM on each set's unlabelled P(answerable)): "
        + ", ".join(f"{k} {v}" for k, v in priors.items())
        + ".",
    ]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
