"""How well the span reader alone tells answerable from unanswerable questions.

    .venv/bin/python bench/reader_answerability.py [--weights rag/data/reader ...] [--seed 13]

Each SQuAD v2.0 question of the verifier's fit part (``bench/fit_verifier.py``: the v2.0
half's articles that neither the reader trained on nor the held-out measurement asks; never
the held-out articles) is read with its own paragraph, no retrieval, fp32. Reported per
weights: the answerability AUC of the reader's margin (best span score minus the window's
no-answer score; the signal the verifier leans on most), the best no-answer recall at
precision >= 80 %, and EM/F1 of the answerable questions. A quick check of a reader
before the slower refit of the verifier and the held-out pipeline run. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.abstention_heldout import abstention_frontier, auc  # noqa: E402
from bench.fit_verifier import reader_and_verifier_parts  # noqa: E402
from rag.gold import GoldQuestion, GoldSet, exact_match, f1  # noqa: E402
from rag.reader import (  # noqa: E402
    WindowConfig,
    collate,
    decode,
    encode_windows,
    load_reader,
    load_tokenizer,
)


@dataclass(frozen=True, slots=True)
class BestSpan:
    """The reader's best span for one question in its own paragraph: its margin over the
    window's "no answer" score, that score, and its text ("" when no span was found)."""

    question: GoldQuestion
    margin: float
    null: float
    text: str


@torch.inference_mode()
def best_spans(folder: Path, gold: GoldSet, batch: int = 32) -> list[BestSpan]:
    """The reader at ``folder`` on each question of ``gold`` with its own paragraph."""
    model, config = load_reader(folder)
    model.eval()
    tok = load_tokenizer()
    cfg = WindowConfig.of(config.get("config", {}))
    max_answer = int(config.get("config", {}).get("max_answer_tokens", 30))
    texts = {d.id: d.text for d in gold.documents}
    qs = [q for q in gold.questions if q.doc_id in texts]
    out: list[BestSpan] = []
    for i in range(0, len(qs), batch):
        block = qs[i : i + batch]
        ctx = [texts[q.doc_id] for q in block]  # type: ignore[index]
        windows = encode_windows(tok, [q.question for q in block], ctx, cfg)
        s, e = (t.float() for t in model(**collate(windows, tok.pad_token_id)))
        best: dict[int, tuple[float, float, int, int]] = {}
        for c in decode(windows, s, e, max_answer):
            m = c.score - c.null_score
            if c.sample not in best or m > best[c.sample][0]:
                best[c.sample] = (m, c.null_score, c.start, c.end)
        for j, q in enumerate(block):
            m, null, a, b = best.get(j, (float("-inf"), float("inf"), 0, 0))
            out.append(BestSpan(q, m, null, ctx[j][a:b]))
    return out


def margins(folder: Path, gold: GoldSet, batch: int = 32) -> dict[str, object]:
    """Margin per question and EM/F1 of the answerable ones, reading the gold paragraph."""
    pos: list[float] = []
    neg: list[float] = []
    em = f1_sum = 0.0
    n_ans = 0
    for r in best_spans(folder, gold, batch):
        if r.question.answers:
            pos.append(r.margin)
            n_ans += 1
            em += exact_match(r.text, r.question.answer_texts)
            f1_sum += f1(r.text, r.question.answer_texts)
        else:
            neg.append(r.margin)
    return {
        "questions": len(pos) + len(neg),
        "unanswerable": len(neg),
        "auc": auc(pos + neg, [True] * len(pos) + [False] * len(neg)),
        "na_recall_at_p80": abstention_frontier(
            pos + neg, [False] * len(pos) + [True] * len(neg), 0.6, 0.8
        )["recall_at_precision_0.8"],
        "has_answer_em": round(100 * em / max(1, n_ans), 2),
        "has_answer_f1": round(100 * f1_sum / max(1, n_ans), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, nargs="+", default=[ROOT / "rag" / "data" / "reader"])
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    torch.set_num_threads(2)
    _, verifier_part = reader_and_verifier_parts(args.seed)
    for w in args.weights:
        print(w, margins(w, verifier_part), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
