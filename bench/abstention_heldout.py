"""The answer decision on questions the fit never saw: held-out SQuAD v2.0 articles (mixed)
and SQuAD v1.1 dev (all answerable), open corpus; with ablations and a learning curve.

    .venv/bin/python bench/abstention_heldout.py [--questions 1000] [--seed 13]

``bench/fit_verifier.py`` (``make fit-threshold``) fits the verifier on half of the v2.0
dev-half articles (drawn with ``--seed``) and on SQuAD train. Here every question of the
other half's articles (a sample of ``--questions``) and of SQuAD v1.1 dev is answered once
with abstention off, its verifier features cached; each decision rule is then applied to the
same results (``rag.eval.apply_abstention``: what the composer decides from those values):

- never abstain;
- the margin alone (today's rule before the verifier: a threshold on the span margin and
  Platt scaling of it), refitted on the verifier's own fit data;
- the verifier on feature groups (reader / + retrieval / + question and answer: all), and
  on growing shares of its fit data (the learning curve);
- the factorised verifier (P(answerable) x P(correct | answerable)) at its fit prior, at
  the prior estimated from each set's own unlabelled P(answerable) values (EM, Saerens et
  al. 2002: what a deployment could learn from its questions), and at the set's true
  share of answerable questions (what a deployment that knows it sets in
  RAG_SPAN_ANSWERABLE_PRIOR);
- the one-model verifier from ``rag/data/span_reader_fit.json`` and the factorised one from
  ``rag/data/span_reader_prior_fit.json`` at the online share (the default), beside the
  same factorised fit with P(correct | answerable) fitted the way it was before
  ``--correct-part``: on the decision's own questions, the v1.1 part in-sample for the
  reader.

Nothing is asserted; the report goes to ``--out`` (report.md, results.json, reliability
diagrams of the default on both sets).
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

from bench.common import (  # noqa: E402
    CONTEXT_ID_SUFFIX,
    SQUAD_V2_HALF,
    collect_results,
    verifier_fits,
)
from bench.fit_verifier import (  # noqa: E402
    V2_QUESTIONS,
    V11_QUESTIONS,
    WITHHELD,
    fit_results,
    fit_sets,
    fit_settings,
    no_abstention,
    v11_parts,
)
from rag.eval import (  # noqa: E402
    QuestionResult,
    answer_metrics,
    apply_abstention,
    apply_online_prior,
    calibration,
    fit_abstention,
    fit_factorised_verifier,
    fit_verifier,
    result_values,
    split_articles,
)
from rag.gold import load_gold  # noqa: E402
from rag.models import Abstention  # noqa: E402
from rag.reader import (  # noqa: E402
    FORM_FEATURES,
    PROBE_FEATURES,
    READER_FEATURES,
    RETRIEVAL_FEATURES,
    SpanReader,
    estimate_prior,
    load_abstention,
    offered_features,
)
from rag.settings import Settings  # noqa: E402

# The factorised verifier at the answerable share estimated as the questions come, with the
# default window and pseudo-count (RAG_SPAN_ANSWERABLE_PRIOR=online).
# (``{fit}``: the factorised fit file the run read, e.g. rag/data/span_reader_prior_fit.json.)
ONLINE_RULE = "factorised ({fit}), online prior: the default"


def shown(path: Path) -> str:
    """A fit file's path as the report names it (relative to the repository when inside)."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


GROUPS: dict[str, tuple[str, ...]] = {
    "reader": READER_FEATURES,
    "reader + retrieval": READER_FEATURES + RETRIEVAL_FEATURES,
}


