"""Training data for reading news quizzes: the development years' questions, with the
passages the pipeline retrieves for them but that do not answer them as "no answer".

    .venv/bin/python bench/reader_news_data.py [--negatives 2] [--replay 1000] \\
        [--out runs/news/train.json.gz]
    .venv/bin/rag train-reader runs/news/train.json.gz --init rag/data/reader --fine-tune \\
        --lr 3e-5 --epochs 1.5 --out runs/news/run --export runs/news/reader

Only the quiz years ``bench/news_eval.py`` sets apart for development (2020-2021) are
used; 2022-2023 is measured and never trained on. Per question: its own evidence passage
with the answer (the gold offset), and up to ``--negatives`` of the passages the pipeline
reads for it (open corpus of every evidence passage, as in the benchmark) that hold no
gold answer string, as unanswerable questions on those passages, so the reader learns to
say "not here" to the wrong story, which is how it loses on news (a span of another
passage). ``--replay`` questions of the no-answer fine-tune's data
(``bench/reader_noanswer_data.py``, same seed) keep SQuAD and its unanswerables in the mix.
Written as SQuAD v2.0 JSON under runs/ (outside git: the quizzes are evaluation-only data,
never shipped; the weights trained on them are, as SQuAD-derived weights are).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.news_eval import DEV_YEARS, NEWS, news_years  # noqa: E402
from bench.reader_noanswer_data import noanswer_data, write_squad  # noqa: E402
from rag.eval import Evaluator  # noqa: E402
from rag.gold import load_gold  # noqa: E402
from rag.settings import Settings  # noqa: E402


def replay_sample(data: dict[str, Any], n: int, seed: int) -> dict[str, Any]:
    """``n`` questions of SQuAD JSON ``data`` (seeded), in their paragraphs."""
    slots = [
        (ai, pi, qi)
        for ai, a in enumerate(data["data"])
        for pi, p in enumerate(a["paragraphs"])
        for qi in range(len(p["qas"]))
    ]
    keep = set(random.Random(seed).sample(slots, min(n, len(slots))))
    out = []
    for ai, a in enumerate(data["data"]):
        paragraphs = []
        for pi, p in enumerate(a["paragraphs"]):
            qas = [q for qi, q in enumerate(p["qas"]) if (ai, pi, qi) in keep]
            if qas:
                paragraphs.append({"context": p["context"], "qas": qas})
        if paragraphs:
            out.append({"title": a["title"], "paragraphs": paragraphs})
    return {"version": "v2.0", "data": out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--negatives", type=int, default=2, help="wrong passages per question")
    ap.add_argument("--replay", type=int, default=1000, help="no-answer fine-tune questions")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "news" / "train.json.gz")
    args = ap.parse_args()

    news = load_gold(NEWS)
    dev = news_years(news, DEV_YEARS)
    settings = Settings()
    pipe = Evaluator(settings, progress=False).pipeline_for(news)
    texts = {d.id: d.text for d in news.documents}
    by_doc: dict[str, list[dict[str, Any]]] = {}
    negatives = 0
    questions = [q for q in dev.questions if q.doc_id is not None]
    ranked = pipe.retrieve_batch([q.question for q in questions], top_k=settings.top_k)
    for q, passages in zip(questions, ranked, strict=True):
        assert q.doc_id is not None
        by_doc.setdefault(q.doc_id, []).append(
            {
                "id": q.id,
                "question": q.question,
                "answers": [{"text": a.text, "answer_start": a.answer_start} for a in q.answers],
                "is_impossible": False,
            }
        )
        wrong = [
            p.doc_id
            for p in passages
            if p.doc_id != q.doc_id and not any(a in texts[p.doc_id] for a in q.answer_texts)
        ]
        for doc_id in list(dict.fromkeys(wrong))[: args.negatives]:
            by_doc.setdefault(doc_id, []).append(
                {
                    "id": f"{q.id}-not-{doc_id}",
                    "question": q.question,
                    "answers": [],
                    "is_impossible": True,
                }
            )
            negatives += 1
    pipe.close()
    data = {
        "version": "v2.0",
        "data": [
            {"title": doc_id, "paragraphs": [{"context": texts[doc_id], "qas": qas}]}
            for doc_id, qas in by_doc.items()
        ],
    }
    base, *_ = noanswer_data(args.seed, 8)
    data["data"] += replay_sample(base, args.replay, args.seed)["data"]
    write_squad(args.out, data)
    print(
        f"wrote {args.out}: news {DEV_YEARS[0]}-{DEV_YEARS[-1]} {len(questions)} questions, "
        f"{negatives} wrong-passage negatives; replay {args.replay} questions"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
