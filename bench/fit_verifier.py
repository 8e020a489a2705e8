"""Fit the span reader's answer verifier (``make fit-threshold``), reproducibly from a seed.

    .venv/bin/python bench/fit_verifier.py [--seed 13] [--out eval/reports/verifier]

The verifier is a logistic model of P(correct) over ``rag.reader.verifier.FEATURES``, and
the abstention threshold on that probability. It is fitted on what the gold sets the tests
ask never contain, article-disjoint from what it is measured on:

- a quarter of the SQuAD v2.0 dev (half) articles, drawn with the seed (their answerable
  and unanswerable questions; the open corpus is every v2.0 paragraph): half of the articles
  are held out for measuring, and the other half is split again into the span reader's
  no-answer training (``bench/reader_noanswer_data.py``) and this fit, so the verifier is
  never fitted on questions the reader was trained on;
- SQuAD v1.1 train articles, drawn with the seed, with a share of their paragraphs withheld
  from the corpus so the questions about them have no answer there (the passage is gone,
  its article's others are not: how a retrieval miss looks): ``--v11-part train``, the
  shipped fit. The reader was trained on every SQuAD train question, so its margins there
  are in-sample. ``--v11-part dev`` takes the same part from half of the SQuAD v1.1 dev
  articles outside the v2.0 half (``v11_parts``; the reader never trained on them, the
  quality gate's sample left out); ``bench/abstention_heldout.py`` measures both fits side
  by side, on the other half of those articles.
- a ``--context-share`` of each of those sets' questions once more, each after a sentence of
  another paragraph of its article (``bench.common.context_copies``): the form of a news
  quiz's question, which carries context its passage does not hold. The reader's "no
  answer" runs high on such questions whether or not the passage answers them; fitted
  without them, the verifier took news quizzes for unanswerable questions (the factorised
  verifier estimated 0.59 of news 2022-2023 answerable, where all are; with them, 0.92).
  The verifier's question-form features (``rag.reader.FORM_FEATURES``) are what let it
  tell them apart.

The factorised verifier's P(correct | answerable) is fitted apart, on the answerable
questions of the v2.0 fit articles and of the ``--correct-part`` v1.1 part (default: dev
articles, with their context copies): questions the reader never trained on, so it learns
how often a span is right as a user would find it (``CORRECT_PART``).

Every question is answered with abstention off and its verifier features are cached in
``--out`` (``bench.common.results_path``: ``runs/<name>-<pipeline fingerprint>-<gold
digest>.jsonl``), so running it again refits without reading again. The fit
writes ``rag/data/span_reader_fit.json`` (one model of P(correct)),
``rag/data/span_reader_prior_fit.json`` (the factorised verifier, P(answerable) x
P(correct | answerable), the default, at the answerable share ``RAG_SPAN_ANSWERABLE_PRIOR``
says: estimated online unless set) and the margin rule,
refitted on the same questions, to ``rag/data/span_margin_fit.json``;
``bench/abstention_heldout.py`` measures them on the
other v2.0 articles and SQuAD v1.1 dev. With ``RAG_SPAN_PROBE=true`` (the answerability
probe saved with the reader, ``bench/fit_probe.py``) or ``RAG_SPAN_CHECKER`` the verifier
weighs their features too and is written to their own fit files
(``rag.reader.verifier_fit_file``), the margin rule not at all.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CONTEXT_ID_SUFFIX,
    SHARED,
    SQUAD_V2_HALF,
    SQUAD_V11,
    checked as is_checked,
    collect_results,
    context_copies,
    probed as is_probed,
    read_results,
    results_path,
    verifier_fits,
)
from rag.eval import (  # noqa: E402
    QuestionResult,
    asked_articles,
    drop_articles,
    fit_abstention,
    fit_factorised_verifier,
    fit_verifier,
    quality_gate_sample,
    sample_articles,
    split_articles,
    withhold_paragraphs,
)
from rag.gold import GoldSet, load_gold  # noqa: E402
from rag.models import Abstention  # noqa: E402
from rag.reader import (  # noqa: E402
    MARGIN_FIT_FILE,
    SpanReader,
    offered_features,
    save_abstention,
)
from rag.settings import Settings  # noqa: E402

SQUAD_TRAIN = SHARED / "qa-train" / "squad_v1.1_train.json.gz"
V2_FIT_SET = "squad-v2-verifier-articles"
# The SQuAD v1.1 part of the fit, by where its articles come from (see the module docstring).
V11_FIT_SETS = {"train": "squad-train-withheld", "dev": "squad-dev-withheld"}
# The share of each fit set's questions read once more after a context sentence
# (``context_copies``; their sets are named with this suffix): the form of news quizzes'
# questions, answerable and not, so the verifier's question-form features have it to fit on.
CONTEXT_SHARE = 0.5
# The fit's set sizes: questions of the v2.0 fit articles (at most; they hold 865) and of
# the SQuAD v1.1 part, and the share of that part's paragraphs withheld from its corpus.
V2_QUESTIONS = 1500
V11_QUESTIONS = 1000
WITHHELD = 0.3
# Where the factorised verifier's P(correct | answerable) learns how often a span is right:
# the v2.0 fit articles and the fit half of SQuAD v1.1 dev's articles outside the v2.0 half
# (``v11_parts``; never the held-out half), questions the reader never trained on
# (as a user's are). On the v1.1 train part the reader answers questions it was trained on,
# right more often than on any question it will be asked, so a fit there is overconfident
# (ECE on news quizzes 2020-2021 0.078 -> 0.079, 2022-2023 0.085 -> 0.073, v2.0 held-out
# 0.154 -> 0.148, SQuAD v1.1 dev open 0.033 either way; eval/reports/verifier/report.md).
# P(answerable) and the decision stay on --v11-part.
CORRECT_PART = "dev"
CONTEXT_SUFFIX = "-context"
# The copies of the n-th fit set are drawn with seed + CONTEXT_SEED_OFFSET + n (apart from
# the draws the seed makes elsewhere).
CONTEXT_SEED_OFFSET = 11
# Abstention off: every question answered, so the fit sees every best span.
NO_ABSTENTION = Settings(
    reader="span", span_abstain_margin=float("-inf"), span_verifier_threshold=float("-inf")
)


def no_abstention(reader_weights: Path | None) -> Settings:
    """``NO_ABSTENTION`` with other span reader weights (None: the shipped ones)."""
    if reader_weights is None:
        return NO_ABSTENTION
    return NO_ABSTENTION.model_copy(update={"reader_weights": reader_weights})


def fit_settings(reader_weights: Path | None) -> Settings:
    """What the verifier is fitted on: ``no_abstention`` with the span reader's candidates in
    margin order (``span_selection`` "rank" with ``span_rank_weight`` 0), so that the
    verifier's fit does not depend on the span selection (``bench/span_selection.py``),
    which reorders candidates at answer time. The verifier models P(correct) from a span's
    own features, whichever rule picked it; measured, not assumed:
    ``bench/abstention_heldout.py`` and ``bench/news_eval.py`` answer with the shipped
    selection."""
    return no_abstention(reader_weights).model_copy(
        update={"span_rank_weight": 0.0, "span_selection": "rank"}
    )


DATA = {
    "train": "SQuAD v2.0 dev half (verifier-fit articles) + SQuAD v1.1 train (withheld "
    "paragraphs), open corpus; a share of each after a context sentence",
    "dev": "SQuAD v2.0 dev half (verifier-fit articles) + SQuAD v1.1 dev (fit articles outside "
    "the v2.0 half, withheld paragraphs), open corpus; a share of each after a context sentence",
}


def reader_and_verifier_parts(seed: int) -> tuple[GoldSet, GoldSet]:
    """The v2.0 fit half's articles split in two: (reader training, verifier fit)."""
    fit_half, _ = split_articles(load_gold(SQUAD_V2_HALF), 0.5, seed)
    return split_articles(fit_half, 0.5, seed + 1)


