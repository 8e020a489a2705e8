"""The answer verifier's inputs: what the pipeline already knows about a candidate answer.

The span reader's abstention is two logistic models over these features, P(answerable) and
P(correct | answerable) (see ``Abstention``; fitted by ``make fit-threshold`` on SQuAD v2.0
dev articles and SQuAD train, never on the gold sets the tests ask; see ``rag.eval.fit``):
the reader's margin over "no answer" and the window's no-answer score, how far the answer
beats the next distinct one and how much of the reader's probability mass its text holds
across passages, where the passage it comes from ranked in each retriever, how much of the
question the cited sentence covers, and the shape of the answer against the kind of
question. All are computed from one question's spans and
passages, in microseconds, with no model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from rag.models import Document, Passage, Span
from rag.reader.sentences import DATE, NUMBER, content_terms, question_type

_WORD = re.compile(r"\w+", re.UNICODE)
_WH = ("why", "how")
# Spans whose softmax mass is shared: the reader's best ones (a longer tail adds nothing).
MASS_SPANS = 20
# The gap to the next distinct answer when there is none (a margin scale: logits).
NO_RIVAL_GAP = 10.0

# The features, by what they read: the reader's scores, where retrieval put the passage,
# and the question against the answer and its text. Fit files name a subset of the whole,
# which keeps this fixed order.
READER_FEATURES: tuple[str, ...] = ("score", "null", "gap", "mass")
# The answerability probe's logit for the span (``rag.reader.probe``; a reader whose folder
# holds a probe offers it).
PROBE_FEATURES: tuple[str, ...] = ("probe",)
RETRIEVAL_FEATURES: tuple[str, ...] = (
    "passage_rr",
    "dense",
    "dense_top",
    "dense_rr",
    "bm25_rr",
)
QUESTION_FEATURES: tuple[str, ...] = (
    "q_in_sentence",
    "q_in_passage",
    "answer_in_q",
    "answer_words",
    "q_number",
    "q_date",
    "q_name",
    "q_place",
    "q_why_how",
    "typed_miss",
)
# The question's form: its length (log words), and the reader's scores and the sentence's
# overlap read at that length. A question that carries context its passage does not hold (a
# news quiz's "X happened this week. Which ...?") raises the reader's "no answer" and lowers
# the overlap whether or not the passage answers it; these let the fit tell that apart from
# an absent answer (it is fitted with such questions: bench/fit_verifier.py --context-share).
FORM_FEATURES: tuple[str, ...] = ("q_words", "null_by_words", "score_by_words", "overlap_by_words")
VERIFIER_FEATURES: tuple[str, ...] = (
    READER_FEATURES + RETRIEVAL_FEATURES + QUESTION_FEATURES + FORM_FEATURES
)
# With the answer checker (a second span model trained for "no answer", ``SpanReader``'s
# ``checker``): its margin for the same span in the same window.
CHECKER_FEATURES: tuple[str, ...] = ("check",)
CHECKED_FEATURES: tuple[str, ...] = VERIFIER_FEATURES + CHECKER_FEATURES


def offered_features(probe: bool, checker: bool) -> tuple[str, ...]:
    """The features a span reader offers its verifier (what a fit may name): those of
    ``span_features``, with the answerability probe's (``probe``: its folder holds one) and
    the answer checker's (``checker``)."""
    return (
        VERIFIER_FEATURES
        + (PROBE_FEATURES if probe else ())
        + (CHECKER_FEATURES if checker else ())
    )


def answer_key(text: str) -> str:
    """What two spans share when they give the same answer: their words, lower-cased."""
    return " ".join(_WORD.findall(text.lower()))


def _containing(span: Span, passages: Sequence[Passage]) -> int | None:
    """Index of the first passage whose range holds the span's start (None: the span lies
    in the margin the reader reads around the passages)."""
    for i, p in enumerate(passages):
        if p.doc_id == span.doc_id and p.start <= span.start < p.end:
            return i
    return None


