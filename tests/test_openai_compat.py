"""The official `openai` client against the app under uvicorn on loopback, and HTTP writes."""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from rag.settings import Settings
from tests.conftest import SEED_ID, SEEDS, LiveServer

pytestmark = pytest.mark.model

QUESTION = "Who said North Korean workers would be welcomed?"


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> OpenAI:
    # Reads are open by default; the client still needs some key string.
    return OpenAI(base_url=live_server.url + "/v1", api_key="not-needed", max_retries=0)


def _seed_text() -> str:
    return (SEEDS / SEED_ID).read_text(encoding="utf-8")


def test_models_lists_the_service_model_and_each_collection(client: OpenAI) -> None:
    """The bare model id (the default collection), then one per collection; a frontend
    choosing the collection's model gets that collection's answer."""
    base = Settings().chat_model_id
    ids = [m.id for m in client.models.list()]
    assert ids == [base, f"{base}:default"]
    reply = client.chat.completions.create(
        model=f"{base}:default", messages=[{"role": "user", "content": "Who is Khusnullin?"}]
    )
    assert reply.model == base and reply.model_extra is not None
    assert reply.model_extra["citations"][0]["doc_id"] == SEED_ID


def test_chat_completion_has_answer_markers_and_structured_citations(client: OpenAI) -> None:
    resp = client.chat.completions.create(
        model="rag-extractive", messages=[{"role": "user", "content": QUESTION}]
    )
    content = resp.choices[0].message.content or ""
    assert "Khusnullin" in content and "[1]" in content
    assert resp.choices[0].finish_reason == "stop"
    extra = resp.model_extra or {}
    citations = extra["citations"]
    assert citations and citations[0]["index"] == 1
    text = _seed_text()
    for c in citations:
        assert c["doc_id"] == SEED_ID
        assert text[c["start"] : c["end"]] == c["quote"]
        assert c["quote"].strip() in content  # quoted in the Sources list by default
    assert extra["rag_answer"]["answered"] is True
    assert resp.usage is not None and resp.usage.total_tokens > 0


def test_streamed_completion_matches_and_sends_citations_once_at_the_end(
    client: OpenAI,
) -> None:
    whole = client.chat.completions.create(
        model="rag-extractive", messages=[{"role": "user", "content": QUESTION}]
    )
    stream = client.chat.completions.create(
        model="rag-extractive", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    assert len(chunks) >= 3
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == whole.choices[0].message.content
    with_citations = [i for i, c in enumerate(chunks) if (c.model_extra or {}).get("citations")]
    assert with_citations == [len(chunks) - 1]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert (chunks[-1].model_extra or {})["citations"] == (whole.model_extra or {})["citations"]


def test_raw_stream_ends_with_done(live_server: LiveServer) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True}
    with httpx.stream("POST", live_server.url + "/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_no_answer_is_a_polite_message_not_an_error(client: OpenAI) -> None:
    # No document matches the filter, so the service must abstain.
    resp = client.chat.completions.create(
        model="rag-extractive",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"filters": {"doc_id": "no-such-document"}},
    )
    assert resp.choices[0].message.content == Settings().no_answer_message
    assert (resp.model_extra or {})["citations"] == []
    assert (resp.model_extra or {})["rag_answer"]["answered"] is False
    stream = client.chat.completions.create(
        model="rag-extractive",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"filters": {"doc_id": "no-such-document"}},
        stream=True,
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == Settings().no_answer_message


def test_bad_chat_request_is_a_4xx_with_a_message(client: OpenAI) -> None:
    import openai

    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(
            model="rag-extractive", messages=[{"role": "assistant", "content": "hi"}]
        )
    assert "user" in str(err.value)


def test_document_added_over_http_is_answerable_and_deleted_one_is_gone(
    live_server: LiveServer, client: OpenAI
) -> None:
    url, key = live_server.url, live_server.api_key
    doc = {
        "id": "notes/quillmouth.txt",
        "title": "Quillmouth festival",
        "text": "Quillmouth harbour notes.\n\nThe Zorblat lantern festival was founded by "
        "Tobias Wrenfield. The festival is held every October in the harbour town of "
        "Quillmouth.",
    }
    # Unauthenticated and wrongly keyed writes are refused, and change nothing.
    assert httpx.post(url + "/documents", json=doc).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert httpx.post(url + "/documents", json=doc, headers=bad).status_code == 401
    assert httpx.get(url + "/documents/notes/quillmouth.txt").status_code == 404

    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(url + "/documents", json=doc, headers=auth, timeout=60)
    assert r.status_code == 201, r.text
    assert r.json()["added"] == ["notes/quillmouth.txt"]
    question = [{"role": "user", "content": "Who founded the Zorblat lantern festival?"}]
    resp = client.chat.completions.create(model="rag-extractive", messages=question)
    citations = (resp.model_extra or {})["citations"]
    assert "Wrenfield" in (resp.choices[0].message.content or "")
    assert citations[0]["doc_id"] == "notes/quillmouth.txt"
    assert doc["text"][citations[0]["start"] : citations[0]["end"]] == citations[0]["quote"]

    assert httpx.delete(url + "/documents/notes/quillmouth.txt").status_code == 401
    assert httpx.delete(url + "/documents/notes/quillmouth.txt", headers=auth).status_code == 204
    assert httpx.get(url + "/documents/notes/quillmouth.txt").status_code == 404
    resp = client.chat.completions.create(model="rag-extractive", messages=question)
    cited = {c["doc_id"] for c in (resp.model_extra or {})["citations"]}
    assert "notes/quillmouth.txt" not in cited
    assert "Wrenfield" not in (resp.choices[0].message.content or "")


def test_metrics_count_requests_and_answers(live_server: LiveServer) -> None:
    httpx.post(live_server.url + "/ask", json={"question": QUESTION}, timeout=60)
    text = httpx.get(live_server.url + "/metrics").text
    assert 'rag_http_requests_total{method="POST",route="/ask",status="200"}' in text
    assert "rag_http_request_duration_seconds_bucket" in text
    assert 'rag_answers_total{outcome="answered"}' in text
    assert "rag_index_documents 1.0" in text or "rag_index_documents 2.0" in text
