"""Collections over HTTP (service.services.collections): create, list, delete; every
question and document route scoped to one; the chat choosing one by its model id; keys
scoped to collections; deleting one while questions run (model-free)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag.models import Document
from rag.pipeline import Pipeline
from rag.store import StoreError
from service.app import create_app
from tests.conftest import LOCAL, FakeEmbedder, unit_settings

ADMIN = {"Authorization": "Bearer admin-key"}
TEAM_A = {"Authorization": "Bearer team-a-key"}  # writes a, reads a and default
READER_B = {"Authorization": "Bearer reader-b-key"}  # reads b only
SCOPES = {
    "team-a-key": {"write": ["a"], "read": ["default"]},
    "reader-b-key": {"read": ["b"]},
}
PARIS = "Paris is the capital of France. It lies on the Seine."
OSLO = "Oslo is the capital of Norway. It lies on a fjord."


def make_client(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = unit_settings(
        index_root=tmp_path / "idx",
        abstain_threshold=0.0,
        api_keys=["admin-key"],
        api_key_scopes=SCOPES,
        log_requests=False,
        **overrides,
    )
    pipeline = Pipeline(settings, embedder=FakeEmbedder())
    return TestClient(create_app(settings, warm_up=False, pipeline=pipeline), base_url=LOCAL)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as c:
        yield c


def add(client: TestClient, prefix: str, doc_id: str, text: str, auth: dict[str, str]) -> int:
    r = client.post(f"{prefix}/documents", json={"id": doc_id, "text": text}, headers=auth)
    return r.status_code


def test_create_list_get_delete(client: TestClient) -> None:
    names = lambda: [c["name"] for c in client.get("/collections").json()["items"]]  # noqa: E731
    assert names() == ["default"]
    r = client.post("/collections", json={"name": "a"}, headers=ADMIN)
    assert r.status_code == 201 and r.headers["location"] == "/collections/a"
    assert r.json() == {
        "name": "a",
        "default": False,
        "model": "rag-extractive:a",
        "ready": True,
        "documents": 0,
        "chunks": 0,
    }
    assert client.post("/collections", json={"name": "a"}, headers=ADMIN).status_code == 409
    assert names() == ["a", "default"]
    assert add(client, "/collections/a", "p", PARIS, ADMIN) == 201
    assert client.get("/collections/a").json()["documents"] == 1
    assert client.delete("/collections/a", headers=ADMIN).status_code == 204
    assert names() == ["default"]
    assert client.get("/collections/a").status_code == 404
    assert client.get("/collections/a/documents").status_code == 404
    assert client.delete("/collections/a", headers=ADMIN).status_code == 404
    assert not (Path(client.app.state.settings.index_root) / "a").exists()  # type: ignore[attr-defined]
    r = client.delete("/collections/default", headers=ADMIN)
    assert r.status_code == 409 and "default" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "../etc"}, 422),
        ({"name": ".hidden"}, 422),
        ({"name": ""}, 422),
        ({"name": "x" * 65}, 422),
        ({"name": "notes.old"}, 422),  # the CLI's rebuild folders
        ({"name": "notes.rebuild"}, 422),
        ({"name": 5}, 422),
        ({}, 422),
    ],
)
def test_bad_collection_names_get_422(client: TestClient, body: Any, status: int) -> None:
    r = client.post("/collections", json=body, headers=ADMIN)
    assert r.status_code == status and r.json()["detail"]


def test_collections_are_isolated(client: TestClient) -> None:
    """A question in one collection never cites another's documents; each lists its own."""
    for name in ("a", "b"):
        assert client.post("/collections", json={"name": name}, headers=ADMIN).status_code == 201
    assert add(client, "/collections/a", "paris", PARIS, ADMIN) == 201
    assert add(client, "/collections/b", "oslo", OSLO, ADMIN) == 201
    assert add(client, "", "both", f"{PARIS} {OSLO}", ADMIN) == 201
    for prefix, own in [
        ("/collections/a", {"paris"}),
        ("/collections/b", {"oslo"}),
        ("", {"both"}),
    ]:
        listed = client.get(f"{prefix}/documents").json()["items"]
        assert {d["id"] for d in listed} == own
        for question in ("What is the capital of France?", "What is the capital of Norway?"):
            answer = client.post(f"{prefix}/ask", json={"question": question}).json()
            assert {c["doc_id"] for c in answer["citations"]} <= own
            assert {p["doc_id"] for p in answer.get("passages", [])} <= own
        batch = client.post(f"{prefix}/ask/batch", json={"questions": ["Capital?"]}).json()
        assert {c["doc_id"] for a in batch["answers"] for c in a["citations"]} <= own
    span = client.get("/collections/a/documents/paris/spans/0-5").json()
    assert span["quote"] == "Paris"
    assert client.get("/collections/b/documents/paris").status_code == 404
    assert client.get("/documents/paris").status_code == 404


