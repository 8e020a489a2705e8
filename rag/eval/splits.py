"""Seeded, article-disjoint splits of SQuAD-style gold sets, for fitting the verifier on
some articles and measuring it on others (``make fit-threshold``).

A document's article is its ``metadata["article"]`` (``rag.gold.load_squad`` sets it); a
question belongs to the article of its document.
"""

from __future__ import annotations

import dataclasses
import random

from rag.gold import GoldSet


def _article(doc_article: dict[str, str], doc_id: str | None) -> str:
    return doc_article.get(doc_id or "", "")


def _doc_articles(gold: GoldSet) -> dict[str, str]:
    """Each document's article."""
    return {d.id: str(d.metadata.get("article", "")) for d in gold.documents}


# The SQuAD v1.1 dev sample the quality gate asks (tests/test_quality_gate.py): never fitted on.
QUALITY_GATE_QUESTIONS = 300
QUALITY_GATE_SEED = 0


def articles(gold: GoldSet) -> list[str]:
    """The gold set's articles, in order of first appearance."""
    return list(dict.fromkeys(str(d.metadata.get("article", "")) for d in gold.documents))


def asked_articles(gold: GoldSet) -> list[str]:
    """The articles the gold set's questions are about, in order of first appearance."""
    doc_article = _doc_articles(gold)
    return list(dict.fromkeys(_article(doc_article, q.doc_id) for q in gold.questions))


def drop_articles(gold: GoldSet, names: set[str]) -> GoldSet:
    """The gold set without the questions about the articles ``names`` (the corpus whole)."""
    doc_article = _doc_articles(gold)
    questions = [q for q in gold.questions if _article(doc_article, q.doc_id) not in names]
    return GoldSet(questions, list(gold.documents), dict(gold.qrels))


def quality_gate_sample(gold: GoldSet) -> GoldSet:
    """The questions the quality gate asks of SQuAD v1.1 dev (a seeded sample; the corpus
    whole): what a fit must leave out."""
    questions = random.Random(QUALITY_GATE_SEED).sample(gold.questions, QUALITY_GATE_QUESTIONS)
    return GoldSet(questions, list(gold.documents), dict(gold.qrels))


def split_articles(
    gold: GoldSet, share: float, seed: int, asked: bool = False
) -> tuple[GoldSet, GoldSet]:
    """(first, rest): ``share`` of the articles, drawn with ``seed``, and the others.

    Both keep every document (the open corpus is the whole set); only the questions are
    split, so no question of one part is asked about an article of the other. The draw is
    among every article of the corpus, or with ``asked`` among those the questions are about
    (after ``drop_articles`` or an earlier split, many have none; the splits already made,
    which fixed what the reader and the verifier were fitted on, drew among all)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be in (0, 1), got {share}")
    names = sorted(asked_articles(gold) if asked else articles(gold))
    chosen = set(random.Random(seed).sample(names, max(1, round(share * len(names)))))
    doc_article = _doc_articles(gold)
    first = [q for q in gold.questions if _article(doc_article, q.doc_id) in chosen]
    rest = [q for q in gold.questions if _article(doc_article, q.doc_id) not in chosen]
    return (
        GoldSet(first, list(gold.documents), dict(gold.qrels)),
        GoldSet(rest, list(gold.documents), dict(gold.qrels)),
    )


def withhold_paragraphs(gold: GoldSet, share: float, seed: int) -> GoldSet:
    """The gold set with ``share`` of its documents (drawn with ``seed``) removed from the
    corpus, and the questions asked about them made unanswerable: what an open corpus is
    like when the passage with the answer is not there, but its article's others are."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    ids = sorted(d.id for d in gold.documents)
    gone = set(random.Random(seed).sample(ids, round(share * len(ids))))
    questions = [
        dataclasses.replace(q, answers=()) if q.doc_id in gone else q for q in gold.questions
    ]
    return GoldSet(questions, [d for d in gold.documents if d.id not in gone], dict(gold.qrels))


def sample_articles(gold: GoldSet, n: int, seed: int) -> GoldSet:
    """``n`` articles drawn with ``seed``: their documents and questions only."""
    names = sorted(articles(gold))
    chosen = set(random.Random(seed).sample(names, min(n, len(names))))
    docs = [d for d in gold.documents if str(d.metadata.get("article", "")) in chosen]
    keep = {d.id for d in docs}
    return GoldSet([q for q in gold.questions if q.doc_id in keep], docs, dict(gold.qrels))
