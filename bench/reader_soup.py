"""Weight interpolation between the shipped span reader and a fine-tune of it (WiSE-FT).

    .venv/bin/python bench/reader_soup.py --tuned runs/news/reader [--alphas 0 0.25 0.5 0.75 1]
        [--export-alpha 0.5 --export runs/soup/reader]

A fine-tune on a shifted domain (news quizzes) gains there and loses a little on the
domain it came from; averaging the two weight sets, theta = (1 - a) * base + a * tuned,
often keeps most of the gain and little of the loss (Wortsman et al., "Robust fine-tuning
of zero-shot models", CVPR 2022), because a fine-tune from the same start stays in one
basin. This bench measures the reader alone, given the gold passage, for each ``a``: EM/F1
on the first 1,000 SQuAD v1.1 dev questions and on the news quiz years (2020-2021, the
development part the fine-tune saw; 2022-2023, only measured). Nothing is asserted;
``--export`` writes one interpolated reader (fp16, as shipped) with its recipe in
``reader.json`` and its card in ``README.md``, so the pipeline benches can read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SQUAD_V11  # noqa: E402
from bench.news_eval import DEV_YEARS, NEWS, TEST_YEARS, news_years  # noqa: E402
from rag.gold import GoldSet, load_squad  # noqa: E402
from rag.reader import (  # noqa: E402
    TrainConfig,
    evaluate_gold_paragraph,
    load_reader,
    load_tokenizer,
    model_card,
    save_reader,
)
from rag.settings import Settings  # noqa: E402

# A sentence end followed by more text inside the question: a quiz question's context
# sentence before the question itself ("X died this week. In which ...?").
_PREAMBLE = re.compile(r"[.!?][\"\u201d\u2019]?\s+\S")


def by_form(gold: GoldSet) -> dict[str, GoldSet]:
    """``gold`` split into the questions that open with a context sentence and the rest."""
    opens = [bool(_PREAMBLE.search(q.question.strip()[:-1])) for q in gold.questions]
    return {
        "preamble": dataclasses.replace(
            gold, questions=[q for q, o in zip(gold.questions, opens, strict=True) if o]
        ),
        "plain": dataclasses.replace(
            gold, questions=[q for q, o in zip(gold.questions, opens, strict=True) if not o]
        ),
    }


def interpolate(base: dict[str, Any], tuned: dict[str, Any], alpha: float) -> dict[str, Any]:
    """theta = (1 - alpha) * base + alpha * tuned, key by key (same architecture)."""
    if base.keys() != tuned.keys():
        raise ValueError("the two readers' weights do not have the same tensors")
    return {k: (1 - alpha) * base[k] + alpha * tuned[k] for k in base}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", type=Path, default=Path(Settings().reader_weights))
    ap.add_argument("--tuned", type=Path, required=True)
    ap.add_argument("--alphas", type=float, nargs="*", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--squad-questions", type=int, default=1000)
    ap.add_argument("--export-alpha", type=float, default=None)
    ap.add_argument("--export", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="results JSON")
    ap.add_argument(
        "--by-form",
        action="store_true",
        help="also each news set split into questions with a context sentence and the rest",
    )
    args = ap.parse_args()

    base_model, base_card = load_reader(args.base)
    tuned_model, tuned_card = load_reader(args.tuned)
    base_state = {k: v.clone() for k, v in base_model.state_dict().items()}
    tuned_state = tuned_model.state_dict()
    tokenizer = load_tokenizer()
    cfg = TrainConfig()
    squad = load_squad(SQUAD_V11)
    news = load_squad(NEWS)
    sets = {
        "squad_dev_gold": (squad, args.squad_questions),
        "news_2020_2021_gold": (news_years(news, DEV_YEARS), None),
        "news_2022_2023_gold": (news_years(news, TEST_YEARS), None),
    }
    if args.by_form:
        for name in ("news_2020_2021_gold", "news_2022_2023_gold"):
            for form, part in by_form(sets[name][0]).items():
                sets[f"{name}_{form}"] = (part, None)
    rows = []
    model = base_model
    for alpha in args.alphas:
        model.load_state_dict(interpolate(base_state, tuned_state, alpha))
        row: dict[str, Any] = {"alpha": alpha}
        for name, (gold, limit) in sets.items():
            row[name] = evaluate_gold_paragraph(model, tokenizer, gold, cfg, limit)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    if args.export is not None:
        if args.export_alpha is None:
            ap.error("--export needs --export-alpha")
        model.load_state_dict(interpolate(base_state, tuned_state, args.export_alpha))
        card = dict(tuned_card)
        card["interpolation"] = {
            "alpha": args.export_alpha,
            "base": str(args.base),
            "base_command": base_card.get("command"),
            "tuned": str(args.tuned),
            "tuned_command": tuned_card.get("command"),
            "command": " ".join(["python bench/reader_soup.py", *sys.argv[1:]]),
        }
        card["dev_gold_paragraph"] = evaluate_gold_paragraph(
            model, tokenizer, squad, cfg, args.squad_questions
        )
        save_reader(model, args.export, card, fp16=True)
        (args.export / "README.md").write_text(model_card(card, fp16=True))
        print(f"exported to {args.export}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