def test_chat_chooses_the_collection_by_model(client: TestClient) -> None:
    client.post("/collections", json={"name": "b"}, headers=ADMIN)
    add(client, "/collections/b", "oslo", OSLO, ADMIN)
    add(client, "", "paris", PARIS, ADMIN)
    models = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert models == ["rag-extractive", "rag-extractive:b", "rag-extractive:default"]

    def chat(model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": [{"role": "user", "content": "Which capital?"}]}
        if model is not None:
            body["model"] = model
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    assert {c["doc_id"] for c in chat("rag-extractive:b")["citations"]} == {"oslo"}
    assert chat("rag-extractive:b")["model"] == "rag-extractive:b"
    for model in (None, "rag-extractive", "rag-extractive:default", "gpt-4o"):
        assert {c["doc_id"] for c in chat(model)["citations"]} == {"paris"}
    r = client.post(
        "/v1/chat/completions",
        json={"model": "rag-extractive:nope", "messages": [{"role": "user", "content": "Hi?"}]},
    )
    assert r.status_code == 404 and r.json()["error"]["message"] == "no collection 'nope'"


def test_keys_are_scoped_to_collections(tmp_path: Path) -> None:
    with make_client(tmp_path, read_requires_key=True) as client:
        for name in ("a", "b"):
            client.post("/collections", json={"name": name}, headers=ADMIN)
        # Writes: team-a writes a only; reader-b writes nothing.
        assert add(client, "/collections/a", "paris", PARIS, TEAM_A) == 201
        r = client.post("/collections/b/documents", json={"text": OSLO}, headers=TEAM_A)
        assert r.status_code == 403 and "'b'" in r.json()["detail"]
        assert add(client, "", "x", OSLO, TEAM_A) == 403  # the default: read only
        assert add(client, "/collections/b", "oslo", OSLO, READER_B) == 403
        assert add(client, "/collections/b", "oslo", OSLO, ADMIN) == 201
        assert client.delete("/collections/a/documents/paris", headers=READER_B).status_code == 403
        # Reads: within each key's scope (writing a collection includes reading it).
        ask = {"question": "Capital?"}
        assert client.post("/collections/a/ask", json=ask, headers=TEAM_A).status_code == 200
        assert client.post("/ask", json=ask, headers=TEAM_A).status_code == 200
        assert client.post("/collections/b/ask", json=ask, headers=TEAM_A).status_code == 403
        assert client.get("/collections/b/documents", headers=READER_B).status_code == 200
        assert client.get("/collections/a/documents", headers=READER_B).status_code == 403
        assert client.get("/documents", headers=READER_B).status_code == 403
        assert client.post("/collections/a/ask", json=ask).status_code == 401
        # Listings show what a key may read; the chat checks the model's collection.
        listed = client.get("/collections", headers=READER_B).json()["items"]
        assert [c["name"] for c in listed] == ["b"]
        models = client.get("/v1/models", headers=TEAM_A).json()["data"]
        assert [m["id"] for m in models] == [
            "rag-extractive",
            "rag-extractive:a",
            "rag-extractive:default",
        ]
        message = {"messages": [{"role": "user", "content": "Capital?"}]}
        r = client.post(
            "/v1/chat/completions", json={**message, "model": "rag-extractive:b"}, headers=TEAM_A
        )
        assert r.status_code == 403
        r = client.post(
            "/v1/chat/completions", json={**message, "model": "rag-extractive:b"}, headers=READER_B
        )
        assert r.status_code == 200 and r.json()["citations"][0]["doc_id"] == "oslo"
        # Scope first: a key learns nothing of collections outside it (403, not 404).
        assert client.get("/collections/nope", headers=TEAM_A).status_code == 403
        r = client.post(
            "/v1/chat/completions", json={**message, "model": "rag-extractive:nope"}, headers=TEAM_A
        )
        assert r.status_code == 403
        assert client.get("/collections/nope", headers=ADMIN).status_code == 404
        # Managing collections needs a full key.
        assert client.post("/collections", json={"name": "c"}, headers=TEAM_A).status_code == 403
        assert client.delete("/collections/a", headers=TEAM_A).status_code == 403
        assert client.delete("/collections/a", headers=ADMIN).status_code == 204


def test_deleting_a_collection_while_questions_run(client: TestClient) -> None:
    """Questions racing a delete get answers, then 404 (or 503 while it stops), never a
    500; the other collections are untouched and the folder is gone."""
    client.post("/collections", json={"name": "busy"}, headers=ADMIN)
    add(client, "/collections/busy", "paris", PARIS, ADMIN)
    add(client, "", "oslo", OSLO, ADMIN)
    statuses: list[int] = []
    stop = threading.Event()

    def asker() -> None:
        while not stop.is_set():
            r = client.post("/collections/busy/ask", json={"question": "Capital of France?"})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=asker) for _ in range(3)]
    for t in threads:
        t.start()
    while len(statuses) < 10:
        threading.Event().wait(0.01)
    assert client.delete("/collections/busy", headers=ADMIN).status_code == 204
    after = len(statuses)
    while len(statuses) < after + 10:
        threading.Event().wait(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert set(statuses) <= {200, 404, 503}, sorted(set(statuses))
    assert statuses[:5] == [200] * 5 and statuses[-1] == 404
    root = Path(client.app.state.settings.index_root)  # type: ignore[attr-defined]
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == ["default"]
    answer = client.post("/ask", json={"question": "Capital of Norway?"}).json()
    assert answer["citations"][0]["doc_id"] == "oslo"


def test_indexes_on_disk_are_served_as_collections(tmp_path: Path) -> None:
    """An index built by the CLI (``--index notes``) is a collection at the next start;
    a folder left by a delete cut short is removed, never served."""
    settings = unit_settings(index_root=tmp_path / "idx", index_name="notes")
    pipe = Pipeline(settings, embedder=FakeEmbedder())
    pipe.ingest([Document("todo.md", "Buy milk before Friday.")])
    pipe.close()
    (tmp_path / "idx" / ".deleting-old-1234").mkdir()
    (tmp_path / "idx" / "not-an-index").mkdir()
    with make_client(tmp_path) as client:
        names = [c["name"] for c in client.get("/collections").json()["items"]]
        assert names == ["default", "notes"]
        docs = client.get("/collections/notes/documents").json()["items"]
        assert [d["id"] for d in docs] == ["todo.md"]
    assert not (tmp_path / "idx" / ".deleting-old-1234").exists()


def test_a_deleted_collection_is_never_written_again(client: TestClient) -> None:
    """A write that found the collection before its delete is refused (its store was
    dropped), never recreating the folder; a name being deleted cannot be created."""
    client.post("/collections", json={"name": "gone"}, headers=ADMIN)
    registry = client.app.state.collections  # type: ignore[attr-defined]
    late = registry.get("gone")
    assert client.delete("/collections/gone", headers=ADMIN).status_code == 204
    with pytest.raises(StoreError, match="deleted"):
        late.qa.pipeline.ingest([Document("x", PARIS)])
    root = Path(client.app.state.settings.index_root)  # type: ignore[attr-defined]
    assert not (root / "gone").exists()
    r = client.post("/collections/gone/documents", json={"text": PARIS}, headers=ADMIN)
    assert r.status_code == 404
    assert client.post("/collections", json={"name": "gone"}, headers=ADMIN).status_code == 201


def test_a_collection_another_process_serves_is_not_deleted(client: TestClient) -> None:
    client.post("/collections", json={"name": "shared"}, headers=ADMIN)
    add(client, "/collections/shared", "paris", PARIS, ADMIN)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    other = Pipeline(settings.model_copy(update={"index_name": "shared"}), FakeEmbedder())
    other.open_index()  # holds the index as served, as another server would
    try:
        r = client.delete("/collections/shared", headers=ADMIN)
        assert r.status_code == 409 and "serving" in r.json()["detail"]
        answer = client.post("/collections/shared/ask", json={"question": "Capital?"}).json()
        assert answer["citations"][0]["doc_id"] == "paris"
    finally:
        other.close()
    assert client.delete("/collections/shared", headers=ADMIN).status_code == 204
