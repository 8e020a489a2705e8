"""The data model that crosses every stage boundary.

Every offset is a character offset into ``Document.text`` (the stored text), so that
``document.text[start:end] == quote`` holds for every chunk, passage, span and citation.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


def text_sha256(text: str) -> str:
    """sha256 of a document's text (UTF-8): the identity used for incremental ingest."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Document:
    """A source document as stored: offsets of everything downstream refer to ``text``."""

    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # A paged document's (a PDF's) page start offsets into ``text``: page n (1-based)
    # is ``text[page_starts[n - 1]:page_starts[n]]``. Empty for a document without pages.
    page_starts: tuple[int, ...] = ()

    @property
    def sha256(self) -> str:
        return text_sha256(self.text)

    def pages_of(self, start: int, end: int) -> tuple[int, ...]:
        """The page numbers (1-based) the range ``[start, end)`` lies on; ``()`` for a
        document without pages."""
        if not self.page_starts:
            return ()
        first = bisect.bisect_right(self.page_starts, start)
        last = bisect.bisect_right(self.page_starts, max(start, end - 1))
        return tuple(range(max(first, 1), max(last, 1) + 1))


@dataclass(frozen=True, slots=True)
class Chunk:
    """A token window of a document: ``document.text[start:end] == text``."""

    doc_id: str
    start: int
    end: int
    text: str
    n_tokens: int


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved chunk with its scores; ``id`` is the store's chunk id."""

    id: int
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
    dense_rank: int | None = None
    bm25_rank: int | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """One retriever's hit: a chunk id of the store and its score (higher is better)."""

    id: int
    score: float


@dataclass(frozen=True, slots=True)
class Span:
    """A candidate answer: a character range of one document, with its reader score."""

    doc_id: str
    start: int
    end: int
    text: str
    score: float
    # The enclosing sentence, shown to users as the cited context.
    context_start: int
    context_end: int
    # What the reader's verifier weighs about this answer (``rag.reader.verifier``); empty
    # for a reader without one.
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Citation:
    """Where an answer comes from: ``quote == document.text[start:end]``."""

    doc_id: str
    title: str
    start: int
    end: int
    quote: str
    # The pages the quote lies on (1-based), for a paged document (a PDF); else empty.
    pages: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    """One of the n best answers: a verbatim span of ``doc_id`` (``text ==
    document.text[start:end]``) with its citation and confidence."""

    text: str
    doc_id: str
    start: int
    end: int
    score: float
    confidence: float
    citations: list[Citation]


