"""Fit the span reader's answerability probe (``rag.reader.probe``), reproducibly from a seed.

    .venv/bin/python bench/reader_synthetic_data.py --seed 13 --pairs 12000 \\
        --train-articles 400 --v2-questions 100000 --preamble-share 0.3 \\
        --out runs/probe/train.json.gz
    .venv/bin/python bench/fit_probe.py --data runs/probe/train.json.gz [--write]

The data: SQuAD v1.1 train questions outside the verifier's fit articles, each beside an
unanswerable rewrite (``rag.reader.augment``), a share of both after a sentence of another
paragraph of their article (the news-quiz form), and the real unanswerable and answerable
questions of the SQuAD v2.0 dev half's reader part; never the verifier's fit articles or the
held-out ones. Each question is read by the reader with its own paragraph; the states of its
best span (by margin over "no answer") are the probe's inputs (``span_states``) and "does
the paragraph answer it" its label. The fit is ``rag.eval.fit_standardised``: logistic on
standardised states, the penalty chosen by article-fold cross-validated log-loss.

Reported (nothing asserted): the answerability AUC and the no-answer recall at precision >=
80 % of the reader's margin and of the probe on the verifier's v2.0 fit articles, each
question with its own paragraph (as ``bench/reader_answerability.py`` reads them). With
``--write`` the probe goes to the reader's folder (``probe.json``), else to ``--out``; the
verifier must be refitted after (``bench/fit_verifier.py``), since it weighs the probe.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.abstention_heldout import abstention_frontier, auc  # noqa: E402
from bench.fit_verifier import reader_and_verifier_parts  # noqa: E402
from rag.eval import fit_standardised  # noqa: E402
from rag.gold import GoldSet, load_gold  # noqa: E402
from rag.reader import (  # noqa: E402
    WindowConfig,
    collate,
    decode,
    encode_windows,
    encoder_dtype,
    load_reader,
    load_tokenizer,
    probe_from_weights,
    span_states,
    weights_digest,
)

# Penalties on the standardised states (1,536 of them: far more than the verifier's 24, so
# the grid reaches higher than rag.eval.fit.RIDGES).
PROBE_RIDGES = (100.0, 300.0, 1000.0, 3000.0, 10000.0)


@torch.inference_mode()
def read_states(
    folder: Path, gold: GoldSet, dtype: str = "auto", batch: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Each question of ``gold`` read with its own paragraph by the reader at ``folder``:
    the probe's inputs at its best span, whether it is answerable, the span's margin over
    "no answer", and its article (questions with no span at all are left out)."""
    model, config = load_reader(folder)
    model.encoder.to(encoder_dtype(dtype))
    tok = load_tokenizer()
    cfg = WindowConfig.of(config.get("config", {}))
    max_answer = int(config.get("config", {}).get("max_answer_tokens", 30))
    texts = {d.id: d.text for d in gold.documents}
    qs = [q for q in gold.questions if q.doc_id in texts]
    rows: list[np.ndarray] = []
    labels: list[bool] = []
    margins: list[float] = []
    articles: list[str] = []
    for i in range(0, len(qs), batch):
        block = qs[i : i + batch]
        windows = encode_windows(
            tok,
            [q.question for q in block],
            [texts[q.doc_id] for q in block],
            cfg,  # type: ignore[index]
        )
        inputs = collate(windows, tok.pad_token_id)
        s, e, hidden = model.read(**inputs)
        best: dict[int, tuple[float, int, int, int]] = {}
        for c in decode(windows, s, e, max_answer):
            m = c.score - c.null_score
            if c.sample not in best or m > best[c.sample][0]:
                best[c.sample] = (m, c.window, c.start_token, c.end_token)
        found = [j for j in range(len(block)) if j in best]
        rows.append(
            span_states(
                hidden,
                inputs["token_type_ids"],
                inputs["attention_mask"],
                [best[j][1:] for j in found],
            )
        )
        for j in found:
            q = block[j]
            labels.append(bool(q.answers))
            margins.append(best[j][0])
            articles.append((q.doc_id or q.id).rsplit("-", 2)[0])
    return np.concatenate(rows), np.array(labels), np.array(margins), articles


def separation(scores: Sequence[float], answerable: Sequence[bool]) -> dict[str, Any]:
    """Answerability AUC of a score and the no-answer recall at precision >= 80 %."""
    s, y = list(scores), list(answerable)
    return {
        "auc": round(auc(s, y), 4),
        "na_recall_at_p80": abstention_frontier(s, [not a for a in y], 0.6, 0.8)[
            "recall_at_precision_0.8"
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "runs" / "probe" / "train.json.gz")
    ap.add_argument("--reader", type=Path, default=ROOT / "rag" / "data" / "reader")
    ap.add_argument("--seed", type=int, default=13, help="the verifier fit's seed (its parts)")
    ap.add_argument("--questions", type=int, default=0, help="at most this many (0: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "probe")
    ap.add_argument("--write", action="store_true", help="into the reader's folder")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: no such file (see this script's docstring)")
    train = load_gold(args.data)
    if 0 < args.questions < len(train.questions):
        train.questions = random.Random(args.seed).sample(train.questions, args.questions)
    t0 = time.perf_counter()
    x, y, _, groups = read_states(args.reader, train)
    read_s = time.perf_counter() - t0
    weights, ridge, losses = fit_standardised(x, y.astype(float), groups, PROBE_RIDGES)
    _, verifier_part = reader_and_verifier_parts(args.seed)
    xe, ye, me, _ = read_states(args.reader, verifier_part)
    report = {
        "data": str(args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data),
        "questions": len(y),
        "unanswerable": int((~y).sum()),
        "ridge": ridge,
        "cv_log_loss_by_ridge": losses,
        "read_seconds": round(read_s, 1),
        "weights_sha256": weights_digest(args.reader),
        "command": "python bench/fit_probe.py " + " ".join(sys.argv[1:]),
    }
    probe = probe_from_weights(weights, report)
    report["v2_verifier_part_own_paragraph"] = {
        "questions": len(ye),
        "unanswerable": int((~ye).sum()),
        "margin": separation(me.tolist(), ye.tolist()),
        "probe": separation(probe.logit(xe).tolist(), ye.tolist()),
    }
    folder = args.reader if args.write else args.out
    folder.mkdir(parents=True, exist_ok=True)
    path = probe.save(folder)
    print(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
