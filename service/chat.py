"""OpenAI-compatible chat on top of the extractive QA service.

The last user message is the question. When it looks like a follow-up (it has a pronoun such
as "he" or "it", or it is very short), the previous user turns (``chat_followup_turns``) are
added to the *retrieval* query, so "When was he born?" after "Who founded X?" retrieves
passages about X's founder; the reader still answers the last question itself. Assistant
turns are never used: they are our own earlier answers.

The content is the answer span followed by its citation marker ``[1]`` (and, unless turned
off, a "Sources" list quoting each cited sentence, for frontends that only show text). The
structured citations travel in the ``citations`` extension field: in the response body, or
once, in the final chunk of a stream.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Sequence

from rag.ingest import cl100k
from rag.models import Answer
from rag.pipeline import QuestionError
from rag.settings import Settings
from service.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCitation,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChatRequest,
    ChunkChoice,
    ContentPart,
    Delta,
    ModelCard,
    ModelList,
    RagAnswer,
    Usage,
)
from service.services import QAService

ANAPHORA = frozenset(
    "he she it they him her them his hers its their theirs this that these those there then "
    "he's she's it's they're".split()
)
_WORD = re.compile(r"[\w']+")


def is_followup(question: str, max_words: int) -> bool:
    """Whether a question likely leans on the conversation (a pronoun, or very short)."""
    words = [w.lower() for w in _WORD.findall(question)]
    return len(words) <= max_words or any(w in ANAPHORA for w in words)


def split_turns(
    messages: Sequence[ChatMessage], followup_turns: int, max_words: int, max_chars: int = 1000
) -> tuple[str, str | None]:
    """(question, retrieval context) from an OpenAI message list.

    The question is the last user message with text (messages after it, such as an
    assistant prefill, are ignored), clipped to its last ``max_chars`` characters: a long
    turn usually ends with its question. Earlier user turns are the retrieval context of a
    follow-up.
    """
    users = [m.plain_text() for m in messages if m.role == "user"]
    users = [u for u in users if u.strip()]
    if not users:
        raise QuestionError("messages: no user message with text to answer")
    question = users[-1].strip()[-max_chars:]
    earlier = users[:-1]
    if followup_turns and earlier and is_followup(question, max_words):
        return question, " ".join(earlier[-followup_turns:])
    return question, None


def stream_pieces(text: str, size: int) -> list[str]:
    """``text`` cut at whitespace into pieces of at most about ``size`` characters."""
    pieces: list[str] = []
    current = ""
    for token in re.findall(r"\S+\s*|\s+", text):
        if current and len(current) + len(token) > size:
            pieces.append(current)
            current = ""
        current += token
    if current:
        pieces.append(current)
    return pieces


class ChatService:
    """Builds chat completions (whole or streamed) from the QA service's answers."""

    def __init__(self, qa: QAService, settings: Settings) -> None:
        self.qa = qa
        self.settings = settings
        self._encoding = cl100k()

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.settings.chat_model_id, created=0)])

    def check_size(self, request: ChatRequest) -> None:
        """QuestionError (422) for a conversation over the message, part or size limits."""
        s = self.settings
        if len(request.messages) > s.max_chat_messages:
            raise QuestionError(
                f"messages: {len(request.messages)} given; the limit is {s.max_chat_messages}"
            )
        for i, m in enumerate(request.messages):
            parts = m.content if isinstance(m.content, list) else [m.content]
            if len(parts) > s.max_chat_parts:
                raise QuestionError(
                    f"messages[{i}]: {len(parts)} content parts; the limit is {s.max_chat_parts}"
                )
            for p in parts:
                text = p.text if isinstance(p, ContentPart) else p
                if text is not None and len(text) > s.max_chat_message_chars:
                    raise QuestionError(
                        f"messages[{i}]: {len(text)} characters; the limit is "
                        f"{s.max_chat_message_chars}"
                    )

    def _turns(self, request: ChatRequest) -> tuple[str, str | None]:
        s = self.settings
        return split_turns(
            request.messages,
            s.chat_followup_turns,
            s.chat_followup_max_words,
            s.max_question_chars,
        )

    def answer(self, request: ChatRequest) -> Answer:
        self.check_size(request)
        question, context = self._turns(request)
        return self.qa.ask(question, request.top_k, request.filters, context=context)

    def content(self, answer: Answer, sources_in_text: bool) -> str:
        if not answer.answered:
            return self.settings.no_answer_message
        markers = "".join(f"[{i}]" for i in range(1, len(answer.citations) + 1))
        text = f"{answer.text} {markers}"
        if sources_in_text and answer.citations:
            lines = [
                f"[{i}] {c.title or c.doc_id}: \u201c{c.quote.strip()}\u201d"
                for i, c in enumerate(answer.citations, start=1)
            ]
            text += "\n\nSources:\n" + "\n".join(lines)
        return text

    @staticmethod
    def citations(answer: Answer) -> list[ChatCitation]:
        return [
            ChatCitation(
                index=i, doc_id=c.doc_id, title=c.title, start=c.start, end=c.end, quote=c.quote
            )
            for i, c in enumerate(answer.citations, start=1)
        ]

    @staticmethod
    def rag_answer(answer: Answer) -> RagAnswer:
        return RagAnswer(
            answered=answer.answered,
            text=answer.text,
            doc_id=answer.doc_id,
            start=answer.start,
            end=answer.end,
            confidence=answer.confidence,
            no_answer_reason=answer.no_answer_reason,
        )

    def usage(self, request: ChatRequest, content: str) -> Usage:
        """Tokens (cl100k) of what the service read, the question and the part of earlier
        turns added to retrieval, and of the reply: bounded, whatever the conversation's
        size."""
        question, context = self._turns(request)
        read = question + " " + (context or "")[-self.settings.max_question_chars :]
        prompt = len(self._encoding.encode(read))
        completion = len(self._encoding.encode(content))
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )

    def _sources(self, request: ChatRequest) -> bool:
        if request.citations_in_text is None:
            return self.settings.chat_sources_in_text
        return request.citations_in_text

    def complete(self, request: ChatRequest) -> ChatCompletion:
        answer = self.answer(request)
        content = self.content(answer, self._sources(request))
        return ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=self.settings.chat_model_id,
            choices=[ChatChoice(message=AssistantMessage(content=content))],
            usage=self.usage(request, content),
            citations=self.citations(answer),
            rag_answer=self.rag_answer(answer),
        )

    def stream(self, request: ChatRequest) -> Iterator[str]:
        """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``.

        The answer is computed before the first event (so a bad request is a plain 4xx, not
        a broken stream); the text then goes out in pieces, the citations once at the end.
        """
        answer = self.answer(request)
        content = self.content(answer, self._sources(request))
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        model = self.settings.chat_model_id

        def event(delta: Delta, finish: bool = False, **extra: object) -> str:
            chunk = ChatCompletionChunk(
                id=chunk_id,
                created=created,
                model=model,
                choices=[ChunkChoice(delta=delta, finish_reason="stop" if finish else None)],
                **extra,
            )
            body = chunk.model_dump(mode="json", exclude_none=True)
            body["choices"][0]["finish_reason"] = "stop" if finish else None
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        def events() -> Iterator[str]:
            yield event(Delta(role="assistant", content=""))
            for piece in stream_pieces(content, self.settings.chat_stream_chunk_chars):
                yield event(Delta(content=piece))
            yield event(
                Delta(),
                finish=True,
                citations=self.citations(answer),
                rag_answer=self.rag_answer(answer),
                usage=self.usage(request, content),
            )
            yield "data: [DONE]\n\n"

        return events()
