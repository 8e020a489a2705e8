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

``--source other`` takes the context sentence from another paragraph of the same article
instead, so the question carries what the passage does not say, as a quiz question written
from the news and not from its evidence snippet does (given such a question the shipped
reader's margin over "no answer" falls from about +6 to -10 on SQuAD train: it reads
unmatched context as "not answered here"). ``--v2-questions`` of the SQuAD v2.0 reader part
join the set, ``--v2-preamble-share`` of them given a context sentence by the same rule, so
that a context sentence comes with unanswerable questions too and cannot stand for "answerable".
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import siblings_of, with_context  # noqa: E402
from bench.fit_verifier import reader_and_verifier_parts  # noqa: E402
from bench.reader_noanswer_data import to_squad, train_outside_verifier_fit, write_squad  # noqa: E402
from rag.eval import sample_articles  # noqa: E402
from rag.gold import GoldQuestion, GoldSet  # noqa: E402
from rag.reader import (  # noqa: E402
    CONTEXT_MAX_WORDS,
    CONTEXT_MIN_WORDS,
    context_sentence,
    split_sentences,
)


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
        if CONTEXT_MIN_WORDS <= len(s.text.split()) <= CONTEXT_MAX_WORDS
        and s.text[-1:] in ".!"
        and all(e <= s.start or b >= s.end for b, e in spans)
    ]
    if not choices:
        return None
    context = rng.choice(choices).text
    return GoldQuestion(
        f"{question.id}-pre", f"{context} {question.question}", question.answers, question.doc_id
    )


def with_other_preamble(
    question: GoldQuestion, siblings: list[str], rng: random.Random
) -> GoldQuestion | None:
    """``question`` after a sentence of another paragraph of its article (``siblings``: those
    paragraphs' texts); None when none has a sentence of the right size."""
    context = context_sentence(siblings, rng)
    return None if context is None else with_context(question, context)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--preambles", type=int, default=1800, help="questions given a context")
    ap.add_argument("--replay", type=int, default=1800, help="questions kept as they are")
    ap.add_argument("--train-articles", type=int, default=120, help="SQuAD v1.1 train articles")
    ap.add_argument(
        "--source",
        choices=("same", "other"),
        default="same",
        help="the context sentence from the question's own paragraph or another of its article",
    )
    ap.add_argument("--v2-questions", type=int, default=0, help="of the v2.0 reader part")
    ap.add_argument(
        "--v2-preamble-share",
        type=float,
        default=0.5,
        help="of those, given a context: always another paragraph's sentence, whatever "
        "--source says (an unanswerable question has no answer to keep its own sentence "
        "clear of)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "preamble" / "train.json.gz")
    args = ap.parse_args()

    train: GoldSet = sample_articles(
        train_outside_verifier_fit(args.seed), args.train_articles, args.seed + 3
    )
    rng = random.Random(args.seed)
    texts = {d.id: d.text for d in train.documents}
    siblings = siblings_of(train)
    pool = [q for q in train.questions if q.answers and q.doc_id in texts]
    rng.shuffle(pool)
    made: list[GoldQuestion] = []
    used: set[str] = set()
    # Per question given a context: the question without it (for a distillation teacher).
    plain: dict[str, str] = {}
    for q in pool:
        if len(made) >= args.preambles:
            break
        rewritten = (
            with_preamble(q, texts[q.doc_id], rng)  # type: ignore[index]
            if args.source == "same"
            else with_other_preamble(q, siblings[q.doc_id], rng)  # type: ignore[index]
        )
        if rewritten is not None:
            made.append(rewritten)
            used.add(q.id)
            plain[rewritten.id] = q.question
    replay = [q for q in pool if q.id not in used][: args.replay]
    train.questions = made + replay
    data = to_squad(train)
    v2_note = ""
    if args.v2_questions:
        reader_part, _ = reader_and_verifier_parts(args.seed)
        v2_siblings = siblings_of(reader_part)
        real = [q for q in reader_part.questions if q.doc_id]
        v2_rng = random.Random(args.seed + 7)
        chosen = v2_rng.sample(real, min(args.v2_questions, len(real)))
        v2: list[GoldQuestion] = []
        for q in chosen:
            given = None
            if v2_rng.random() < args.v2_preamble_share:
                given = with_other_preamble(q, v2_siblings[q.doc_id], v2_rng)  # type: ignore[index]
            if given is not None:
                plain[given.id] = q.question
            v2.append(given or q)
        reader_part.questions = v2
        data["data"] += to_squad(reader_part)["data"]
        n_pre = sum(q.id.endswith("-pre") for q in v2)
        n_imp = sum(q.is_impossible for q in v2)
        v2_note = f"; v2.0 reader part {len(v2)} ({n_imp} unanswerable, {n_pre} with a context)"
    write_squad(args.out, data)
    stem = args.out.name.removesuffix(".gz").removesuffix(".json")
    teacher_file = args.out.with_name(stem + ".teacher.json")
    teacher_file.write_text(json.dumps(plain, indent=0, sort_keys=True) + "\n")
    print(
        f"wrote {args.out}: {len(made)} questions with a context sentence "
        f"({args.source} paragraph), {len(replay)} as they are"
        + v2_note
        + f"; {teacher_file}: the {len(plain)} questions without their context sentence "
        "(rag train-reader --teacher-questions)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
