"""Training data for the span reader with quiz-style questions: a sentence of context, then
the question, as news quizzes ask them.

    .venv/bin/python bench/reader_preamble_data.py [--seed 13] [--preambles 1800] \\
        [--replay 1800] [--out runs/preamble/train.json.gz]
    .venv/bin/rag train-reader runs/preamble/train.json.gz --init rag/data/reader \\
        --fine-tune --lr 3e-5 --epochs 1 --fp32 --device cpu --out runs/preamble/run \\
        --export runs/preamble/reader

A quarter of the news quiz questions of the development years (RealTimeQA 2020-2021, read
only to count this) open with a sentence before the question ("Colin Powell died this
week ... In which presidential administration did he serve ...?"), and given the evidence
passage the shipped reader answers those worse than the others (F1 73.6 vs 78.6 over 184 and
351 questions). News quizzes may not be trained on (evaluation only), so this makes the form
from SQuAD v1.1 train (CC BY-SA 4.0): each of ``--preambles`` answerable questions gets,
before it, another sentence of its own paragraph, one that does not hold the answer (so the
context names things the passage also names, and the answer is still elsewhere), the
answer and its offsets unchanged; ``--replay`` more questions of the same articles are kept
as they are, to hold the reader's SQuAD behaviour. The train articles exclude those of the
verifier's fit. Written as SQuAD JSON.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.reader_noanswer_data import to_squad, train_outside_verifier_fit, write_squad  # noqa: E402
from rag.eval import sample_articles  # noqa: E402
from rag.gold import GoldQuestion, GoldSet  # noqa: E402
from rag.reader import split_sentences  # noqa: E402

# A context sentence of this many words at least and at most: a clause, not a heading or a
# paragraph-long list.
MIN_WORDS = 6
MAX_WORDS = 40


def with_preamble(question: GoldQuestion, text: str, rng: random.Random) -> GoldQuestion | None:
    """``question`` after another sentence of its paragraph that holds none of its answers'
    spans; None when the paragraph has no such sentence."""
    spans = [
        (int(a.answer_start), int(a.answer_start) + len(a.text))
        for a in question.answers
        if a.answer_start is not None
    ]
    if not spans:
        return None
    choices = [
        s
        for s in split_sentences(text)
        if MIN_WORDS <= len(s.text.split()) <= MAX_WORDS
        and s.text[-1:] in ".!"
        and all(e <= s.start or b >= s.end for b, e in spans)
    ]
    if not choices:
        return None
    context = rng.choice(choices).text
    return GoldQuestion(
        f"{question.id}-pre", f"{context} {question.question}", question.answers, question.doc_id
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--preambles", type=int, default=1800, help="questions given a context")
    ap.add_argument("--replay", type=int, default=1800, help="questions kept as they are")
    ap.add_argument("--train-articles", type=int, default=120, help="SQuAD v1.1 train articles")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "preamble" / "train.json.gz")
    args = ap.parse_args()

    train: GoldSet = sample_articles(
        train_outside_verifier_fit(args.seed), args.train_articles, args.seed + 3
    )
    rng = random.Random(args.seed)
    texts = {d.id: d.text for d in train.documents}
    pool = [q for q in train.questions if q.answers and q.doc_id in texts]
    rng.shuffle(pool)
    made: list[GoldQuestion] = []
    used: set[str] = set()
    for q in pool:
        if len(made) >= args.preambles:
            break
        rewritten = with_preamble(q, texts[q.doc_id], rng)  # type: ignore[index]
        if rewritten is not None:
            made.append(rewritten)
            used.add(q.id)
    replay = [q for q in pool if q.id not in used][: args.replay]
    train.questions = made + replay
    write_squad(args.out, to_squad(train))
    print(
        f"wrote {args.out}: {len(made)} questions with a context sentence, "
        f"{len(replay)} as they are"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
