"""The data model that crosses every stage boundary.

Every offset is a character offset into ``Document.text`` (the stored text), so that
``document.text[start:end] == quote`` holds for every chunk, passage, span and citation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


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

    @property
    def sha256(self) -> str:
        return text_sha256(self.text)


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


@dataclass(frozen=True, slots=True)
class Citation:
    """Where an answer comes from: ``quote == document.text[start:end]``."""

    doc_id: str
    title: str
    start: int
    end: int
    quote: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The service's reply. ``text`` is empty and ``no_answer_reason`` set when it abstains."""

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
