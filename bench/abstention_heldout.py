"""Abstention on held-out SQuAD v2.0 dev questions: the ones `make fit-threshold` did not see.

    .venv/bin/python bench/abstention_heldout.py [--questions 1000] [--seed 1]

`make fit-threshold` fits each reader's abstention margin and confidence on a seeded sample
(``--sample 1000 --seed 13``) of the SQuAD v2.0 dev half. This draws that same sample,
removes it, and evaluates the reader in use (``RAG_READER``, with its fitted settings) on
``--questions`` of the remaining ones, open corpus: no-answer precision and recall, has-answer
EM/F1, overall EM/F1. Nothing is asserted; the report goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SQUAD_V2_HALF  # noqa: E402
from rag.eval import (  # noqa: E402
    Evaluator,
    write_outputs,
)
from rag.gold import load_gold  # noqa: E402
from rag.settings import Settings  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gold", type=Path, default=SQUAD_V2_HALF)
    ap.add_argument("--fit-sample", type=int, default=1000, help="the fit's --sample")
    ap.add_argument("--fit-seed", type=int, default=13, help="the fit's --seed")
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "squad-v2-heldout")
    args = ap.parse_args()

    gold = load_gold(args.gold)
    # The same draw as `rag eval --sample N --seed S` (rag/cli.py), then its complement.
    seen = {q.id for q in random.Random(args.fit_seed).sample(gold.questions, args.fit_sample)}
    rest = [q for q in gold.questions if q.id not in seen]
    gold.questions = random.Random(args.seed).sample(rest, min(args.questions, len(rest)))
    settings = Settings()
    run = Evaluator(settings, progress=False).run(gold)
    answers = run.metrics["answers"]
    summary = {
        "reader": settings.reader,
        "held_out_questions": len(gold.questions),
        "excluded_fit_questions": len(seen),
        "answers": {k: v for k, v in answers.items() if k != "by_type"},
    }
    write_outputs(run, args.out, f"{args.gold.name} (held out from the fit)")
    (args.out / "heldout.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
