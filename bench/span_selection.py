"""Which of the read passages' spans to answer with: the rank weight, fitted and measured.

    .venv/bin/python bench/span_selection.py [--fit-only] [--write rag/data/span_selection_fit.json]

Given the gold passage, the span reader's F1 on the news quiz years is 74-77, but over the
open corpus, reading the top 5 passages with abstention off, it is 56-58 though the answer
is in the top 5 for 96 % of the questions; on SQuAD the same gap is 83 -> 76. So much of
the loss is in choosing among the passages' spans. The reader ranked every candidate by its
margin over its window's no-answer score; on news the no-answer score is high in every
window (paraphrased quiz questions), and margins of different windows compare badly.

``SpanReader`` answers with the candidate its fitted selection scores highest
(``rag.reader.selection``: a conditional logit over each question's candidates of the
verifier's features, the read passage's rank, the other passages' agreement and the
answer's shape), or with ``RAG_SPAN_SELECTION=rank`` the highest margin - w * log(read
rank) (``rag.reader.read_rank``). This bench reads each question once (retrieval, reranker,
the reader's candidates in margin order: up to 10 per window), caches every candidate's
text, features, read rank and EM/F1 against the gold answers, fits the selection
(``rag.eval.fit_selection``) and scores it and every w of a grid on the same candidates.
Both are fitted on SQuAD v1.1 train questions only (the verifier fit's train articles,
paragraphs withheld as there; news is never fitted on) and measured on SQuAD v1.1 dev open
(the 1,000 held-out-article questions of the other benches) and the news quiz years.
``--fit-set dev`` fits on the verifier's out-of-sample alternative instead
(``bench/fit_verifier.py --v11-part dev``: SQuAD v1.1 dev articles the reader never trained
on), to measure whether the reader's in-sample margins on train questions move the fit.
Abstention is off throughout; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import gold_digest, pipeline_fingerprint  # noqa: E402
from bench.fit_verifier import fit_sets, no_abstention, v11_parts  # noqa: E402
from bench.news_eval import DEV_YEARS, NEWS, TEST_YEARS, news_years  # noqa: E402
from rag.eval import Evaluator, fit_selection  # noqa: E402
from rag.gold import GoldSet, exact_match, f1, load_gold  # noqa: E402
from rag.reader import (  # noqa: E402
    Selection,
    SpanReader,
    read_rank,
    save_rank_weight,
    selection_rows,
)
from rag.settings import Settings  # noqa: E402

Candidate = dict[str, Any]
# The weights measured; the fit picks the best on the SQuAD train questions.
GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
FIT_SETS = {"train": "fit: SQuAD train withheld", "dev": "fit: SQuAD dev withheld"}


def dump_candidates(gold: GoldSet, path: Path, settings: Settings, batch: int) -> None:
    """Every answerable question's candidates in margin order (margin, no-answer score, read
    rank, EM, F1, text, verifier features), one JSON line per question, read with
    ``settings`` (the rank rule: no selection fit is loaded, so a damaged one is refit)."""
    pipe = Evaluator(settings, progress=False).pipeline_for(gold)
    margin = settings.span_margin_chars
    reader = SpanReader(
        Path(settings.reader_weights),
        margin_chars=margin,
        dtype=settings.span_dtype,
        pad_multiple=settings.span_pad_multiple,
        batch_multiple=settings.span_batch_multiple,
    )
    questions = [q for q in gold.questions if q.answers]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for i in range(0, len(questions), batch):
            block = questions[i : i + batch]
            passages = pipe.retrieve_batch([q.question for q in block])
            documents = pipe.documents_of([p for ps in passages for p in ps])
            spans = reader.read_batch([q.question for q in block], passages, documents)
            for q, ps, sp in zip(block, passages, spans, strict=True):
                rows = [
                    {
                        "score": s.score,
                        "null": (s.features or {}).get("null", 0.0),
                        "read_rank": read_rank(s.doc_id, s.start, s.end, ps, margin),
                        "em": exact_match(s.text, q.answer_texts),
                        "f1": f1(s.text, q.answer_texts),
                        "text": s.text,
                        "features": dict(s.features or {}),
                    }
                    for s in sp
                ]
                fh.write(json.dumps({"id": q.id, "candidates": rows}) + "\n")
            print(f"{path.name}: {min(i + batch, len(questions))}/{len(questions)}", flush=True)
    tmp.replace(path)


def load_candidates(path: Path) -> list[list[Candidate]]:
    return [json.loads(line)["candidates"] for line in path.read_text().splitlines()]


def load_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def selected(questions: Sequence[list[Candidate]], w: float) -> dict[str, float]:
    """EM/F1 (percent, abstention off) answering each question with the candidate of
    highest margin - w * log(read rank), as ``SpanReader`` ranks them."""
    em = f = 0.0
    for cands in questions:
        if cands:
            best = max(cands, key=lambda c: c["score"] - w * math.log(c["read_rank"]))
            em += best["em"]
            f += best["f1"]
    n = max(1, len(questions))
    return {"em": round(100 * em / n, 2), "f1": round(100 * f / n, 2)}


def rows_of(cands: Sequence[Candidate]) -> list[dict[str, float]]:
    """The selection's features of one question's cached candidates."""
    return selection_rows(
        [str(c["text"]) for c in cands],
        [c["features"] for c in cands],
        [int(c["read_rank"]) for c in cands],
    )


def chosen(questions: Sequence[list[Candidate]], selection: Selection) -> dict[str, float]:
    """EM/F1 (percent, abstention off) answering each question with the candidate the
    fitted selection scores highest, as ``SpanReader`` does."""
    em = f = 0.0
    for cands in questions:
        if cands:
            scores = selection.scores(rows_of(cands))
            best = cands[max(range(len(cands)), key=lambda i: scores[i])]
            em += best["em"]
            f += best["f1"]
    n = max(1, len(questions))
    return {"em": round(100 * em / n, 2), "f1": round(100 * f / n, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "selection")
    ap.add_argument("--reader-weights", type=Path, default=None)
    ap.add_argument("--squad-questions", type=int, default=1000)
    ap.add_argument("--sample-seed", type=int, default=1)
    ap.add_argument("--fit-seed", type=int, default=13)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--fit-only", action="store_true", help="read the fit set only")
    ap.add_argument("--fit-set", choices=sorted(FIT_SETS), default="train", help="its v1.1 part")
    ap.add_argument("--write", type=Path, default=None, help="the fit file (SELECTION_FIT_FILE)")
    args = ap.parse_args()

    fit_name = FIT_SETS[args.fit_set]
    fit = fit_sets(args.fit_seed, 1500, args.fit_set, 1000, 0.3, context_share=0.0)
    sets: dict[str, GoldSet] = {fit_name: fit[f"squad-{args.fit_set}-withheld"]}
    if not args.fit_only:
        _, squad = v11_parts(args.fit_seed)
        squad.questions = random.Random(args.sample_seed).sample(
            squad.questions, args.squad_questions
        )
        news = load_gold(NEWS)
        sets["news 2020-2021 (dev)"] = news_years(news, DEV_YEARS)
        sets["SQuAD v1.1 dev open"] = squad
        sets["news 2022-2023 (measured)"] = news_years(news, TEST_YEARS)
    args.cache.mkdir(parents=True, exist_ok=True)
    data: dict[str, list[list[Candidate]]] = {}
    ids: dict[str, list[str]] = {}
    for name, gold in sets.items():
        slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
        # Candidates do not depend on the rank weight: cached under the weight 0 pipeline.
        unranked = no_abstention(args.reader_weights).model_copy(
            update={"span_rank_weight": 0.0, "span_selection": "rank"}
        )
        tag = f"{pipeline_fingerprint(unranked)}-{gold_digest(gold)}"
        path = args.cache / f"{slug}-seed{args.fit_seed}-{tag}.jsonl"
        if not path.exists():
            dump_candidates(gold, path, unranked, args.batch)
        data[name] = load_candidates(path)
        ids[name] = load_ids(path)
    curve = {w: {name: selected(qs, w) for name, qs in data.items()} for w in GRID}
    best = max(GRID, key=lambda w: (curve[w][fit_name]["f1"], -w))
    lines = [
        "| w | " + " | ".join(f"{name} EM / F1" for name in data) + " |",
        "|---|" + "---|" * len(data),
    ]
    for w, row in curve.items():
        mark = " (fitted)" if w == best else ""
        cells = " | ".join(f"{r['em']} / {r['f1']}" for r in row.values())
        lines.append(f"| {w}{mark} | {cells} |")
    fitting = data[fit_name]
    # Cross-validation folds by article (SQuAD document ids: <title>-<article>-<paragraph>).
    article = {q.id: (q.doc_id or q.id).rsplit("-", 2)[0] for q in sets[fit_name].questions}
    selection, ridge, losses = fit_selection(
        [rows_of(c) for c in fitting],
        [[float(x["f1"]) for x in c] for c in fitting],
        groups=[article[i] for i in ids[fit_name]],
    )
    picked = {name: chosen(qs, selection) for name, qs in data.items()}
    cells = " | ".join(f"{r['em']} / {r['f1']}" for r in picked.values())
    lines.append(f"| fitted selection (ridge {ridge}) | {cells} |")
    print("\n".join(lines))
    if args.write is not None:
        save_rank_weight(
            args.write,
            best,
            fitted_on=f"{fit_name}: {len(data[fit_name])} answerable SQuAD v1.1 {args.fit_set} "
            f"questions (bench/fit_verifier.py's {args.fit_set} articles, seed {args.fit_seed}), "
            "open corpus, "
            "abstention off; the weight of best F1 (the smaller on ties)",
            f1_by_weight={str(w): curve[w][fit_name]["f1"] for w in GRID},
            selection=selection.to_json(),
            selection_fitted_on=f"{fit_name}: the same questions' candidates (target: their "
            "F1, normalised per question); ridge of lowest held-out cross-entropy over 5 "
            "folds of the questions",
            selection_ridge=ridge,
            selection_cv_loss=losses,
            selection_f1=picked[fit_name]["f1"],
            command=f"python bench/span_selection.py --fit-only --fit-seed {args.fit_seed} "
            + ("" if args.fit_set == "train" else f"--fit-set {args.fit_set} ")
            + f"--write {args.write}",
        )
        print(f"wrote {args.write}: rank_weight {best} and the fitted selection")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
