"""Documents API, jobs, auth, limits, errors and operations, on a model-free pipeline."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag.models import Document
from rag.pipeline import Pipeline
from service.app import create_app
from service.jobs import JobState, JobStore
from service.security import KEY_FILE
from tests.conftest import LOCAL, FakeEmbedder, unit_settings

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PARIS = "Paris is the capital of France. It lies on the Seine."


def make_client(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = unit_settings(
        index_root=tmp_path / "idx",
        abstain_threshold=0.0,
        api_keys=[KEY],
        log_requests=False,
        **overrides,
    )
    pipeline = Pipeline(settings, embedder=FakeEmbedder())
    return TestClient(create_app(settings, warm_up=False, pipeline=pipeline), base_url=LOCAL)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, sync_ingest_max_chars=500) as c:
        yield c


def wait_job(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


# ---- writes need a key -----------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": KEY},
    ],
)
def test_writes_without_a_valid_key_get_401_and_change_nothing(
    client: TestClient, headers: dict[str, str]
) -> None:
    assert (
        client.post("/documents", json={"id": "a", "text": PARIS}, headers=AUTH).status_code == 201
    )
    r = client.post("/documents", json={"id": "b", "text": PARIS}, headers=headers)
    assert r.status_code == 401 and r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert client.delete("/documents/a", headers=headers).status_code == 401
    assert [d["id"] for d in client.get("/documents").json()["items"]] == ["a"]


def test_without_configured_keys_a_key_file_is_created_once(tmp_path: Path) -> None:
    settings = unit_settings(index_root=tmp_path / "idx", log_requests=False)
    app = create_app(settings, warm_up=False, pipeline=Pipeline(settings, embedder=FakeEmbedder()))
    key_file = tmp_path / "idx" / KEY_FILE
    key = key_file.read_text().strip()
    assert len(key) >= 32 and oct(key_file.stat().st_mode & 0o777) == "0o600"
    with TestClient(app, base_url=LOCAL) as c:
        assert c.post("/documents", json={"text": PARIS}).status_code == 401
        r = c.post("/documents", json={"text": PARIS}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 201
    create_app(settings, warm_up=False, pipeline=Pipeline(settings, embedder=FakeEmbedder()))
    assert key_file.read_text().strip() == key


def test_reads_can_require_a_key(tmp_path: Path) -> None:
    with make_client(tmp_path, read_requires_key=True) as c:
        for method, path, body in [
            ("POST", "/ask", {"question": "Where is Paris?"}),
            ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x?"}]}),
            ("GET", "/documents", None),
            ("GET", "/v1/models", None),
        ]:
            assert c.request(method, path, json=body).status_code == 401, path
            assert c.request(method, path, json=body, headers=AUTH).status_code == 200, path
        assert c.get("/health").status_code == 200  # operations stay open


# ---- documents -------------------------------------------------------------------------
def test_add_get_list_delete(client: TestClient) -> None:
    r = client.post(
        "/documents",
        json={"id": "geo/paris.txt", "title": "Paris", "text": PARIS, "metadata": {"lang": "en"}},
        headers=AUTH,
    )
    assert r.status_code == 201 and r.json()["added"] == ["geo/paris.txt"]
    doc = client.get("/documents/geo/paris.txt").json()
    assert doc["text"] == PARIS and doc["chunks"] >= 1 and doc["metadata"] == {"lang": "en"}
    assert client.get("/documents").json()["total"] == 1
    answer = client.post("/ask", json={"question": "What is the capital of France?"}).json()
    assert answer["doc_id"] == "geo/paris.txt"
    assert client.delete("/documents/geo/paris.txt", headers=AUTH).status_code == 204
    assert client.get("/documents/geo/paris.txt").status_code == 404
    assert client.delete("/documents/geo/paris.txt", headers=AUTH).status_code == 404
    answer = client.post("/ask", json={"question": "What is the capital of France?"}).json()
    assert answer["no_answer_reason"] and not answer["citations"]


def test_same_content_twice_is_idempotent(client: TestClient) -> None:
    first = client.post("/documents", json={"text": PARIS}, headers=AUTH).json()
    second = client.post("/documents", json={"text": PARIS}, headers=AUTH).json()
    assert first["added"] == second["unchanged"] == first["documents"]
    assert first["documents"][0].startswith("sha256:")
    assert client.get("/documents").json()["total"] == 1


def test_changed_text_under_the_same_id_replaces_it(client: TestClient) -> None:
    client.post("/documents", json={"id": "d", "text": PARIS}, headers=AUTH)
    r = client.post("/documents", json={"id": "d", "text": "Rome is in Italy."}, headers=AUTH)
    assert r.json()["updated"] == ["d"]
    assert client.get("/documents/d").json()["text"] == "Rome is in Italy."


def test_paging(client: TestClient) -> None:
    for i in range(5):
        client.post("/documents", json={"id": f"d{i}", "text": f"Fact number {i}."}, headers=AUTH)
    page = client.get("/documents", params={"limit": 2, "offset": 2}).json()
    assert [d["id"] for d in page["items"]] == ["d2", "d3"] and page["total"] == 5
    assert "text" not in page["items"][0]
    assert client.get("/documents", params={"limit": 0}).status_code == 422
    assert client.get("/documents", params={"offset": -1}).status_code == 422


def test_file_uploads(client: TestClient) -> None:
    html = b"<html><head><title>Rome</title></head><body><p>Rome is in Italy.</p></body></html>"
    r = client.post(
        "/documents", files={"file": ("dir/rome.html", html, "text/html")}, headers=AUTH
    )
    assert r.status_code == 201 and r.json()["added"] == ["rome.html"]  # a name, never a path
    assert client.get("/documents/rome.html").json()["text"].strip() == "Rome is in Italy."
    r = client.post(
        "/documents",
        files={"file": ("notes.md", b"# Notes\nOslo is in Norway.", "text/markdown")},
        data={"id": "custom", "title": "My notes", "metadata": '{"lang": "en"}'},
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    doc = client.get("/documents/custom").json()
    assert doc["title"] == "My notes" and doc["metadata"]["lang"] == "en"
    lines = "\n".join(json.dumps({"id": f"j{i}", "text": f"Line {i} text."}) for i in range(3))
    r = client.post("/documents", files={"file": ("b.jsonl", lines.encode())}, headers=AUTH)
    assert r.status_code == 202  # several documents: the background worker
    job = wait_job(client, r.json()["job"]["id"])
    assert job["state"] == "done" and sorted(job["added"]) == ["j0", "j1", "j2"]


@pytest.mark.parametrize(
    ("files", "data", "status", "words"),
    [
        ({"file": ("a.pdf", b"%PDF-1.4", "application/pdf")}, {}, 422, "not a readable PDF"),
        ({"file": ("a.docx", b"PK", "application/msword")}, {}, 415, "unsupported"),
        ({"file": ("noext", b"text", "text/plain")}, {}, 415, "unsupported"),
        ({"file": ("a.txt", b"\xff\xfe\x00bad", "text/plain")}, {}, 422, "UTF-8"),
        ({"file": ("a.txt", b"   ", "text/plain")}, {}, 422, "no text"),
        ({"file": ("a.jsonl", b"{not json", "application/jsonl")}, {}, 422, "invalid JSON"),
        ({"file": ("a.txt", b"ok", "text/plain")}, {"metadata": "[1]"}, 422, "JSON object"),
        ({"file": ("a.txt", b"ok", "text/plain")}, {"metadata": "{bad"}, 422, "not valid JSON"),
        ({"other": ("a.txt", b"ok", "text/plain")}, {}, 422, "'file'"),
    ],
)
def test_bad_uploads_get_a_clear_4xx(
    client: TestClient, files: Any, data: Any, status: int, words: str
) -> None:
    r = client.post("/documents", files=files, data=data, headers=AUTH)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert client.get("/documents").json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"text": ""}).encode(), "text"),
        (json.dumps({"text": "   "}).encode(), "no text"),
        (json.dumps({"id": "a\nb", "text": "x"}).encode(), "id"),
        (json.dumps({"text": "x", "extra": 1}).encode(), "extra"),
        (json.dumps({"text": "x", "metadata": [1]}).encode(), "metadata"),
    ],
)
def test_bad_json_documents_get_422(client: TestClient, body: bytes, words: str) -> None:
    r = client.post(
        "/documents", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]


def test_other_content_types_get_415(client: TestClient) -> None:
    r = client.post("/documents", content=b"x", headers={**AUTH, "Content-Type": "text/csv"})
    assert r.status_code == 415 and "text/csv" in r.json()["detail"]


def test_body_over_the_limit_gets_413_declared_or_streamed(tmp_path: Path) -> None:
    with make_client(tmp_path, max_body_bytes=2048) as c:
        r = c.post("/documents", json={"text": "x" * 5000}, headers=AUTH)
        assert r.status_code == 413 and "limit" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:
            yield b'{"text": "'
            yield b"y" * 4000
            yield b'"}'

        r = c.post(
            "/documents", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
        )
        assert r.status_code == 413
        assert c.get("/documents").json()["total"] == 0


# ---- jobs ------------------------------------------------------------------------------
def test_large_upload_goes_to_a_job_with_progress(client: TestClient) -> None:
    text = " ".join(f"Sentence {i} says the value is {i * 7}." for i in range(400))
    r = client.post("/documents", json={"id": "big", "text": text}, headers=AUTH)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job = wait_job(client, r.json()["job"]["id"])
    assert job["state"] == "done", job
    assert job["chunks_total"] == job["chunks_done"] > 1
    assert job["added"] == ["big"] and job["finished"] >= job["started"] >= job["created"]
    assert client.get("/documents/big").json()["chunks"] == job["chunks_total"]
    assert client.get("/jobs/nope").status_code == 404


def test_jobs_left_running_by_a_dead_process_are_failed_at_start(tmp_path: Path) -> None:
    index = tmp_path / "idx" / "default"
    jobs = JobStore(index / "jobs.sqlite")
    running = jobs.create(3)
    jobs.started(running.id)
    queued = jobs.create(1)
    with make_client(tmp_path) as c:
        for job_id in (running.id, queued.id):
            job = c.get(f"/jobs/{job_id}").json()
            assert job["state"] == JobState.failed and "interrupted" in job["error"]


# ---- questions and spans -----------------------------------------------------------------
def test_batch_answers_each_question(client: TestClient) -> None:
    client.post("/documents", json={"id": "p", "text": PARIS}, headers=AUTH)
    client.post(
        "/documents", json={"id": "r", "text": "Rome is the capital of Italy."}, headers=AUTH
    )
    questions = ["What is the capital of France?", "What is the capital of Italy?"]
    r = client.post("/ask/batch", json={"questions": questions})
    assert r.status_code == 200
    answers = r.json()["answers"]
    assert [a["question"] for a in answers] == questions
    assert [a["doc_id"] for a in answers] == ["p", "r"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"questions": []}, "at least one"),
        ({"questions": ["ok?"] * 5}, "limit is 4"),
        ({"questions": ["ok?", " "]}, "questions[1]"),
        ({"questions": ["ok?"], "top_k": 9}, "top_k"),
        ({"questions": "ok?"}, "questions"),
    ],
)
def test_bad_batches_get_422(tmp_path: Path, body: dict[str, Any], words: str) -> None:
    with make_client(tmp_path, max_batch_questions=4, max_top_k=8) as c:
        r = c.post("/ask/batch", json=body)
        assert r.status_code == 422, r.text
        assert words in r.json()["detail"]


def test_span_view_round_trips(client: TestClient) -> None:
    client.post("/documents", json={"id": "p", "text": PARIS}, headers=AUTH)
    v = client.get("/documents/p/spans/6-8", params={"context": 5}).json()
    assert v["quote"] == PARIS[6:8] and v["before"] == PARIS[1:6] and v["after"] == PARIS[8:13]
    assert v["before"] + v["quote"] + v["after"] == PARIS[v["context_start"] : v["context_end"]]
    # No such span of the document: 404, like a document that is not there.
    assert client.get("/documents/p/spans/8-6").status_code == 404
    assert client.get(f"/documents/p/spans/0-{len(PARIS) + 1}").status_code == 404
    assert client.get("/documents/q/spans/0-1").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/documents/..%2F..%2F..%2Fetc%2Fpasswd",
        "/documents/../../etc/passwd",
        "/static/..%2F..%2Fpyproject.toml",
        "/static/../../pyproject.toml",
        "/documents/%2Fetc%2Fpasswd/spans/0-10",
    ],
)
def test_no_request_path_reaches_files(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert "root:" not in r.text and "[project]" not in r.text


# ---- operations ------------------------------------------------------------------------
def test_ready_metrics_and_request_ids(client: TestClient) -> None:
    assert client.get("/ready").json()["status"] == "ready"
    r = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert len(client.get("/health").headers["x-request-id"]) == 32
    client.post("/ask", json={"question": "Anything?"})
    text = client.get("/metrics").text
    assert 'rag_http_requests_total{method="GET",route="/health",status="200"} 2.0' in text
    assert 'rag_answers_total{outcome="abstained"} 1.0' in text
    assert "rag_index_documents 0.0" in text and "rag_ingest_jobs_active 0.0" in text
    # The fake reader has no factorised verifier: no share is estimated.
    assert "rag_answerable_share NaN" in text


def test_ready_is_503_before_start(tmp_path: Path) -> None:
    c = make_client(tmp_path)  # not entered: the lifespan has not run
    r = c.get("/ready")
    assert r.status_code == 503 and r.json()["reason"]


def test_one_json_log_line_per_request(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = unit_settings(index_root=tmp_path / "idx", api_keys=[KEY])
    app = create_app(settings, warm_up=False, pipeline=Pipeline(settings, embedder=FakeEmbedder()))
    access = logging.getLogger("rag.access")
    access.addHandler(caplog.handler)  # the logger does not propagate to the root
    try:
        with TestClient(app, base_url=LOCAL) as c:
            c.get("/documents", headers={"X-Request-ID": "req-1"})
    finally:
        access.removeHandler(caplog.handler)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "rag.access"]
    assert len(lines) == 1
    assert lines[0]["request_id"] == "req-1" and lines[0]["route"] == "/documents"
    assert lines[0]["status"] == 200 and lines[0]["duration_ms"] >= 0


def test_cors_origins_from_settings(tmp_path: Path) -> None:
    with make_client(tmp_path, cors_origins=["https://app.example"]) as c:
        r = c.options(
            "/ask",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["detail"]
    r = client.put("/ask", json={})
    assert r.status_code == 405 and r.json()["detail"]


def test_openai_errors_carry_the_openai_error_shape(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={"messages": []})
    assert r.status_code == 422
    assert r.json()["error"]["message"] == r.json()["detail"]


def test_a_small_document_queues_behind_a_running_job(client: TestClient) -> None:
    qa = client.app.state.qa  # type: ignore[attr-defined]
    started, release = threading.Event(), threading.Event()

    def progress(_: int) -> None:  # holds the ingest inside its write, as a long job does
        started.set()
        release.wait(30)

    writer = threading.Thread(
        target=qa.pipeline.ingest,
        args=([Document("long", PARIS + " More text.")],),
        kwargs={"progress": progress},
    )
    writer.start()
    try:
        assert started.wait(30)
        r = client.post("/documents", json={"id": "small", "text": PARIS}, headers=AUTH)
        assert r.status_code == 202
    finally:
        release.set()
        writer.join()
    job = wait_job(client, r.json()["job"]["id"])
    assert job["state"] == "done" and job["added"] == ["small"]


# ---- n best answers ------------------------------------------------------------------------
@pytest.mark.parametrize("batching", [True, False])
def test_ask_lists_up_to_n_distinct_cited_answers(tmp_path: Path, batching: bool) -> None:
    text = PARIS + " The Louvre is in Paris. The Seine flows through Paris to the sea."
    with make_client(tmp_path, ask_batching=batching) as client:
        assert client.post("/documents", json={"id": "p", "text": text}, headers=AUTH).is_success
        one = client.post("/ask", json={"question": "What lies on the Seine?"}).json()
        assert len(one["answers"]) == 1 and one["answers"][0]["text"] == one["text"]
        body = client.post("/ask", json={"question": "What lies on the Seine?", "answers": 3})
        answers = body.json()["answers"]
        assert 1 <= len(answers) <= 3 and answers[0]["text"] == one["text"]
        for i, a in enumerate(answers):
            assert text[a["start"] : a["end"]] == a["text"]
            (c,) = a["citations"]
            assert text[c["start"] : c["end"]] == c["quote"]
            assert all(a["end"] <= b["start"] or b["end"] <= a["start"] for b in answers[:i])
        batch = client.post(
            "/ask/batch", json={"questions": ["What lies on the Seine?"], "answers": 3}
        )
        assert batch.json()["answers"][0]["answers"] == answers
        for bad in (0, 11, "3", True):
            r = client.post("/ask", json={"question": "Where?", "answers": bad})
            assert r.status_code == 422 and r.json()["detail"], bad
        chat = client.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "What lies on the Seine?"}],
                "answers": 3,
            },
        ).json()
        assert [a["text"] for a in chat["rag_answer"]["answers"]] == [a["text"] for a in answers]
