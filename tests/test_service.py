"""POST /ask and GET /health through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rag.settings import Settings
from service.app import create_app
from tests.conftest import LOCAL, SEED_ID, SEEDS


@pytest.fixture(scope="module")
def client(seed_index_root: Path) -> Iterator[TestClient]:
    app = create_app(Settings(index_root=seed_index_root, max_question_chars=200))
    with TestClient(app, base_url=LOCAL) as c:
        yield c


pytestmark = pytest.mark.model


def test_ask_returns_cited_span(client: TestClient) -> None:
    r = client.post("/ask", json={"question": "Who said North Korean workers would be welcomed?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "Khusnullin" in body["text"]
    text = (SEEDS / SEED_ID).read_text(encoding="utf-8")
    assert text[body["start"] : body["end"]] == body["text"]
    for c in body["citations"]:
        assert text[c["start"] : c["end"]] == c["quote"]
    # The default decides at the answerable share estimated from the questions asked, which
    # /metrics shows (a number once one is asked).
    line = next(
        x for x in client.get("/metrics").text.splitlines() if x.startswith("rag_answerable_share ")
    )
    assert 0.0 < float(line.split()[1]) <= 1.0


@pytest.mark.parametrize(
    "payload",
    [
        {"question": ""},
        {"question": "   \n "},
        {"question": "x" * 201},
        {},
        {"question": 42},
        {"question": "Who?", "top_k": 0},
        {"question": "Who?", "top_k": 51},
        {"question": "Who?", "unknown": 1},
        {"question": "Who?", "filters": {"doc_id": {"nested": 1}}},
    ],
)
def test_bad_requests_get_422_with_a_message(
    client: TestClient, payload: dict[str, object]
) -> None:
    r = client.post("/ask", json=payload)
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_curl_default_form_content_type_is_read_as_json(client: TestClient) -> None:
    # `curl -X POST localhost:8000/ask -d '{...}'` sends application/x-www-form-urlencoded.
    body = b'{"question": "Who said North Korean workers would be welcomed?"}'
    r = client.post(
        "/ask", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200, r.text
    assert "Khusnullin" in r.json()["text"]


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post("/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == "the request body is not valid JSON"


def test_filters_and_top_k(client: TestClient) -> None:
    r = client.post(
        "/ask", json={"question": "Who said it?", "top_k": 2, "filters": {"doc_id": "other"}}
    )
    assert r.status_code == 200 and r.json()["text"] == ""
    assert r.json()["no_answer_reason"]
    empty = client.post("/ask", json={"question": "Who said it?", "filters": {"doc_id": []}})
    assert empty.status_code == 200 and empty.json()["no_answer_reason"]


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "documents": 1}
    assert client.get("/docs").status_code == 200
    assert "/ask" in client.get("/openapi.json").json()["paths"]


def test_missing_index_is_created_empty_and_answers_no_documents(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(index_root=tmp_path), warm_up=False), base_url=LOCAL) as c:
        r = c.post("/ask", json={"question": "Anyone there?"})
        assert r.status_code == 200 and "no documents" in r.json()["no_answer_reason"]
        assert c.get("/health").json()["documents"] == 0