@dataclass(frozen=True, slots=True)
class Answer:
    """The service's reply. ``text`` is empty and ``no_answer_reason`` set when it abstains.

    ``answers`` holds the n best distinct answers asked for, best first (the first is this
    answer's own span); empty when it abstains."""

    question: str
    text: str
    doc_id: str | None
    start: int | None
    end: int | None
    score: float
    confidence: float
    citations: list[Citation]
    no_answer_reason: str | None = None
    passages: list[Passage] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    answers: list[Candidate] = field(default_factory=list)
    # What the reader's verifier weighed about the best span, answered or not (for fitting
    # and error analysis; empty for a reader without a verifier or without a span).
    features: Mapping[str, float] = field(default_factory=dict)
    # The best span an abstention held back (error analysis: was the right answer read and
    # withheld?). Never an answer: the HTTP, CLI and chat replies do not show it.
    withheld: str | None = None

    @property
    def answered(self) -> bool:
        return self.no_answer_reason is None


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What an ingest did, per document, so that callers can report failures by name."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    chunks_embedded: int = 0
    seconds: float = 0.0
    # Time inside the encoder only (model loading excluded): chunks_embedded / this = chunks/s.
    embed_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """A stored document's identity, without its text."""

    id: str
    title: str
    sha256: str
    metadata: dict[str, Any]
    n_chunks: int
    page_starts: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What an index holds and how it was built."""

    path: str
    documents: int
    chunks: int
    manifest: dict[str, str]


# Signals of an answer that a reader's confidence may weigh (names of values the reader
# gives with each span): its score, whether the answer was narrowed inside its sentence,
# and the span reader's verifier features (``rag.reader.verifier.FEATURES``).
AbstentionFeature = str


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


@dataclass(frozen=True, slots=True)
class Abstention:
    """When a reader abstains, and how sure it is when it answers; each reader owns one.

    ``calibration``: logistic weights, one per name in ``features`` and then a bias, giving
    P(correct); None when unfitted (the reader then says what its raw score means).
    ``threshold``: the reader abstains when its best answer's ``decides`` value is below it:
    its "score" (a margin), its "confidence" (the calibrated P(correct): the verifier), or
    its "answerable" probability (the factorised verifier, below).
    ``objective`` is what a fit maximises: "f1" (the official SQuAD v2.0 F1, for phrase
    answers) or "cited" (right decisions: an answer whose cited sentence holds a gold answer).

    The factorised verifier splits P(correct) = P(answerable) x P(correct | answerable):
    ``answerable`` holds the logistic weights of P(answerable) (same features, then a
    bias), fitted where a share ``fit_prior`` of the questions had an answer, and then
    ``calibration`` is P(correct | answerable). The first factor is the only one that
    depends on how often questions have an answer, so a deployment whose share differs
    (``prior``: every question answerable is 1.0) moves its log-odds by the difference of
    the priors' log-odds (Bayes' rule under label shift), and the decision and the
    confidence follow, without refitting. ``prior`` is a deployment's setting
    (``RAG_SPAN_ANSWERABLE_PRIOR``), never part of a fit file.
    """

    threshold: float = 0.0
    calibration: tuple[float, ...] | None = None
    features: tuple[AbstentionFeature, ...] = ("score",)
    objective: Literal["f1", "cited"] = "f1"
    decides: Literal["score", "confidence", "answerable"] = "score"
    answerable: tuple[float, ...] | None = None
    fit_prior: float | None = None
    prior: float | None = None

    def __post_init__(self) -> None:
        n = len(self.features) + 1
        for name, weights in (("calibration", self.calibration), ("answerable", self.answerable)):
            if weights is not None and len(weights) != n:
                raise ValueError(
                    f"a {name} over {list(self.features)} has {n} weights, not {len(weights)}"
                )
        if self.decides != "score" and self.calibration is None:
            raise ValueError(f"an abstention that decides on {self.decides} needs a calibration")
        if self.decides == "answerable" and (self.answerable is None or self.fit_prior is None):
            raise ValueError("an abstention that decides on answerable needs its weights and prior")
        if (self.answerable is None) != (self.fit_prior is None):
            raise ValueError("P(answerable) weights and the prior they were fitted at go together")
        if self.prior is not None and self.answerable is None:
            raise ValueError("a prior moves P(answerable): it needs the factorised verifier")
        if self.fit_prior is not None and not 0.0 < self.fit_prior < 1.0:
            raise ValueError(f"fit_prior {self.fit_prior} is not inside (0, 1)")
        if self.prior is not None and not 0.0 < self.prior <= 1.0:
            raise ValueError(f"prior {self.prior} is not inside (0, 1]")

    def decision_value(self, values: Mapping[str, float]) -> float:
        """The value the threshold is compared with (see ``decides``)."""
        if self.decides == "score":
            return values["score"]
        p = self.answerable_probability(values) if self.decides == "answerable" else None
        p = self.probability(values) if p is None else p
        return 0.0 if p is None else p

    def abstains(self, values: Mapping[str, float]) -> bool:
        """Whether an answer with these feature values is withheld."""
        return self.decision_value(values) < self.threshold

    def answerable_probability(self, values: Mapping[str, float]) -> float | None:
        """P(the documents answer the question) under ``prior`` (the fit's own when unset);
        None without the factorised verifier."""
        if self.answerable is None:
            return None
        if self.prior is not None and self.prior >= 1.0:
            return 1.0
        z = _linear(self.answerable, self.features, values)
        if self.prior is not None and self.fit_prior is not None:
            z += _logit(self.prior) - _logit(self.fit_prior)
        return _sigmoid(z)

    def probability(self, values: Mapping[str, float]) -> float | None:
        """The calibrated P(correct) of an answer with these feature values, or None."""
        if self.calibration is None:
            return None
        p = _sigmoid(_linear(self.calibration, self.features, values))
        a = self.answerable_probability(values)
        return p if a is None else a * p


def _linear(
    weights: Sequence[float], features: Sequence[str], values: Mapping[str, float]
) -> float:
    *w, bias = weights
    return sum(wi * values[f] for wi, f in zip(w, features, strict=True)) + bias


@dataclass(frozen=True, slots=True)
class ReaderInfo:
    """Which reader a pipeline answers with, its abstention, and where its fit is kept."""

    kind: str
    abstention: Abstention
    fit_file: Path