def v11_parts(seed: int) -> tuple[GoldSet, GoldSet]:
    """SQuAD v1.1 dev's questions about articles outside the v2.0 dev half, split by article
    in halves: (verifier fit, held out); both over the whole dev corpus. The reader never
    trained on either (it trained on SQuAD train and a quarter of the v2.0 half's articles,
    whose answerable questions are v1.1 dev's own)."""
    v11 = load_gold(SQUAD_V11)
    outside = drop_articles(v11, set(asked_articles(load_gold(SQUAD_V2_HALF))))
    return split_articles(outside, 0.5, seed, asked=True)


def train_withheld(
    seed: int, train_articles: int, train_questions: int, withheld: float
) -> GoldSet:
    """SQuAD v1.1 train articles drawn with ``seed``, ``withheld`` of their paragraphs out of
    the corpus (their questions unanswerable), at most ``train_questions`` questions: the
    verifier's fit set before it moved to dev articles the reader never trained on."""
    train = withhold_paragraphs(
        sample_articles(load_gold(SQUAD_TRAIN), train_articles, seed), withheld, seed
    )
    if train_questions < len(train.questions):
        train.questions = random.Random(seed).sample(train.questions, train_questions)
    return train


def fit_sets(
    seed: int,
    v2_questions: int,
    v11_part: str,
    v11_questions: int,
    withheld: float,
    context_share: float = CONTEXT_SHARE,
) -> dict[str, GoldSet]:
    """The gold sets the verifier is fitted on (see the module docstring); ``v11_part``
    ("train" or "dev") says where the SQuAD v1.1 part comes from; with ``context_share``,
    each set's ``context_copies`` too."""
    _, v2_fit = reader_and_verifier_parts(seed)
    if v2_questions < len(v2_fit.questions):
        v2_fit.questions = random.Random(seed).sample(v2_fit.questions, v2_questions)
    if v11_part == "train":
        v11 = train_withheld(seed, 30, v11_questions, withheld)
    else:
        fit_part, _ = v11_parts(seed)
        gate = {q.id for q in quality_gate_sample(load_gold(SQUAD_V11)).questions}
        fit_part.questions = [q for q in fit_part.questions if q.id not in gate]
        v11 = withhold_paragraphs(fit_part, withheld, seed)
        if v11_questions < len(v11.questions):
            v11.questions = random.Random(seed).sample(v11.questions, v11_questions)
    sets = {V2_FIT_SET: v2_fit, V11_FIT_SETS[v11_part]: v11}
    if context_share > 0:
        sets |= {
            name + CONTEXT_SUFFIX: context_copies(gold, context_share, seed + i)
            for i, (name, gold) in enumerate(list(sets.items()), start=CONTEXT_SEED_OFFSET)
        }
    return sets


