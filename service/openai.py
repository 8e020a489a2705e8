"""The OpenAI wire format: chat request and response schemas, and the mapping of the chat
service's ``ChatReply`` onto them.

- ``to_openai_response``: a whole ``chat.completion``;
- ``to_openai_sse_stream``: server-sent events of ``chat.completion.chunk`` s, the content
  in the reply's pieces, the citations once in the final chunk, then ``data: [DONE]``;
- ``to_openai_models``: the model list.

``citations`` and ``rag_answer`` are extension fields: the structured citations behind the
``[1]`` markers of the content, and the extractive answer itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.models import Answer
from service.schemas import (
    ANSWERS_DESCRIPTION,
    FILTERS_DESCRIPTION,
    FROM_ATTRIBUTES,
    CandidateOut,
    Filters,
    JsonInt,
    checked_text,
)
from service.services import ChatReply


# ---- request ---------------------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: str
    text: Annotated[str, checked_text("text")] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Annotated[str, checked_text("content")] | list[ContentPart] | None = None

    def plain_text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; sampling parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(
        None,
        description="'<chat model id>:<collection>' asks that collection (see /v1/models); "
        "any other value, or none, the default one.",
    )
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    citations_in_text: bool | None = Field(
        None,
        description="Extension: append the numbered sources to the content "
        "(default RAG_CHAT_SOURCES_IN_TEXT).",
    )
    top_k: JsonInt | None = Field(None, description="Extension: passages to retrieve and read.")
    filters: Filters | None = Field(None, description="Extension: " + FILTERS_DESCRIPTION)
    answers: JsonInt = Field(1, description="Extension: " + ANSWERS_DESCRIPTION)


# ---- response --------------------------------------------------------------------------
class ChatCitation(BaseModel):
    """Where a marker ``[index]`` of the content points: ``quote == text[start:end]``."""

    index: int
    doc_id: str
    title: str
    start: int
    end: int
    quote: str
    pages: list[int] = Field(
        default=[], description="The pages the quote lies on (1-based), for a PDF; else []."
    )


class RagAnswer(BaseModel):
    """Extension: the extractive answer behind the message."""

    model_config = FROM_ATTRIBUTES

    answered: bool
    text: str
    doc_id: str | None = None
    start: int | None = None
    end: int | None = None
    confidence: float
    no_answer_reason: str | None = None
    answers: list[CandidateOut] = Field(
        default_factory=list,
        description="The distinct answers asked for (`answers`), best first, each with its "
        "citation; empty when the service abstains.",
    )


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


# ---- mapping ---------------------------------------------------------------------------
def to_chat_citations(answer: Answer) -> list[ChatCitation]:
    """The answer's citations, numbered as the ``[1]``, ``[2]`` markers of the content."""
    return [ChatCitation(index=i, **asdict(c)) for i, c in enumerate(answer.citations, start=1)]


def to_usage(reply: ChatReply) -> Usage:
    prompt, completion = reply.prompt_tokens, reply.completion_tokens
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def to_openai_response(reply: ChatReply) -> ChatCompletion:
    """The reply as one ``chat.completion``."""
    return ChatCompletion(
        id=_completion_id(),
        created=int(time.time()),
        model=reply.model,
        choices=[ChatChoice(message=AssistantMessage(content=reply.content))],
        usage=to_usage(reply),
        citations=to_chat_citations(reply.answer),
        rag_answer=RagAnswer.model_validate(reply.answer),
    )


def to_openai_sse_stream(reply: ChatReply) -> Iterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``: the role,
    the content in the reply's pieces, then the citations, answer and usage once, in the
    final chunk (``finish_reason`` is null in every chunk but that one)."""
    chunk_id, created = _completion_id(), int(time.time())

    def event(delta: Delta, finish: bool = False, **extra: object) -> str:
        chunk = ChatCompletionChunk(
            id=chunk_id,
            created=created,
            model=reply.model,
            choices=[ChunkChoice(delta=delta, finish_reason="stop" if finish else None)],
            **extra,
        )
        body = chunk.model_dump(mode="json", exclude_none=True)
        body["choices"][0]["finish_reason"] = "stop" if finish else None
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield event(Delta(role="assistant", content=""))
    for piece in reply.pieces:
        yield event(Delta(content=piece))
    yield event(
        Delta(),
        finish=True,
        citations=to_chat_citations(reply.answer),
        rag_answer=RagAnswer.model_validate(reply.answer),
        usage=to_usage(reply),
    )
    yield "data: [DONE]\n\n"


def to_openai_models(model_ids: list[str]) -> ModelList:
    """The models this service serves (one per collection)."""
    return ModelList(data=[ModelCard(id=m, created=0) for m in model_ids])
