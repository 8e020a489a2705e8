"""Training data for teaching the span reader "no answer" on SQuAD v2.0-style questions.

    .venv/bin/python bench/reader_noanswer_data.py [--seed 13] [--out runs/noanswer/train.json.gz]
    .venv/bin/rag train-reader runs/noanswer/train.json.gz --init rag/data/reader --fine-tune \\
        --lr 3e-5 --epochs 1 --out runs/noanswer/run --export runs/noanswer/reader

A three-way article split keeps every use of the SQuAD v2.0 dev half apart: the verifier's
split (``bench/fit_verifier.py``, same seed) holds out half of the articles for measuring;
its other half is split again here, one part for training the reader (this file) and the
other for fitting the verifier, so the verifier is never fitted on questions the reader
was trained on. The reader part's questions, answerable and not (an unanswerable one
trains "no answer" on its own paragraph), are mixed with SQuAD v1.1 train articles that the
verifier's fit does not use, so that the reader does not forget how to answer. Written as
SQuAD v2.0 JSON (``rag train-reader`` reads it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fit_verifier import SQUAD_TRAIN, reader_and_verifier_parts, train_withheld  # noqa: E402
from rag.eval import sample_articles  # noqa: E402
from rag.gold import GoldSet, load_gold  # noqa: E402


def to_squad(gold: GoldSet) -> dict[str, Any]:
    """SQuAD v2.0 JSON of a gold set's documents and questions (by article)."""
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for q in gold.questions:
        by_doc.setdefault(q.doc_id or "", []).append(
            {
                "id": q.id,
                "question": q.question,
                "answers": [{"text": a.text, "answer_start": a.answer_start} for a in q.answers],
                "is_impossible": q.is_impossible,
            }
        )
    articles: dict[str, list[dict[str, Any]]] = {}
    for d in gold.documents:
        if d.id in by_doc:
            articles.setdefault(str(d.metadata.get("article", "")), []).append(
                {"context": d.text, "qas": by_doc[d.id]}
            )
    return {
        "version": "v2.0",
        "data": [{"title": t, "paragraphs": ps} for t, ps in articles.items()],
    }


def train_outside_verifier_fit(seed: int) -> GoldSet:
    """SQuAD v1.1 train without the articles the verifier's fit (same seed) reads."""
    verifier_train = train_withheld(seed, 30, 0, 0.3)
    used = {str(d.metadata.get("article", "")) for d in verifier_train.documents}
    train = load_gold(SQUAD_TRAIN)
    train.documents = [d for d in train.documents if d.metadata.get("article") not in used]
    keep = {d.id for d in train.documents}
    train.questions = [q for q in train.questions if q.doc_id in keep]
    return train


def noanswer_data(seed: int, train_articles: int) -> tuple[dict[str, Any], int, int, int]:
    """The training data (SQuAD v2.0 JSON) and its counts: v2.0 reader-part questions,
    of them unanswerable, SQuAD train questions."""
    reader_part, _ = reader_and_verifier_parts(seed)
    reader_part.questions = [q for q in reader_part.questions if q.doc_id]
    train = sample_articles(train_outside_verifier_fit(seed), train_articles, seed + 2)
    data = to_squad(reader_part)
    data["data"] += to_squad(train)["data"]
    n_imp = sum(q.is_impossible for q in reader_part.questions)
    return data, len(reader_part.questions), n_imp, len(train.questions)


def write_squad(path: Path, data: dict[str, Any]) -> None:
    """SQuAD JSON, gzipped, at ``path`` (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        json.dump(data, fh)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--train-articles", type=int, default=40, help="SQuAD v1.1 train articles")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "noanswer" / "train.json.gz")
    args = ap.parse_args()

    data, n_v2, n_imp, n_train = noanswer_data(args.seed, args.train_articles)
    write_squad(args.out, data)
    print(
        f"wrote {args.out}: v2.0 reader part {n_v2} questions ({n_imp} unanswerable), "
        f"SQuAD train {n_train} questions from {args.train_articles} articles"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
