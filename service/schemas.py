"""Request and response models of the HTTP API (answers themselves are ``rag.models.Answer``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

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


def _text(field: str) -> AfterValidator:
    """Refuses lone surrogates and NUL at the edge (422), before any model sees the text."""
    return AfterValidator(lambda v: v if v is None else check_text(v, field))


Question = Annotated[str, _text("question")]
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

Scalar = str | int | float | bool
Filters = dict[str, Scalar | list[Scalar]]
FILTERS_DESCRIPTION = (
    'Only documents matching every key: "doc_id" or a metadata field; a list value matches '
    "any of its items."
)


# ---- questions -------------------------------------------------------------------------
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


class AskBatchRequest(BaseModel):
    """Many questions answered together (one encoder pass for all of them)."""

    model_config = STRICT

    questions: list[Question] = Field(
        ..., description="The questions (1..RAG_MAX_BATCH_QUESTIONS), each as in POST /ask."
    )
    top_k: JsonInt | None = Field(None, description="Passages per question (1..RAG_MAX_TOP_K).")
    filters: Filters | None = Field(None, description=FILTERS_DESCRIPTION)


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
    title: Annotated[str, _text("title")] | None = Field(
        None, max_length=TITLE_MAX_CHARS, description="Title; default first line."
    )
    text: Annotated[str, _text("text")] = Field(
        ..., min_length=1, description="The text; citations point into it."
    )
    metadata: Metadata | None = Field(
        None, description="Filterable metadata: a JSON object (64-bit integers, finite numbers)."
    )


class DocumentSummary(BaseModel):
    """A stored document without its text."""

    id: str
    title: str
    sha256: str
    metadata: dict[str, Any]
    chunks: int


class DocumentOut(DocumentSummary):
    """A stored document with its text."""

    text: str


class DocumentPage(BaseModel):
    items: list[DocumentSummary]
    total: int
    limit: int
    offset: int


class JobOut(BaseModel):
    """A background ingest job."""

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

    doc_id: str
    title: str
    start: int
    end: int
    quote: str = Field(description="document.text[start:end]")
    context_start: int
    context_end: int
    before: str = Field(description="document.text[context_start:start]")
    after: str = Field(description="document.text[end:context_end]")


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


# ---- OpenAI-compatible chat ------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: str
    text: Annotated[str, _text("text")] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Annotated[str, _text("content")] | list[ContentPart] | None = None

    def plain_text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; sampling parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(None, description="Any value; the answer is extractive.")
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    citations_in_text: bool | None = Field(
        None,
        description="Extension: append the numbered sources to the content "
        "(default RAG_CHAT_SOURCES_IN_TEXT).",
    )
    top_k: JsonInt | None = Field(None, description="Extension: passages to retrieve and read.")
    filters: Filters | None = Field(None, description="Extension: " + FILTERS_DESCRIPTION)


class ChatCitation(BaseModel):
    """Where a marker ``[index]`` of the content points: ``quote == text[start:end]``."""

    index: int
    doc_id: str
    title: str
    start: int
    end: int
    quote: str


class RagAnswer(BaseModel):
    """Extension: the extractive answer behind the message."""

    answered: bool
    text: str
    doc_id: str | None = None
    start: int | None = None
    end: int | None = None
    confidence: float
    no_answer_reason: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """OpenAI's chat.completion, plus ``citations`` and ``rag_answer`` extension fields."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    citations: list[ChatCitation]
    rag_answer: RagAnswer


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None


class ChatCompletionChunk(BaseModel):
    """One SSE event of a streamed completion; the last one carries the citations."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    citations: list[ChatCitation] | None = None
    rag_answer: RagAnswer | None = None
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
