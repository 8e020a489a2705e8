"""Chat helpers: follow-up detection, turn splitting, streamed pieces; chat on a fake pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, strategies as st

from rag.pipeline import Pipeline, QuestionError
from service.app import create_app
from service.openai import ChatMessage
from service.services import is_followup, split_turns, stream_pieces
from tests.conftest import LOCAL, FakeEmbedder, unit_settings


def msg(role: str, content: object) -> ChatMessage:
    return ChatMessage.model_validate({"role": role, "content": content})


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("When was he born?", True),
        ("And its population?", True),
        ("Why?", True),
        ("Who founded the Zorblat lantern festival in Quillmouth?", False),
    ],
)
def test_is_followup(question: str, expected: bool) -> None:
    assert is_followup(question, max_words=3) is expected


def test_split_turns_uses_earlier_user_turns_only_for_followups() -> None:
    first = msg("user", "Who founded the Zorblat festival?")
    reply = msg("assistant", "Tobias Wrenfield [1]")
    q, ctx = split_turns([first, reply, msg("user", "When was he born?")], 1, 3)
    assert q == "When was he born?" and ctx == "Who founded the Zorblat festival?"
    q, ctx = split_turns(
        [first, reply, msg("user", "What does Quillmouth export to Norway?")], 1, 3
    )
    assert ctx is None
    q, ctx = split_turns([first, reply, msg("user", "When was he born?")], 0, 3)
    assert ctx is None


def test_split_turns_reads_content_parts_and_the_last_user_turn() -> None:
    parts = [
        {"type": "text", "text": "Where is"},
        {"type": "image_url"},
        {"type": "text", "text": "Oslo?"},
    ]
    assert split_turns([msg("user", parts)], 1, 3)[0] == "Where is\nOslo?"
    # An assistant prefill after the question is ignored; the question is the user's.
    assert split_turns([msg("user", "hi"), msg("assistant", "hello")], 1, 3)[0] == "hi"
    # A long turn is read from its end, where its question is.
    assert split_turns([msg("user", "x" * 5000 + " Where?")], 1, 3, 10)[0] == "xxx Where?"
    with pytest.raises(QuestionError, match="no user message"):
        split_turns([msg("system", "be brief"), msg("assistant", "hello")], 1, 3)
    with pytest.raises(QuestionError, match="no user message"):
        split_turns([msg("user", "   ")], 1, 3)


@given(st.text(), st.integers(min_value=1, max_value=40))
def test_stream_pieces_concatenate_to_the_text(text: str, size: int) -> None:
    pieces = stream_pieces(text, size)
    assert "".join(pieces) == text
    assert all(pieces)


def test_followup_retrieval_uses_the_earlier_question(tmp_path: Path) -> None:
    settings = unit_settings(index_root=tmp_path / "idx", abstain_threshold=0.0, api_keys=["k"])
    pipe = Pipeline(settings, embedder=FakeEmbedder())
    with TestClient(create_app(settings, warm_up=False, pipeline=pipe), base_url=LOCAL) as c:
        auth = {"Authorization": "Bearer k"}
        c.post(
            "/documents", json={"id": "z", "text": "Zorblat was founded by Tobias."}, headers=auth
        )
        c.post(
            "/documents",
            json={"id": "o", "text": "Oslo harbour was founded in 1048."},
            headers=auth,
        )
        turns = [
            {"role": "user", "content": "Tell me about Zorblat"},
            {"role": "assistant", "content": "..."},
            {"role": "user", "content": "Who founded it?"},
        ]
        r = c.post("/v1/chat/completions", json={"messages": turns, "top_k": 1})
        assert r.json()["citations"][0]["doc_id"] == "z"
        turns[0]["content"] = "Tell me about Oslo harbour"
        r = c.post("/v1/chat/completions", json={"messages": turns, "top_k": 1})
        assert r.json()["citations"][0]["doc_id"] == "o"


def test_stream_over_http_is_sse_with_one_final_citation_chunk(tmp_path: Path) -> None:
    settings = unit_settings(index_root=tmp_path / "idx", abstain_threshold=0.0, api_keys=["k"])
    pipe = Pipeline(settings, embedder=FakeEmbedder())
    with TestClient(create_app(settings, warm_up=False, pipeline=pipe), base_url=LOCAL) as c:
        c.post(
            "/documents",
            json={"id": "p", "text": "Paris is in France."},
            headers={"Authorization": "Bearer k"},
        )
        body = {
            "messages": [{"role": "user", "content": "Where is Paris?"}],
            "stream": True,
            "citations_in_text": False,
        }
        r = c.post("/v1/chat/completions", json=body)
        events = [e for e in r.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert [("citations" in ch) for ch in chunks] == [False] * (len(chunks) - 1) + [True]
        content = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks)
        # No Sources list when asked not to: the span and its marker only.
        assert content == chunks[-1]["rag_answer"]["text"] + " [1]"
        assert content.startswith("France")
        assert chunks[-1]["citations"][0]["quote"] == "Paris is in France."
