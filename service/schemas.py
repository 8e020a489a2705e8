"""Request and response models of the HTTP API (the OpenAI-compatible ones are in
``service.openai``).

Response models are read from the service's results (``from_attributes``): a route returns
``Model.model_validate(result)``, never a field-by-field copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

from rag.models import Document, DocumentInfo
from rag.settings import INDEX_NAME_PATTERN
from rag.validation import DOC_ID_MAX_CHARS, check_doc_id, check_metadata, check_text


def validation_message(errors: Iterable[Any]) -> str:
    """One line for pydantic's errors: ``field: message``, each once ("Value error, " and
    a field name our own checks put in front are dropped)."""
    parts = []
    for e in errors:
        if e.get("type") == "json_invalid":
            parts.append("the request body is not valid JSON")
            continue
        where = ".".join(str(x) for x in e["loc"] if x != "body") or "body"
        msg = str(e["msg"]).removeprefix("Value error, ")
        last = str(e["loc"][-1]) if e["loc"] else ""
        parts.append(f"{where}: {msg.removeprefix(f'{last}: ')}")
    return "; ".join(parts)


def checked_text(field: str) -> AfterValidator:
    """Refuses lone surrogates and NUL at the edge (422), before any model sees the text."""
    return AfterValidator(lambda v: v if v is None else check_text(v, field))


Question = Annotated[str, checked_text("question")]
DocId = Annotated[str, AfterValidator(check_doc_id)]
Metadata = Annotated[dict[str, Any], AfterValidator(check_metadata)]


def _integral(value: Any) -> Any:
    """JSON Schema's integer includes 2.0: take it as 2 (strings and booleans stay refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_integral)]
# Request bodies are read strictly: "5" is not a number, "true" not a boolean, as their
# schemas say (FastAPI's default lax mode would accept both).
STRICT = ConfigDict(extra="forbid", strict=True)
# Response bodies are read from the service's results (dataclasses) by attribute.
FROM_ATTRIBUTES = ConfigDict(from_attributes=True)

Scalar = str | int | float | bool
Filters = dict[str, Scalar | list[Scalar]]
FILTERS_DESCRIPTION = (
    'Only documents matching every key: "doc_id" or a metadata field; a list value matches '
    "any of its items."
)


# ---- questions -------------------------------------------------------------------------
ANSWERS_DESCRIPTION = (
    "How many distinct answers to list in `answers`, best first (1..RAG_MAX_ANSWERS)."
)


class AskRequest(BaseModel):
    """A question, with optional retrieval depth and document filters."""

    model_config = STRICT

    question: Question = Field(
        ..., description="The question; blank or over the length limit is 422."
    )
    top_k: JsonInt | None = Field(
        None, description="Passages to retrieve and read (1..RAG_MAX_TOP_K)."
    )
    filters: Filters | None = Field(None, description=FILTERS_DESCRIPTION)
    answers: JsonInt = Field(1, description=ANSWERS_DESCRIPTION)


class AskBatchRequest(BaseModel):
    """Many questions answered together (one encoder pass for all of them)."""

    model_config = STRICT

    questions: list[Question] = Field(
        ..., description="The questions (1..RAG_MAX_BATCH_QUESTIONS), each as in POST /ask."
    )
    top_k: JsonInt | None = Field(None, description="Passages per question (1..RAG_MAX_TOP_K).")
    filters: Filters | None = Field(None, description=FILTERS_DESCRIPTION)
    answers: JsonInt = Field(1, description=ANSWERS_DESCRIPTION)


class CitationOut(BaseModel):
    """Where an answer comes from: ``quote == document.text[start:end]``."""

    model_config = FROM_ATTRIBUTES

    doc_id: str
    title: str
    start: int
    end: int
    quote: str
    pages: list[int] = Field(
        default=[], description="The pages the quote lies on (1-based), for a PDF; else []."
    )


class CandidateOut(BaseModel):
    """One of the n best answers: ``text == document.text[start:end]``, with its citation."""

    model_config = FROM_ATTRIBUTES

    text: str
    doc_id: str
    start: int
    end: int
    score: float
    confidence: float
    citations: list[CitationOut]


class PassageOut(BaseModel):
    """A retrieved chunk with its scores; ``id`` is the store's chunk id."""

    model_config = FROM_ATTRIBUTES

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


class AnswerOut(BaseModel):
    """The service's reply. ``text`` is empty and ``no_answer_reason`` set when it abstains."""

    model_config = FROM_ATTRIBUTES

    question: str
    text: str
    doc_id: str | None
    start: int | None
    end: int | None
    score: float
    confidence: float
    citations: list[CitationOut]
    no_answer_reason: str | None = None
    passages: list[PassageOut] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    answers: list[CandidateOut] = Field(
        default_factory=list,
        description="The distinct answers asked for (`answers`), best first; empty when it "
        "abstains.",
    )