def span_features(
    question: str,
    spans: Sequence[Span],
    nulls: Sequence[float],
    passages: Sequence[Passage],
    documents: Mapping[str, Document],
    checks: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """The feature values (``VERIFIER_FEATURES``) of each candidate of one question: ``spans`` best
    first, ``nulls[i]`` the no-answer score of the window ``spans[i]`` was read in; with
    ``checks`` (the answer checker's margin of each span), ``CHECKED_FEATURES``."""
    if not spans:
        return []
    q_terms = content_terms(question)
    kind = question_type(question)
    q_words = set(_WORD.findall(question.lower()))
    length = math.log1p(len(_WORD.findall(question)))
    top = spans[:MASS_SPANS]
    peak = max(s.score for s in top)
    weights = [math.exp(s.score - peak) for s in top]
    total = sum(weights)
    mass: dict[str, float] = {}
    for s, w in zip(top, weights, strict=False):
        key = answer_key(s.text)
        mass[key] = mass.get(key, 0.0) + w / total
    dense_top = max((p.dense_score or 0.0 for p in passages), default=0.0)
    # The best other answer of a span: the best span when its text differs, else the best
    # span of another text.
    keys = [answer_key(s.text) for s in spans]
    second = next((s.score for s, k in zip(spans, keys, strict=True) if k != keys[0]), None)
    # Many candidates share a sentence or a passage: their terms are read once.
    sentence_terms: dict[tuple[str, int, int], set[str]] = {}
    passage_terms: dict[int, set[str]] = {}
    out = []
    for i, (span, key, null) in enumerate(zip(spans, keys, nulls, strict=True)):
        rival = spans[0].score if key != keys[0] else second
        gap = NO_RIVAL_GAP if rival is None else min(NO_RIVAL_GAP, span.score - rival)
        at = _containing(span, passages)
        p = passages[at] if at is not None else None
        where = (span.doc_id, span.context_start, span.context_end)
        if where not in sentence_terms:
            text = documents[span.doc_id].text[span.context_start : span.context_end]
            sentence_terms[where] = content_terms(text)
        if at is not None and at not in passage_terms:
            passage_terms[at] = content_terms(passages[at].text)
        a_terms = content_terms(span.text)
        typed = kind in ("number", "date")
        typed_hit = bool(NUMBER.search(span.text) or DATE.search(span.text))
        values = {
            "score": span.score,
            "null": null,
            "gap": gap,
            "mass": mass.get(key, 0.0),
            "passage_rr": 0.0 if at is None else 1.0 / (at + 1),
            "dense": 0.0 if p is None or p.dense_score is None else p.dense_score,
            "dense_top": dense_top,
            "dense_rr": 0.0 if p is None or p.dense_rank is None else 1.0 / p.dense_rank,
            "bm25_rr": 0.0 if p is None or p.bm25_rank is None else 1.0 / p.bm25_rank,
            "q_in_sentence": len(q_terms & sentence_terms[where]) / max(1, len(q_terms)),
            "q_in_passage": 0.0
            if at is None
            else len(q_terms & passage_terms[at]) / max(1, len(q_terms)),
            "answer_in_q": len(a_terms & q_terms) / max(1, len(a_terms)),
            "answer_words": math.log1p(len(_WORD.findall(span.text))),
            "q_number": float(kind == "number"),
            "q_date": float(kind == "date"),
            "q_name": float(kind == "name"),
            "q_place": float(kind == "place"),
            "q_why_how": float(kind is None and bool(q_words & set(_WH))),
            "typed_miss": float(typed and not typed_hit),
        }
        values["q_words"] = length
        values["null_by_words"] = null * length
        values["score_by_words"] = span.score * length
        values["overlap_by_words"] = values["q_in_sentence"] * length
        if checks is not None:
            values["check"] = checks[i]
        out.append(values)
    return out
