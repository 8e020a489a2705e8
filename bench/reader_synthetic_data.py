"""Training data for the span reader's "no answer" with synthetic unanswerable questions.

    .venv/bin/python bench/reader_synthetic_data.py [--seed 13] [--pairs 1800] \\
        [--v2-questions 1000] [--out runs/synthetic/train.json.gz]
    .venv/bin/rag train-reader runs/synthetic/train.json.gz --init rag/data/reader \\
        --fine-tune --lr 3e-5 --epochs 1 --fp32 --device cpu --out runs/synthetic/run \\
        --export runs/synthetic/reader

The reader learned "no answer" from 1,131 real unanswerable questions (the SQuAD v2.0 dev
half's reader part, ``bench/reader_noanswer_data.py``); no more real ones exist here outside
what the verifier fits on and what is held out. This adds pairs made from SQuAD v1.1 train
questions: the question with its paragraph (answerable) beside a rewrite that the paragraph
no longer answers (``rag.reader.augment``: an entity, a number or a word swapped for its
opposite, or negated), one rewrite per question, negations at most ``--negation-share`` of
them. The train articles exclude those of the verifier's fit; ``--v2-questions`` of the real
reader part are mixed in so the real kinds stay in view. Written as SQuAD v2.0 JSON.
``--originals-only`` writes the same set without the rewrites: what the rewrites buy.
``--replay`` adds that many more plain answerable questions from the same articles (not
rewritten): the rewrite epoch alone lengthens some answer spans, and more plain SQuAD per
rewrite is meant to hold the span ends where the shipped reader put them.
``--preamble-share`` of the pairs get one sentence of another paragraph of their article
before both questions (``bench/reader_preamble_data.py --source other``), and as many of the
v2.0 questions one before theirs: context the passage does not hold, as news quizzes give
it, beside the same question answered and not, so that the context decides neither.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import siblings_of, with_context  # noqa: E402
from bench.fit_verifier import reader_and_verifier_parts  # noqa: E402
from bench.reader_noanswer_data import to_squad, train_outside_verifier_fit, write_squad  # noqa: E402
from rag.eval import sample_articles  # noqa: E402
from rag.gold import GoldQuestion, GoldSet  # noqa: E402
from rag.reader import context_sentence, context_sentences, unanswerable_rewrites  # noqa: E402


def synthetic_pairs(
    train: GoldSet, pairs: int, negation_share: float, seed: int
) -> tuple[list[GoldQuestion], Counter[str]]:
    """Up to ``pairs`` (answerable original, unanswerable rewrite) question pairs, in a seeded
    order, and how many rewrites of each kind."""
    rng = random.Random(seed)
    texts = {d.id: d.text for d in train.documents}
    questions = [q for q in train.questions if q.answers and q.doc_id in texts]
    rng.shuffle(questions)
    out: list[GoldQuestion] = []
    kinds: Counter[str] = Counter()
    for q in questions:
        if kinds.total() >= pairs:
            break
        a = q.answers[0]
        if a.answer_start is None:
            continue
        start = int(a.answer_start)
        made = unanswerable_rewrites(q.question, texts[q.doc_id], start, start + len(a.text), rng)  # type: ignore[index]
        swaps = [r for r in made if r.kind != "negation"]
        negations = [r for r in made if r.kind == "negation"]
        if swaps:
            chosen = rng.choice(swaps)
        elif negations and kinds["negation"] < negation_share * pairs:
            chosen = negations[0]
        else:
            continue
        kinds[chosen.kind] += 1
        out.append(q)
        out.append(GoldQuestion(f"{q.id}-na-{chosen.kind}", chosen.question, (), q.doc_id))
    return out, kinds


def own_sentences(gold: GoldSet) -> dict[str, list[str]]:
    """Per paragraph id, its own text: a context sentence drawn from the question's own
    paragraph, as a news quiz's question restates what its story says (``--preamble-source
    own``; a sentence holding the question's answer is never drawn, see ``with_contexts``)."""
    return {d.id: [d.text] for d in gold.documents}


