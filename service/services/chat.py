"""OpenAI-compatible chat on top of the extractive QA service.

The last user message is the question. When it looks like a follow-up (it has a pronoun such
as "he" or "it", or it is very short), the previous user turns (``chat_followup_turns``) are
added to the *retrieval* query, so "When was he born?" after "Who founded X?" retrieves
passages about X's founder; the reader still answers the last question itself. Assistant
turns are never used: they are our own earlier answers.

The content is the answer span followed by its citation marker ``[1]`` (and, unless turned
off, a "Sources" list quoting each cited sentence, for frontends that only show text). The
service returns a ``ChatReply`` (the answer, the content, its stream pieces, token counts);
``service.openai`` turns it into OpenAI's response body or server-sent events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rag.ingest import cl100k
from rag.models import Answer
from rag.pipeline import QuestionError
from rag.settings import Settings
from service.services.qa import QAService


class Part(Protocol):
    """A content part of a message (``service.openai.ContentPart``)."""

    @property
    def text(self) -> str | None: ...


class Message(Protocol):
    """A conversation turn as the chat service reads it (``service.openai.ChatMessage``)."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str | Sequence[Part] | None: ...

    def plain_text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ChatReply:
    """A conversation answered: the extractive answer and the reply made of it."""

    answer: Answer
    # The reply text: the answer with its citation markers (and sources), or the
    # no-answer message.
    content: str
    # ``content`` cut at white space for streaming; the pieces concatenate to it.
    pieces: tuple[str, ...]
    # Tokens (cl100k) of what the service read and of the reply.
    prompt_tokens: int
    completion_tokens: int
    model: str


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
    messages: Sequence[Message], followup_turns: int, max_words: int, max_chars: int = 1000
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
    """Answers a conversation's last question with the QA service, as a ``ChatReply``."""

    def __init__(self, qa: QAService, settings: Settings, model_id: str | None = None) -> None:
        self.qa = qa
        self.settings = settings
        self._model_id = model_id or settings.chat_model_id
        self._encoding = cl100k()

    @property
    def model_id(self) -> str:
        """The model id this service answers as (``chat_model_id``, or
        ``<chat_model_id>:<collection>`` for a collection)."""
        return self._model_id

    def check_size(self, messages: Sequence[Message]) -> None:
        """QuestionError (422) for a conversation over the message, part or size limits."""
        s = self.settings
        if len(messages) > s.max_chat_messages:
            raise QuestionError(
                f"messages: {len(messages)} given; the limit is {s.max_chat_messages}"
            )
        for i, m in enumerate(messages):
            content = m.content
            parts = [content] if content is None or isinstance(content, str) else content
            if len(parts) > s.max_chat_parts:
                raise QuestionError(
                    f"messages[{i}]: {len(parts)} content parts; the limit is {s.max_chat_parts}"
                )
            for p in parts:
                text = p if p is None or isinstance(p, str) else p.text
                if text is not None and len(text) > s.max_chat_message_chars:
                    raise QuestionError(
                        f"messages[{i}]: {len(text)} characters; the limit is "
                        f"{s.max_chat_message_chars}"
                    )

    def reply(
        self,
        messages: Sequence[Message],
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        sources_in_text: bool | None = None,
        answers: int = 1,
    ) -> ChatReply:
        """The answer to the last user message (earlier user turns widen the retrieval of a
        follow-up); ``sources_in_text`` defaults to ``chat_sources_in_text``; ``answers``
        distinct answers travel in the answer (the content shows the best)."""
        s = self.settings
        self.check_size(messages)
        question, context = split_turns(
            messages, s.chat_followup_turns, s.chat_followup_max_words, s.max_question_chars
        )
        answer = self.qa.ask(question, top_k, filters, context=context, answers=answers)
        sources = s.chat_sources_in_text if sources_in_text is None else sources_in_text
        content = self.content(answer, sources)
        prompt, completion = self.usage(question, context, content)
        return ChatReply(
            answer=answer,
            content=content,
            pieces=tuple(stream_pieces(content, s.chat_stream_chunk_chars)),
            prompt_tokens=prompt,
            completion_tokens=completion,
            model=self.model_id,
        )

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

    def usage(self, question: str, context: str | None, content: str) -> tuple[int, int]:
        """(prompt, completion) tokens (cl100k): of what the service read, the question and
        the part of earlier turns added to retrieval, and of the reply; bounded, whatever
        the conversation's size."""
        read = question + " " + (context or "")[-self.settings.max_question_chars :]
        return len(self._encoding.encode(read)), len(self._encoding.encode(content))
