"""What an attacker or a careless client sends: a clear 4xx with a message, never a 500 or a
hang, and nothing already stored is lost. One test per attack of the hostile-input issue."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import LOCAL, ROOT, LiveServer
from tests.test_service_api import AUTH, PARIS, make_client, wait_job

SURROGATE = "\ud800"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, sync_ingest_max_chars=5000) as c:
        assert c.post("/documents", json={"id": "paris", "text": PARIS}, headers=AUTH).status_code
        yield c


def raw_json(value: Any) -> bytes:
    """JSON with lone surrogates escaped as \\udXXX, as a hostile client sends them."""
    return json.dumps(value, ensure_ascii=True).encode()


def post_raw(client: TestClient, path: str, value: Any, **kw: Any) -> Any:
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return client.post(path, content=raw_json(value), headers=headers, **kw)


def assert_4xx(r: Any, status: int = 422) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.json()["detail"]


def assert_intact(client: TestClient) -> None:
    """The document stored before the attack still reads and answers."""
    assert client.get("/documents/paris").json()["text"] == PARIS
    assert client.get("/documents").status_code == 200
    r = client.post("/ask", json={"question": "What is the capital of France?"})
    assert r.status_code == 200 and r.json()["doc_id"] == "paris"


# ---- lone surrogates -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/ask", {"question": f"Where is {SURROGATE}?"}),
        ("/ask/batch", {"questions": ["Where is Paris?", SURROGATE]}),
        ("/ask", {"question": "Where?", "filters": {"k": SURROGATE}}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": SURROGATE}]}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "text", "text": SURROGATE}]}]},
        ),
    ],
)
def test_a_lone_surrogate_in_a_question_is_422(
    client: TestClient, path: str, body: dict[str, Any]
) -> None:
    assert_4xx(post_raw(client, path, body))
    assert_intact(client)


@pytest.mark.parametrize(
    "doc",
    [
        {"id": "s1", "text": f"bad {SURROGATE} text"},
        {"id": "s2", "text": "ok", "title": SURROGATE},
        {"id": f"s3{SURROGATE}", "text": "ok"},
        {"id": "s4", "text": "ok", "metadata": {"k": SURROGATE}},
        {"id": "s5", "text": "ok", "metadata": {SURROGATE: 1}},
    ],
)
def test_a_lone_surrogate_in_a_document_is_422_and_stores_nothing(
    client: TestClient, doc: dict[str, Any]
) -> None:
    assert_4xx(post_raw(client, "/documents", doc, headers=AUTH))
    assert [d["id"] for d in client.get("/documents").json()["items"]] == ["paris"]
    assert_intact(client)


def test_a_bad_question_does_not_fail_the_questions_batched_with_it(tmp_path: Path) -> None:
    """18 ordinary questions race 6 hostile ones through the micro-batcher."""
    with make_client(tmp_path) as c:
        c.post("/documents", json={"id": "paris", "text": PARIS}, headers=AUTH)

        def good(_: int) -> int:
            return c.post("/ask", json={"question": "What is the capital of France?"}).status_code

        def bad(_: int) -> int:
            return post_raw(c, "/ask", {"question": f"capital {SURROGATE}"}).status_code

        with ThreadPoolExecutor(12) as pool:
            goods = [pool.submit(good, i) for i in range(18)]
            bads = [pool.submit(bad, i) for i in range(6)]
            assert [f.result() for f in goods] == [200] * 18
            assert [f.result() for f in bads] == [422] * 6


def test_a_surrogate_in_a_jsonl_upload_is_422(client: TestClient) -> None:
    for record in (
        {"id": "j1", "text": f"x {SURROGATE}"},
        {"id": "j2", "text": "x", "title": SURROGATE},
    ):
        data = json.dumps(record).encode() + b"\n"
        r = client.post("/documents", files={"file": ("r.jsonl", data)}, headers=AUTH)
        assert_4xx(r)
    assert_intact(client)


# ---- pathological text -------------------------------------------------------------------
def test_a_document_of_40000_dots_is_stored_and_questions_citing_it_answer(
    client: TestClient,
) -> None:
    text = "The harbour of Quillmouth is deep" + "." * 40_000 + " It was dug in 1850."
    r = client.post("/documents", json={"id": "dots", "text": text}, headers=AUTH)
    assert r.status_code in (201, 202)
    if r.status_code == 202:
        assert wait_job(client, r.json()["job"]["id"])["state"] == "done"
    r = client.post("/ask", json={"question": "How deep is the harbour of Quillmouth?"})
    assert r.status_code == 200
    assert_intact(client)


@pytest.mark.parametrize(
    "markup",
    ["<p>x <![foo[ y</p>", "<a " * 16_000, "<div>" * 300 + "deep", "<p>ok</p><!--"],
    ids=["bogus-comment", "unclosed-a", "too-deep", "open-comment"],
)
def test_hostile_html_uploads_get_201_or_422_never_500(client: TestClient, markup: str) -> None:
    r = client.post("/documents", files={"file": ("p.html", markup.encode())}, headers=AUTH)
    assert r.status_code in (201, 202, 422), r.text[:300]
    if r.status_code == 422:
        assert r.json()["detail"]
    assert_intact(client)


def test_rag_ingest_names_a_bad_html_file_and_ingests_the_rest(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text(PARIS)
    (corpus / "bogus.html").write_text("<p>kept <![foo[ gone</p> after")
    (corpus / "deep.html").write_text("<div>" * 1000 + "x")
    code = (
        "import sys; from tests.conftest import FakeEmbedder; import rag.pipeline as p; "
        "from rag import cli; p.Embedder = lambda *a, **k: FakeEmbedder(); "
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    env = {"RAG_INDEX_ROOT": str(tmp_path / "idx"), "RAG_READER": "sentence", "PATH": ""}
    run = subprocess.run(
        [sys.executable, "-c", code, "ingest", str(corpus), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "deep.html" in run.stderr and "nested deeper" in run.stderr
    assert "Traceback" not in run.stderr
    assert "2 added" in run.stdout  # good.txt and bogus.html


# ---- filters ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "filters",
    [
        {f"k{i}": "v" for i in range(1001)},
        {"k": ["v"] * 300_000},
        {'a"b': "v"},
        {"$.x": "v"},
        {"a[0]": "v"},
        {"k": 10**40},
        {"": "v"},
    ],
    ids=["1001-keys", "300000-values", "quote", "dollar", "bracket", "huge-int", "empty-key"],
)
def test_filters_are_bounded_and_keys_validated(
    client: TestClient, filters: dict[str, Any]
) -> None:
    assert_4xx(client.post("/ask", json={"question": "Where?", "filters": filters}))
    assert_4xx(client.post("/ask/batch", json={"questions": ["Where?"], "filters": filters}))
    chat = {"messages": [{"role": "user", "content": "Where?"}], "filters": filters}
    assert_4xx(client.post("/v1/chat/completions", json=chat))
    assert_intact(client)


def test_plain_filters_still_work(client: TestClient) -> None:
    body = {"question": "capital of France?", "filters": {"doc_id": "paris", "source.kind": []}}
    r = client.post("/ask", json=body)
    assert r.status_code == 200


# ---- paging ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "offset=9223372036854775808",
        "offset=-1",
        "limit=0",
        "limit=99999999999999999999",
        "offset=x",
    ],
)
def test_out_of_range_paging_is_422(client: TestClient, query: str) -> None:
    assert_4xx(client.get(f"/documents?{query}"))


def test_a_far_offset_is_an_empty_page(client: TestClient) -> None:
    r = client.get(f"/documents?offset={2**53}")
    assert r.status_code == 200 and r.json()["items"] == [] and r.json()["total"] == 1


# ---- JSON that the standard parser chokes on -----------------------------------------------
@pytest.mark.parametrize(
    "metadata",
    ['{"a": ' * 5000 + "1" + "}" * 5000, '{"n": ' + "9" * 5000 + "}", '{"n": NaN}', '{"n": 1e999}'],
    ids=["nested", "5000-digits", "nan", "infinite"],
)
def test_hostile_multipart_metadata_is_422(client: TestClient, metadata: str) -> None:
    r = client.post(
        "/documents",
        files={"file": ("m.txt", b"Some text.")},
        data={"metadata": metadata},
        headers=AUTH,
    )
    assert_4xx(r)
    assert_intact(client)


@pytest.mark.parametrize(
    "line",
    [
        '{"id": "d", "text": "x", "metadata": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}",
        '{"id": "d", "text": "x", "metadata": {"n": ' + "9" * 5000 + "}}",
        '{"id": ' + "9" * 5000 + ', "text": "x"}',
        '{"id": "d", "text": "x", "metadata": ' + '{"a": ' * 20 + "1" + "}" * 20 + "}",
    ],
    ids=["nested", "5000-digit-metadata", "5000-digit-id", "over-max-depth"],
)
def test_hostile_jsonl_records_are_422(client: TestClient, line: str) -> None:
    r = client.post("/documents", files={"file": ("r.jsonl", line.encode())}, headers=AUTH)
    assert_4xx(r)
    assert_intact(client)


def test_deep_json_metadata_in_a_json_body_is_422(client: TestClient) -> None:
    nested = '{"a": ' * 20 + "1" + "}" * 20
    body = '{"id": "d", "text": "x", "metadata": ' + nested + "}"
    r = client.post(
        "/documents", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert_4xx(r)
    body = '{"id": "d", "text": "x", "metadata": {"n": ' + "9" * 30 + "}}"
    r = client.post(
        "/documents", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert_4xx(r)
    assert_intact(client)


# ---- ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "doc_id",
    [
        "a\x01b",
        "tab\there",
        "nl\n",
        "\x7f",
        "\x85",
        "a/../b",
        ".",
        "a/..",
        "x/spans/1-2",
    ],
)
def test_ids_that_a_url_cannot_address_are_refused(client: TestClient, doc_id: str) -> None:
    r = client.post(
        "/documents", files={"file": ("a.txt", b"Text.")}, data={"id": doc_id}, headers=AUTH
    )
    assert_4xx(r)
    assert_4xx(client.post("/documents", json={"id": doc_id, "text": "Text."}, headers=AUTH))
    assert [d["id"] for d in client.get("/documents").json()["items"]] == ["paris"]


@pytest.mark.parametrize(
    "doc_id",
    [
        "notes/a b.txt",
        "q?x=1",
        "hash#frag",
        "ünï/cödé",
        "plus+amp&semi;",
        "sha256:ab",
        " lead/trail ",
        "a//b",
        "dir/",
        "...",
    ],
)
def test_an_id_created_through_the_api_is_read_and_deleted_at_the_url_it_returns(
    client: TestClient, doc_id: str
) -> None:
    for send in ("json", "multipart"):
        if send == "json":
            r = client.post("/documents", json={"id": doc_id, "text": "Odd id text."}, headers=AUTH)
        else:
            r = client.post(
                "/documents",
                files={"file": ("x.txt", b"Odd id text.")},
                data={"id": doc_id},
                headers=AUTH,
            )
        assert r.status_code == 201, r.text
        url = r.json()["urls"][0]
        assert r.headers["location"] == url
        got = client.get(url)
        assert got.status_code == 200 and got.json()["id"] == doc_id
        span = client.get(f"{url}/spans/0-3")
        assert span.status_code == 200 and span.json()["quote"] == "Odd"
        assert client.delete(url, headers=AUTH).status_code == 204
        assert client.get(url).status_code == 404


@pytest.mark.model
@pytest.mark.parametrize("doc_id", ["pct%2Fslash", "100%", "a%20b/c d", "q?x=1#f"])
def test_ids_with_percent_signs_round_trip_through_a_real_server(
    live_server: LiveServer, doc_id: str
) -> None:
    """Under uvicorn (Starlette's TestClient decodes a path twice, so '%' ids need this)."""
    auth = {"Authorization": f"Bearer {live_server.api_key}"}
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        r = c.post("/documents", json={"id": doc_id, "text": "Odd id text."}, headers=auth)
        assert r.status_code == 201, r.text
        url = r.json()["urls"][0]
        got = c.get(url)
        assert got.status_code == 200 and got.json()["id"] == doc_id
        assert c.get(f"{url}/spans/0-3").json()["quote"] == "Odd"
        assert c.delete(url, headers=auth).status_code == 204
        assert c.get(url).status_code == 404


# ---- chat history ------------------------------------------------------------------------
def test_chat_messages_and_conversations_are_bounded(tmp_path: Path) -> None:
    with make_client(tmp_path, max_chat_message_chars=2000, max_chat_parts=3) as c:
        ask = {"role": "user", "content": "What is it?"}
        huge = {"role": "user", "content": "word " * 850_000}
        assert_4xx(c.post("/v1/chat/completions", json={"messages": [huge, ask]}))
        long = {"role": "system", "content": "x" * 2001}
        assert_4xx(c.post("/v1/chat/completions", json={"messages": [long, ask]}))
        part = {"type": "text", "text": "x" * 2001}
        parts = {"role": "user", "content": [part]}
        assert_4xx(c.post("/v1/chat/completions", json={"messages": [parts, ask]}))
        many_parts = {"role": "user", "content": [{"type": "text", "text": "x"}] * 4}
        assert_4xx(c.post("/v1/chat/completions", json={"messages": [many_parts, ask]}))
        assert_4xx(c.post("/v1/chat/completions", json={"messages": [ask] * 65}))
        ok = [{"role": "user", "content": "Paris? " * 280}, ask]
        r = c.post("/v1/chat/completions", json={"messages": ok})
        assert r.status_code == 200
        assert r.json()["usage"]["prompt_tokens"] < 1000  # what was read, not all it was sent


def test_a_long_earlier_turn_is_clipped_before_it_becomes_the_keyword_query(
    tmp_path: Path,
) -> None:
    from rag.pipeline import Pipeline
    from tests.conftest import FakeEmbedder, unit_settings

    settings = unit_settings(index_root=tmp_path / "idx", abstain_threshold=0.0)
    pipe = Pipeline(settings, embedder=FakeEmbedder())
    pipe.ingest([__import__("rag.models").models.Document("p", PARIS)])
    seen: list[str] = []
    real = pipe.embedder.embed

    def spy(texts: Any, *a: Any, **k: Any) -> Any:
        seen.extend(texts)  # the first text embedded is the retrieval query
        return real(texts, *a, **k)

    pipe.embedder.embed = spy  # type: ignore[method-assign]
    pipe.ask("What is it?", context="capital " * 100_000)
    assert len(seen[0]) <= 2 * settings.max_question_chars + 1


# ---- metrics, hosts ------------------------------------------------------------------------
def test_made_up_methods_do_not_create_metric_series(client: TestClient) -> None:
    for i in range(30):
        client.request(f"FOO{i}", "/ask")
    metrics = client.get("/metrics").text
    assert "FOO" not in metrics
    assert 'method="OTHER"' in metrics


def test_a_foreign_host_header_is_refused_on_loopback(tmp_path: Path) -> None:
    with make_client(tmp_path) as c:
        for host in ("localhost", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
            assert c.get("/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
            r = c.get("/health", headers={"host": host})
            assert_4xx(r, 400)
    with TestClient(
        __import__("service.app").app.create_app(
            __import__("tests.conftest").conftest.unit_settings(
                index_root=tmp_path / "i2", trusted_hosts=["docs.example.org"], log_requests=False
            ),
            warm_up=False,
        ),
        base_url="http://docs.example.org",
    ) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"host": "localhost"}).status_code == 400
    assert LOCAL.endswith("localhost")


# ---- bounds on what a key holder can queue ---------------------------------------------------
def test_records_per_upload_are_bounded(tmp_path: Path) -> None:
    with make_client(tmp_path, max_upload_records=3) as c:
        lines = "".join(json.dumps({"id": f"d{i}", "text": "x"}) + "\n" for i in range(4))
        r = c.post("/documents", files={"file": ("r.jsonl", lines.encode())}, headers=AUTH)
        assert_4xx(r)
        assert "more than 3 records" in r.json()["detail"]


def test_queued_jobs_are_bounded_with_429(tmp_path: Path) -> None:
    import threading

    with make_client(tmp_path, sync_ingest_max_chars=0, max_queued_jobs=2) as c:
        qa = c.app.state.qa  # type: ignore[attr-defined]
        gate = threading.Event()
        real = qa._ingest_job

        def slow(*a: Any, **k: Any) -> Any:
            gate.wait(30)
            return real(*a, **k)

        qa.worker.ingest = slow
        codes = [
            c.post("/documents", json={"id": f"j{i}", "text": PARIS}, headers=AUTH).status_code
            for i in range(4)
        ]
        assert codes == [202, 202, 429, 429]
        r = c.post("/documents", json={"id": "j9", "text": PARIS}, headers=AUTH)
        assert_4xx(r, 429)
        gate.set()
        for job in qa.jobs._exec("SELECT id FROM jobs"):
            assert wait_job(c, str(job[0]))["state"] == "done"
        assert (
            c.post("/documents", json={"id": "j5", "text": PARIS}, headers=AUTH).status_code == 202
        )


def test_a_question_over_its_time_budget_gets_504(tmp_path: Path) -> None:
    import time

    with make_client(tmp_path, question_timeout_s=0.2) as c:
        c.post("/documents", json={"id": "paris", "text": PARIS}, headers=AUTH)
        pipe = c.app.state.qa.pipeline  # type: ignore[attr-defined]
        real = pipe.ask_batch

        def slow(*a: Any, **k: Any) -> Any:
            time.sleep(1.0)
            return real(*a, **k)

        pipe.ask_batch = slow
        r = c.post("/ask", json={"question": "What is the capital of France?"})
        assert_4xx(r, 504)
        assert "within 0.2 s" in r.json()["detail"]


def test_shutdown_does_not_wait_for_a_long_job_queue(tmp_path: Path) -> None:
    """Five jobs behind one that never ends: shutdown fails the four queued ones at once and
    leaves the stuck one after its grace period, instead of waiting for all of them."""
    import threading

    from service.jobs import JobState

    c = make_client(tmp_path, sync_ingest_max_chars=0, shutdown_grace_s=0.2)
    gate = threading.Event()
    with c:
        qa = c.app.state.qa  # type: ignore[attr-defined]

        def stuck(*a: Any, **k: Any) -> Any:
            gate.wait(120)
            raise RuntimeError("released")

        qa.worker.ingest = stuck
        ids = [
            c.post("/documents", json={"id": f"q{i}", "text": PARIS}, headers=AUTH).json()["job"][
                "id"
            ]
            for i in range(5)
        ]
    # Shut down while the first job is still stuck: it was not waited for.
    states = [qa.jobs.get(i).state for i in ids]
    gate.set()
    assert states[0] == JobState.running
    assert states[1:] == [JobState.failed] * 4
    assert "submit them again" in (qa.jobs.get(ids[1]).error or "")


def test_a_surrogate_already_stored_in_metadata_no_longer_makes_its_document_unreadable(
    tmp_path: Path,
) -> None:
    """An index written before input was validated may hold one (escaped in the JSON text);
    it reads back as U+FFFD instead of a 500 on every read of the document."""
    import sqlite3

    with make_client(tmp_path) as c:
        c.post("/documents", json={"id": "old", "text": PARIS}, headers=AUTH)
    db = sqlite3.connect(tmp_path / "idx" / "default" / "index.sqlite")
    db.execute(
        "UPDATE documents SET metadata = ? WHERE id = 'old'", (json.dumps({"k": SURROGATE}),)
    )
    db.commit()
    db.close()
    with make_client(tmp_path) as c:
        r = c.get("/documents/old")
        assert r.status_code == 200 and r.json()["metadata"] == {"k": "\ufffd"}
        assert c.get("/documents").status_code == 200
