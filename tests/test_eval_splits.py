"""Seeded article-disjoint splits and withheld paragraphs (``rag.eval.splits``)."""

from __future__ import annotations

from rag.eval import (
    QUALITY_GATE_QUESTIONS,
    asked_articles,
    drop_articles,
    quality_gate_sample,
    sample_articles,
    split_articles,
    withhold_paragraphs,
)
from rag.gold import GoldAnswer, GoldQuestion, GoldSet
from rag.models import Document


def _gold(articles: int = 6, paragraphs: int = 4) -> GoldSet:
    gold = GoldSet()
    for a in range(articles):
        for p in range(paragraphs):
            doc_id = f"A{a}-{p}"
            gold.documents.append(Document(doc_id, f"text {a} {p}", f"A{a}", {"article": f"A{a}"}))
            for k in range(2):
                gold.questions.append(
                    GoldQuestion(f"{doc_id}-q{k}", "Q?", (GoldAnswer("text"),), doc_id)
                )
    return gold


def _article(q: GoldQuestion) -> str:
    return (q.doc_id or "").split("-")[0]


def test_split_is_article_disjoint_seeded_and_keeps_the_corpus() -> None:
    gold = _gold()
    first, rest = split_articles(gold, 0.5, seed=3)
    assert {_article(q) for q in first.questions}.isdisjoint({_article(q) for q in rest.questions})
    assert len({_article(q) for q in first.questions}) == 3
    assert len(first.questions) + len(rest.questions) == len(gold.questions)
    assert first.documents == rest.documents == gold.documents
    again, _ = split_articles(gold, 0.5, seed=3)
    assert again.questions == first.questions


def test_withheld_paragraphs_leave_the_corpus_and_their_questions_lose_answers() -> None:
    gold = _gold()
    out = withhold_paragraphs(gold, 0.25, seed=1)
    kept = {d.id for d in out.documents}
    assert len(kept) == 18
    for q in out.questions:
        assert q.is_impossible == (q.doc_id not in kept)
    assert withhold_paragraphs(gold, 0.25, seed=1).documents == out.documents
    assert withhold_paragraphs(gold, 0.0, seed=1).questions == gold.questions


def test_sample_articles_keeps_whole_articles() -> None:
    out = sample_articles(_gold(), 2, seed=0)
    assert len({d.metadata["article"] for d in out.documents}) == 2
    assert len(out.documents) == 8 and len(out.questions) == 16
    assert {_article(q) for q in out.questions} == {d.metadata["article"] for d in out.documents}


def test_a_split_after_dropped_articles_halves_the_articles_still_asked_about() -> None:
    """The v1.1 dev articles outside the v2.0 half are split in halves: with ``asked`` the
    split draws among the articles questions are about, not every article of the corpus."""
    gold = drop_articles(_gold(articles=8), {"A0", "A1", "A2", "A3"})
    assert asked_articles(gold) == ["A4", "A5", "A6", "A7"]
    assert len(gold.documents) == 32  # the corpus whole
    first, rest = split_articles(gold, 0.5, seed=5, asked=True)
    assert len(asked_articles(first)) == len(asked_articles(rest)) == 2
    assert set(asked_articles(first)) | set(asked_articles(rest)) == {"A4", "A5", "A6", "A7"}


def test_the_quality_gate_sample_is_seeded_and_sized() -> None:
    gold = _gold(articles=40, paragraphs=5)  # 400 questions
    sample = quality_gate_sample(gold)
    assert len(sample.questions) == QUALITY_GATE_QUESTIONS
    assert sample.questions == quality_gate_sample(gold).questions
    assert sample.documents == gold.documents
