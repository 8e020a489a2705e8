"""The default corpus is the user's seed article byte for byte, and the seed gold set is
written on it: answers sit where their ``answer_start`` says."""

from __future__ import annotations

import hashlib

from rag.gold import load_gold
from tests.conftest import ROOT, SEED_ID, SEEDS

# sha256 of ../shared/data/seeds/000_99490361bb818e87.txt, the article the user gave us.
SEED_SHA256 = "67c8593b1d16586ff5ad193fa3a283734b1f0853b8337cb1dad21b40dab5521a"
GOLD = ROOT / "eval" / "gold" / "seeds.jsonl"


def test_the_seed_article_is_the_original_byte_for_byte() -> None:
    assert [p.name for p in SEEDS.iterdir()] == [SEED_ID]
    assert hashlib.sha256((SEEDS / SEED_ID).read_bytes()).hexdigest() == SEED_SHA256


def test_the_seed_gold_set_is_written_on_the_article() -> None:
    text = (SEEDS / SEED_ID).read_text(encoding="utf-8")
    gold = load_gold(GOLD)
    answerable = [q for q in gold.questions if not q.is_impossible]
    impossible = [q for q in gold.questions if q.is_impossible]
    assert len(answerable) >= 30 and len(impossible) >= 6
    assert len({q.question for q in gold.questions}) == len(gold.questions)
    for q in answerable:
        assert q.doc_id == SEED_ID and q.answers, q.question
        for a in q.answers:
            assert a.answer_start is not None, (q.question, a.text)
            assert text[a.answer_start : a.answer_start + len(a.text)] == a.text, q.question
    assert all(not q.answers for q in impossible)