def with_contexts(
    questions: list[GoldQuestion],
    siblings: dict[str, list[str]],
    share: float,
    rng: random.Random,
    paired: bool,
    own: bool = False,
) -> tuple[list[GoldQuestion], int]:
    """``questions`` with ``share`` of them (of the pairs, when ``paired``: an original and
    its rewrite, adjacent, get the same sentence) after a sentence of ``siblings`` of their
    paragraph: another paragraph of their article, or (``own``) their own, then never one
    that holds the question's answer; and how many were given one."""
    out: list[GoldQuestion] = []
    n = 0
    i = 0
    while i < len(questions):
        q = questions[i]
        group = [q]
        if paired and i + 1 < len(questions) and questions[i + 1].id.startswith(f"{q.id}-na-"):
            group.append(questions[i + 1])
        i += len(group)
        context = None
        if q.doc_id is not None and rng.random() < share:
            texts = siblings.get(q.doc_id, [])
            if own:
                answers = [a.text for a in q.answers]
                texts = [
                    s
                    for t in texts
                    for s in context_sentences(t)
                    if not any(a in s for a in answers)
                ]
            context = context_sentence(texts, rng)
        if context is None:
            out.extend(group)
        else:
            out.extend(with_context(g, context) for g in group)
            n += len(group)
    return out, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--pairs", type=int, default=1800, help="synthetic unanswerable rewrites")
    ap.add_argument("--negation-share", type=float, default=0.15)
    ap.add_argument("--train-articles", type=int, default=120, help="SQuAD v1.1 train articles")
    ap.add_argument("--v2-questions", type=int, default=1000, help="of the real reader part")
    ap.add_argument(
        "--replay", type=int, default=0, help="plain answerable questions beyond the pairs"
    )
    ap.add_argument(
        "--preamble-share",
        type=float,
        default=0.0,
        help="of the pairs and of the v2.0 questions, given another paragraph's sentence first",
    )
    ap.add_argument(
        "--preamble-source",
        choices=("other", "own"),
        default="other",
        help="the context sentence: of another paragraph of the article, or of the question's own",
    )
    ap.add_argument(
        "--originals-only",
        action="store_true",
        help="the ablation: the same answerable originals and v2.0 questions, no rewrites",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "synthetic" / "train.json.gz")
    args = ap.parse_args()

    train = train_outside_verifier_fit(args.seed)
    train = sample_articles(train, args.train_articles, args.seed + 3)
    pairs, kinds = synthetic_pairs(train, args.pairs, args.negation_share, args.seed)
    pool = list(train.questions)
    train.questions = [q for q in pairs if q.answers] if args.originals_only else pairs
    replay: list[GoldQuestion] = []
    if args.replay:
        used = {q.id for q in pairs}
        rest = [q for q in pool if q.answers and q.id not in used]
        replay = random.Random(args.seed + 5).sample(rest, min(args.replay, len(rest)))
        train.questions = train.questions + replay

    reader_part, _ = reader_and_verifier_parts(args.seed)
    real = [q for q in reader_part.questions if q.doc_id]
    reader_part.questions = random.Random(args.seed).sample(real, min(args.v2_questions, len(real)))
    n_pre = 0
    if args.preamble_share > 0:
        rng = random.Random(args.seed + 11)
        own = args.preamble_source == "own"
        source = own_sentences if own else siblings_of
        train.questions, n = with_contexts(
            train.questions, source(train), args.preamble_share, rng, paired=True, own=own
        )
        n_pre += n
        reader_part.questions, n = with_contexts(
            reader_part.questions, source(reader_part), args.preamble_share, rng, False, own
        )
        n_pre += n
    data = to_squad(reader_part)
    data["data"] += to_squad(train)["data"]
    write_squad(args.out, data)
    n_imp = sum(q.is_impossible for q in reader_part.questions)
    print(
        f"wrote {args.out}: {len(pairs) // 2} SQuAD train questions"
        + (" (no rewrites)" if args.originals_only else f" and their rewrites {dict(kinds)}")
        + (f"; {len(replay)} plain replay questions" if replay else "")
        + (f"; {n_pre} questions given a context sentence" if n_pre else "")
        + "; "
        f"v2.0 reader part {len(reader_part.questions)} questions ({n_imp} unanswerable)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