def fit_results(
    seed: int,
    cache: Path,
    settings: Settings,
    v11_part: str = "train",
    context_share: float = CONTEXT_SHARE,
) -> list[QuestionResult]:
    """The cached results of a fit run with the default set sizes (``cache/runs``), in the
    order the fit reads them; refused when the run was not made (the cache is keyed by each
    set's questions and corpus, so a run drawn otherwise is not it)."""
    sets = fit_sets(seed, V2_QUESTIONS, v11_part, V11_QUESTIONS, WITHHELD, context_share)
    paths = [
        results_path(f"{name}-seed{seed}", gold, cache / "runs", settings)
        for name, gold in sets.items()
    ]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(
            f"no fit runs at {missing}: run bench/fit_verifier.py --seed {seed} "
            f"--v11-part {v11_part} --context-share {context_share:g}"
        )
    return [r for p in paths for r in read_results(p)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument(
        "--v2-questions", type=int, default=V2_QUESTIONS, help="of the v2.0 fit articles"
    )
    ap.add_argument(
        "--v11-part", choices=sorted(V11_FIT_SETS), default="train", help="the SQuAD v1.1 part"
    )
    ap.add_argument(
        "--correct-part",
        choices=sorted(V11_FIT_SETS),
        default=CORRECT_PART,
        help="the SQuAD v1.1 part the factorised verifier's P(correct | answerable) is "
        "fitted on, beside the v2.0 fit articles",
    )
    ap.add_argument(
        "--v11-questions", type=int, default=V11_QUESTIONS, help="of the SQuAD v1.1 part"
    )
    ap.add_argument(
        "--withheld", type=float, default=WITHHELD, help="share of v1.1 paragraphs removed"
    )
    ap.add_argument(
        "--context-share",
        type=float,
        default=CONTEXT_SHARE,
        help="of each fit set's questions, read once more after a context sentence (0: none)",
    )
    ap.add_argument("--keep", type=float, default=0.9, help="answerable F1 the threshold keeps")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "verifier")
    ap.add_argument(
        "--fit-file",
        type=Path,
        help="default: the shipped one (with RAG_SPAN_CHECKER or RAG_SPAN_PROBE, their own)",
    )
    ap.add_argument("--margin-file", type=Path, default=MARGIN_FIT_FILE)
    ap.add_argument("--prior-fit-file", type=Path, help="default: the shipped one (ditto)")
    ap.add_argument("--reader-weights", type=Path, default=None, help="default: the shipped")
    args = ap.parse_args()

    settings = fit_settings(args.reader_weights)
    checked, probed = is_checked(settings), is_probed(settings)
    args.fit_file, args.prior_fit_file = verifier_fits(settings, args.fit_file, args.prior_fit_file)
    results: list[QuestionResult] = []

    def sets_with(v11_part: str) -> dict[str, GoldSet]:
        """The fit's sets with the SQuAD v1.1 part from ``v11_part``."""
        return fit_sets(
            args.seed,
            args.v2_questions,
            v11_part,
            args.v11_questions,
            args.withheld,
            args.context_share,
        )

    read: dict[str, list[QuestionResult]] = {}
    for name, gold in sets_with(args.v11_part).items():
        read[name] = collect_results(f"{name}-seed{args.seed}", gold, args.out / "runs", settings)
        rows = read[name]
        print(f"{name}: {len(rows)} questions, {sum(r.impossible for r in rows)} unanswerable")
        results += rows
    # P(correct | answerable)'s own questions (see CORRECT_PART): the same v2.0 sets, cached
    # above, and the v1.1 part of --correct-part.
    graded: list[QuestionResult] = []
    for name, gold in sets_with(args.correct_part).items():
        if name not in read:
            read[name] = collect_results(
                f"{name}-seed{args.seed}", gold, args.out / "runs", settings
            )
            print(f"{name}: {len(read[name])} questions (P(correct | answerable) only)")
        graded += read[name]
    provenance = {
        "data": DATA[args.v11_part],
        "seed": args.seed,
        "context_share": args.context_share,
        "command": ("RAG_SPAN_PROBE=true " if probed else "")
        + ("RAG_SPAN_CHECKER=<folder> " if checked else "")
        + f"python bench/fit_verifier.py --seed {args.seed}"
        + ("" if args.v11_part == "train" else f" --v11-part {args.v11_part}")
        + (
            ""
            if args.context_share == CONTEXT_SHARE
            else f" --context-share {args.context_share:g}"
        )
        + ("" if args.correct_part == CORRECT_PART else f" --correct-part {args.correct_part}"),
    }
    if not checked and not probed:
        # The margin rule (RAG_SPAN_VERIFIER=false), fitted on the same questions (the
        # checker and the probe change no margin: a run with either fits the same rule, so
        # it writes none).
        # Without the context copies: the margin has no feature to tell their raised "no
        # answer" apart, so they would only move its threshold.
        plain = [r for r in results if not r.id.endswith(CONTEXT_ID_SUFFIX)]
        margin = fit_abstention(plain, Abstention(features=("score",), objective="f1"), args.keep)
        save_abstention(
            args.margin_file, SpanReader.kind, margin.abstention, **margin.report, **provenance
        )
        print(f"wrote {args.margin_file}")
    # What the reader offers: with its answerability probe and the answer checker
    # (RAG_SPAN_CHECKER), their features too.
    features = offered_features(probed, checked)
    graded_data = {"correct_if_answerable_data": DATA[args.correct_part] + " (answerable ones)"}
    for path, fit, extra in (
        (args.fit_file, fit_verifier(results, features, keep=args.keep), {}),
        (
            args.prior_fit_file,
            fit_factorised_verifier(results, features, keep=args.keep, correct_results=graded),
            graded_data,
        ),
    ):
        save_abstention(path, SpanReader.kind, fit.abstention, **fit.report, **provenance, **extra)
        print(json.dumps(fit.report, indent=2))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