def summary(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """The figures the issue asks for, on one set under one rule."""
    a = answer_metrics(results)
    return {
        "answered": a["answered_share"],
        "em": a["em"],
        "f1": a["f1"],
        "has_answer_f1": a["has_answer"]["f1"],
        "no_answer_recall": a["abstention"]["recall"] if a["no_answer"]["n"] else None,
        "no_answer_precision": a["abstention"]["precision"] if a["no_answer"]["n"] else None,
        "ece": calibration(results)["ece"],
    }


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Area under the ROC curve: P(a positive outscores a negative), ties counting half."""
    pos = [x for x, y in zip(scores, positive, strict=True) if y]
    neg = [x for x, y in zip(scores, positive, strict=True) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return round(wins / (len(pos) * len(neg)), 4)


def abstention_frontier(
    scores: Sequence[float], unanswerable: Sequence[bool], recall: float, precision: float
) -> dict[str, float | None]:
    """What the best threshold on one score can reach, abstaining below it: the highest
    no-answer precision at no-answer recall >= ``recall``, and the highest recall at
    precision >= ``precision`` (None where no threshold gets there). Ties are cut as one."""
    pairs = sorted(zip(scores, unanswerable, strict=True))
    total = sum(unanswerable)
    best_p: float | None = None
    best_r: float | None = None
    hits = 0
    for k, (score, y) in enumerate(pairs, start=1):
        hits += y
        if k < len(pairs) and pairs[k][0] == score:
            continue
        r, p = hits / max(1, total), hits / k
        if r >= recall:
            best_p = p if best_p is None else max(best_p, p)
        if p >= precision:
            best_r = r if best_r is None else max(best_r, r)
    return {
        f"precision_at_recall_{recall:g}": None if best_p is None else round(100 * best_p, 1),
        f"recall_at_precision_{precision:g}": None if best_r is None else round(100 * best_r, 1),
    }


def reliability_png(results: Sequence[QuestionResult], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in calibration(results)["bins"] if b["n"]]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-")
    for b in bins:
        ax.annotate(str(b["n"]), (b["confidence"], b["accuracy"]), fontsize=7)
    ax.set(xlabel="confidence", ylabel="share correct", title=title, xlim=(0, 1), ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    keys = ("answered", "f1", "has_answer_f1", "no_answer_recall", "no_answer_precision", "ece")
    out = [
        "| rule | set | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for rule, sets in rows.items():
        for name, m in sets.items():
            out.append(f"| {rule} | {name} | " + " | ".join(str(m[k]) for k in keys) + " |")
    return out


DEV_FIT = "verifier: all, v1.1 part from dev articles (reader out-of-sample)"
IN_SAMPLE_RULE = (
    "factorised, P(correct given answerable) fitted on the decision's questions (v1.1 part "
    "in-sample for the reader), online prior"
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13, help="the fit's seed (its article split)")
    ap.add_argument("--questions", type=int, default=1000, help="per held-out set")
    ap.add_argument("--sample-seed", type=int, default=1)
    ap.add_argument("--fit-cache", type=Path, default=ROOT / "eval" / "reports" / "verifier")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "verifier")
    ap.add_argument("--reader-weights", type=Path, default=None, help="default: the shipped")
    ap.add_argument("--fit-file", type=Path, help="the default rule (default: the shipped fit)")
    ap.add_argument("--prior-fit-file", type=Path, help="default: the shipped fit")
    args = ap.parse_args()

    settings = no_abstention(args.reader_weights)
    args.fit_file, args.prior_fit_file = verifier_fits(settings, args.fit_file, args.prior_fit_file)
    _, held = split_articles(load_gold(SQUAD_V2_HALF), 0.5, args.seed)
    _, v11 = v11_parts(args.seed)
    for gold in (held, v11):
        if args.questions < len(gold.questions):
            gold.questions = random.Random(args.sample_seed).sample(gold.questions, args.questions)
    tag = f"seed{args.seed}-n{args.questions}-s{args.sample_seed}"
    sets = {
        "v2.0 held-out articles": collect_results(
            f"squad-v2-heldout-articles-{tag}", held, args.out / "runs", settings
        ),
        "v1.1 dev open": collect_results(
            f"squad-v1.1-heldout-articles-{tag}", v11, args.out / "runs", settings
        ),
    }
    fit_rows = fit_results(args.seed, args.fit_cache, fit_settings(args.reader_weights))
    plain_rows = [r for r in fit_rows if not r.id.endswith(CONTEXT_ID_SUFFIX)]
    rules: dict[str, Abstention] = {
        "never abstain": Abstention(threshold=float("-inf")),
        # As bench/fit_verifier.py fits it: without the context copies.
        "margin (threshold + Platt)": fit_abstention(
            plain_rows, Abstention(features=("score",), objective="f1"), keep=0.9
        ).abstention,
    }
    # With the reader's answerability probe and the answer checker (RAG_SPAN_CHECKER),
    # "all" and every fit below see their features too; what the probe buys is a row.
    offered = fit_rows[0].features if fit_rows else {}
    full = offered_features("probe" in offered, "check" in offered)
    groups = {**GROUPS, "all": full}
    if "probe" in offered:
        groups["all but the probe"] = tuple(f for f in full if f not in PROBE_FEATURES)
    for group, names in groups.items():
        rules[f"verifier: {group}"] = fit_verifier(fit_rows, names, keep=0.9).abstention
    # What the question-form features and the context copies each buy.
    formless = tuple(f for f in full if f not in FORM_FEATURES)
    rules["verifier: all but the question form"] = fit_verifier(
        fit_rows, formless, keep=0.9
    ).abstention
    rules["verifier: all, fitted without the context copies"] = fit_verifier(
        plain_rows, full, keep=0.9
    ).abstention
    for share in (0.1, 0.25, 0.5):
        part = random.Random(args.seed).sample(fit_rows, round(share * len(fit_rows)))
        rules[f"verifier: all, {share:.0%} of fit data"] = fit_verifier(
            part, full, keep=0.9
        ).abstention
    # The same fit with its SQuAD v1.1 part from dev articles the reader never trained on
    # (bench/fit_verifier.py --v11-part dev): the in-sample question, measured.
    fitting = fit_settings(args.reader_weights)
    dev_rows = [
        r
        for name, gold in fit_sets(args.seed, V2_QUESTIONS, "dev", V11_QUESTIONS, WITHHELD).items()
        for r in collect_results(f"{name}-seed{args.seed}", gold, args.fit_cache / "runs", fitting)
    ]
    rules[DEV_FIT] = fit_verifier(dev_rows, full, keep=0.9).abstention
    dev_factorised = fit_factorised_verifier(dev_rows, full, keep=0.9).abstention
    default = load_abstention(args.fit_file, SpanReader.kind, Abstention())
    rules[f"one-model verifier ({shown(args.fit_file)})"] = default

    rows = {
        rule: {name: summary(apply_abstention(rs, a)) for name, rs in sets.items()}
        for rule, a in rules.items()
    }
    factorised = load_abstention(args.prior_fit_file, SpanReader.kind, Abstention())
    if factorised.answerable is None or factorised.fit_prior is None:
        raise SystemExit(f"{args.prior_fit_file} holds no factorised verifier: make fit-threshold")
    priors: dict[str, dict[str, float]] = {}
    for name, rs in sets.items():
        # Over the questions with a best span (the others have no features to weigh).
        read = [r for r in rs if r.answered]
        p = [factorised.answerable_probability(result_values(r)) or 0.0 for r in read]
        share = sum(not r.impossible for r in read) / max(1, len(read))
        priors[name] = {
            "fit": factorised.fit_prior,
            "estimated": round(min(1.0, max(1e-4, estimate_prior(p, factorised.fit_prior))), 4),
            "true": round(min(1.0, max(1e-4, share)), 4),
        }
    held_v2 = [r for r in sets["v2.0 held-out articles"] if r.answered]
    answerability_auc = {
        "margin": auc([r.score for r in held_v2], [not r.impossible for r in held_v2]),
        "P(answerable)": auc(
            [factorised.answerable_probability(result_values(r)) or 0.0 for r in held_v2],
            [not r.impossible for r in held_v2],
        ),
    }
    if held_v2 and "check" in held_v2[0].features:
        answerability_auc["checker"] = auc(
            [r.features["check"] for r in held_v2], [not r.impossible for r in held_v2]
        )
    # Questions without a span are abstentions at every threshold.
    everything = sets["v2.0 held-out articles"]
    impossible = [r.impossible for r in everything]

    def score_of(f: Any) -> list[float]:
        return [f(result_values(r)) if r.answered else float("-inf") for r in everything]

    frontier = {
        name: abstention_frontier(score_of(f), impossible, 0.6, 0.8)
        for name, f in {
            "margin": lambda v: v["score"],
            "one-model P(correct)": lambda v: default.probability(v) or 0.0,
            "P(answerable)": lambda v: factorised.answerable_probability(v) or 0.0,
        }.items()
    }
    for how in ("fit", "estimated", "true"):
        rows[f"factorised ({shown(args.prior_fit_file)}), {how} prior"] = {
            name: summary(
                apply_abstention(rs, dataclasses.replace(factorised, prior=priors[name][how]))
            )
            for name, rs in sets.items()
        }
    online = Settings()
    rows[ONLINE_RULE.format(fit=shown(args.prior_fit_file))] = {
        name: summary(
            apply_online_prior(
                rs, factorised, online.span_prior_window, online.span_prior_pseudo_count
            )
        )
        for name, rs in sets.items()
    }
    # What fitting P(correct | answerable) on questions the reader never trained on buys
    # (bench/fit_verifier.py's CORRECT_PART): the same fit, that part on every fit question.
    in_sample = fit_factorised_verifier(fit_rows, full, keep=0.9).abstention
    rows[IN_SAMPLE_RULE] = {
        name: summary(
            apply_online_prior(
                rs, in_sample, online.span_prior_window, online.span_prior_pseudo_count
            )
        )
        for name, rs in sets.items()
    }
    dev_priors: dict[str, float] = {}
    for name, rs in sets.items():
        p = [
            dev_factorised.answerable_probability(result_values(r)) or 0.0 for r in rs if r.answered
        ]
        fit_prior = dev_factorised.fit_prior or 0.5
        dev_priors[name] = round(min(1.0, max(1e-4, estimate_prior(p, fit_prior))), 4)
    rows[f"factorised, {DEV_FIT[len('verifier: all, ') :]}, estimated prior"] = {
        name: summary(
            apply_abstention(rs, dataclasses.replace(dev_factorised, prior=dev_priors[name]))
        )
        for name, rs in sets.items()
    }
    for name, rs in sets.items():
        slug = "v2-heldout" if name.startswith("v2") else "v1.1-open"
        adapted = dataclasses.replace(factorised, prior=priors[name]["estimated"])
        reliability_png(
            apply_abstention(rs, adapted),
            f"{name} (factorised, estimated prior)",
            args.out / f"reliability-{slug}-estimated-prior.png",
        )
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rs in sets.items():
        slug = "v2-heldout" if name.startswith("v2") else "v1.1-open"
        decided = apply_online_prior(
            rs, factorised, online.span_prior_window, online.span_prior_pseudo_count
        )
        reliability_png(
            decided, f"{name} (default: online prior)", args.out / f"reliability-{slug}.png"
        )
    (args.out / "heldout.json").write_text(
        json.dumps(
            {
                "fit_questions": len(fit_rows),
                "held_out": {k: len(v) for k, v in sets.items()},
                "answerable_priors": priors,
                "answerability_auc_v2_heldout": answerability_auc,
                "best_threshold_v2_heldout": frontier,
                "rules": rows,
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        "# The answer decision on held-out questions",
        "",
        f"Fit: {len(fit_rows)} questions (bench/fit_verifier.py --seed {args.seed}; "
        f"{args.fit_file.name}, {args.prior_fit_file.name}); held out: "
        + ", ".join(f"{k} {len(v)}" for k, v in sets.items())
        + f". Command: `python bench/abstention_heldout.py --seed {args.seed} "
        f"--questions {args.questions}`.",
        "",
        *table(rows),
        "",
        f"The dev-article fit's factorised verifier estimates answerable shares {dev_priors}.",
        "",
        "Answerable share per set for the factorised verifier (fit: its fit data's; "
        "estimated: EM on the set's unlabelled P(answerable); true: the set's own): "
        + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v}" for k, v in pr.items())
            for name, pr in priors.items()
        )
        + ".",
        "",
        "Answerability AUC on the v2.0 held-out articles (answerable vs. not, every "
        "question with a best span): "
        + ", ".join(f"{k} {v}" for k, v in answerability_auc.items())
        + ".",
        "",
        "The most any threshold on each score reaches on the v2.0 held-out articles "
        "(abstaining below it; the target is no-answer recall >= 60% at precision >= 80%): "
        + "; ".join(
            f"{name}: precision {v['precision_at_recall_0.6']}% at recall >= 60%, "
            f"recall {v['recall_at_precision_0.8']}% at precision >= 80%"
            for name, v in frontier.items()
        )
        + ".",
        "",
        "Reliability of the default (the factorised verifier at the online prior), then at "
        "each set's estimated prior:",
        "",
        "![v2.0](reliability-v2-heldout.png) ![v1.1](reliability-v1.1-open.png)",
        "",
        "![v2.0](reliability-v2-heldout-estimated-prior.png) "
        "![v1.1](reliability-v1.1-open-estimated-prior.png)",
    ]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