class AskBatchResponse(BaseModel):
    answers: list[AnswerOut]


# ---- documents -------------------------------------------------------------------------
TITLE_MAX_CHARS = 1000
DOC_ID_DESCRIPTION = (
    "Document id, addressable as /documents/{id}: 1-512 characters, no control characters, "
    "no leading or trailing white space, no empty, '.' or '..' segments between slashes, "
    "and no tail like '/spans/1-2'."
)


class DocumentIn(BaseModel):
    """A document given as JSON. Without ``id`` it is named by its content hash."""

    model_config = STRICT

    id: DocId | None = Field(
        None,
        min_length=1,
        max_length=DOC_ID_MAX_CHARS,
        description=DOC_ID_DESCRIPTION + " Default 'sha256:<first 16 hex of the text>'.",
    )
    title: Annotated[str, checked_text("title")] | None = Field(
        None, max_length=TITLE_MAX_CHARS, description="Title; default first line."
    )
    text: Annotated[str, checked_text("text")] = Field(
        ..., min_length=1, description="The text; citations point into it."
    )
    metadata: Metadata | None = Field(
        None, description="Filterable metadata: a JSON object (64-bit integers, finite numbers)."
    )


class DocumentSummary(BaseModel):
    """A stored document without its text."""

    model_config = FROM_ATTRIBUTES

    id: str
    title: str
    sha256: str
    metadata: dict[str, Any]
    # ``DocumentInfo.n_chunks``
    chunks: int = Field(validation_alias=AliasChoices("chunks", "n_chunks"))


class DocumentOut(DocumentSummary):
    """A stored document with its text."""

    text: str
    page_starts: list[int] = Field(
        default=[],
        description="For a PDF: where each page starts in text (page n is "
        "text[page_starts[n-1]:page_starts[n]]); else [].",
    )


def document_out(document: Document, info: DocumentInfo) -> DocumentOut:
    """A stored document: its identity (``info``, one snapshot with it), text and pages."""
    summary = DocumentSummary.model_validate(info)
    return DocumentOut(
        **summary.model_dump(), text=document.text, page_starts=list(document.page_starts)
    )


class DocumentPage(BaseModel):
    model_config = FROM_ATTRIBUTES

    items: list[DocumentSummary]
    total: int
    limit: int
    offset: int


class JobOut(BaseModel):
    """A background ingest job."""

    model_config = FROM_ATTRIBUTES

    id: str
    state: Literal["queued", "running", "done", "failed"]
    created: float = Field(description="Unix time.")
    started: float | None = None
    finished: float | None = None
    documents: int = Field(description="Documents submitted.")
    chunks_total: int | None = Field(None, description="Chunks to embed, once known.")
    chunks_done: int = Field(description="Chunks embedded so far.")
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    error: str | None = None


class IngestOut(BaseModel):
    """Result of POST /documents: done now (201) or queued (202, poll ``job``)."""

    status: Literal["done", "queued"]
    documents: list[str] = Field(description="Ids of the submitted documents.")
    urls: list[str] = Field(
        default=[],
        description="Where each submitted document is read and deleted, in order (its id "
        "percent-encoded into /documents/{id}).",
    )
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    job: JobOut | None = None


class SpanOut(BaseModel):
    """A cited span with surrounding context: ``before + quote + after`` is contiguous."""

    model_config = FROM_ATTRIBUTES

    doc_id: str
    title: str
    start: int
    end: int
    quote: str = Field(description="document.text[start:end]")
    context_start: int
    context_end: int
    before: str = Field(description="document.text[context_start:start]")
    after: str = Field(description="document.text[end:context_end]")
    pages: list[int] = Field(
        default=[], description="The pages the span lies on (1-based), for a PDF; else []."
    )


# ---- collections -----------------------------------------------------------------------
class CollectionIn(BaseModel):
    """A collection to create."""

    model_config = STRICT

    name: str = Field(
        ...,
        pattern=INDEX_NAME_PATTERN,
        description="1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit.",
    )


class CollectionOut(BaseModel):
    """A served collection: a named index with its own documents and questions."""

    name: str
    default: bool = Field(description="Whether the unprefixed routes act on it.")
    model: str = Field(description="Its model id for /v1/chat/completions.")
    ready: bool
    documents: int | None = None
    chunks: int | None = None


class CollectionList(BaseModel):
    items: list[CollectionOut]


# ---- operations ------------------------------------------------------------------------
class Health(BaseModel):
    status: str
    documents: int | None = None


class Ready(BaseModel):
    status: Literal["ready", "not ready"]
    reason: str | None = None
    documents: int | None = None
    chunks: int | None = None


class ErrorBody(BaseModel):
    detail: str
