"""Faults: damaged files at start-up, a full disk during a commit, two writers on one index,
a rebuild beside a server, two servers creating the key file together. (The kill -9 loops
are a benchmark: bench/kill_test.py.)"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import faiss
import pytest
from fastapi.testclient import TestClient

from rag.models import Document
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.store import Store, StoreError, StoreWriteFailed
from service.app import create_app
from service.security import KEY_FILE, resolve_api_keys
from tests.conftest import FAKE_MODEL_CLI, LOCAL, ROOT, FakeEmbedder, unit_settings

KEY = "k"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXTS = {
    "paris.txt": "Paris is the capital of France. It lies on the Seine.",
    "rome.txt": "Rome is the capital of Italy. It lies on the Tiber.",
}


def settings(root: Path, **overrides: Any) -> Settings:
    return unit_settings(
        index_root=root, abstain_threshold=0.0, api_keys=[KEY], log_requests=False, **overrides
    )


def built(root: Path) -> Pipeline:
    pipe = Pipeline(settings(root), embedder=FakeEmbedder())
    pipe.ingest([Document(k, v, k) for k, v in TEXTS.items()])
    pipe.close()
    return pipe


def client(root: Path, **overrides: Any) -> TestClient:
    s = settings(root, **overrides)
    app = create_app(s, warm_up=False, pipeline=Pipeline(s, embedder=FakeEmbedder()))
    return TestClient(app, base_url=LOCAL)


def rag_cli(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAG_INDEX_ROOT": str(root), "RAG_READER": "sentence"}
    return subprocess.run(
        [sys.executable, "-c", FAKE_MODEL_CLI, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )


def index_dir(root: Path) -> Path:
    return root / "default"


def assert_consistent_and_holds(root: Path, ids: set[str]) -> None:
    store = Store(index_dir(root))
    health = store.check()  # vectors == chunk rows == keyword rows
    assert {d.id for d in store.documents(1000)} == ids
    assert health.documents == len(ids)
    store.close()


# ---- damaged files at start-up -----------------------------------------------------------
def _truncate_vectors(root: Path) -> None:
    (vec,) = index_dir(root).glob("vectors.*.faiss")
    data = vec.read_bytes()
    vec.write_bytes(data[: len(data) // 2])


def _flip_vector_byte(root: Path) -> None:
    (vec,) = index_dir(root).glob("vectors.*.faiss")
    data = bytearray(vec.read_bytes())
    data[-5] ^= 0xFF
    vec.write_bytes(bytes(data))


def _garbage_database(root: Path) -> None:
    (index_dir(root) / "index.sqlite").write_bytes(b"not a database at all" * 100)
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (index_dir(root) / extra).unlink(missing_ok=True)


def _empty_database(root: Path) -> None:
    _garbage_database(root)
    (index_dir(root) / "index.sqlite").write_bytes(b"")


def _missing_database(root: Path) -> None:
    _garbage_database(root)
    (index_dir(root) / "index.sqlite").unlink()


def _missing_vectors(root: Path) -> None:
    (vec,) = index_dir(root).glob("vectors.*.faiss")
    vec.unlink()


def _garbage_keyword_index(root: Path) -> None:
    (index_dir(root) / "keyword" / "meta.json").write_text("{not json")


DAMAGES = {
    "truncated vectors": (_truncate_vectors, "damaged"),
    "one byte of the vectors": (_flip_vector_byte, "checksum"),
    "garbage database": (_garbage_database, "damaged"),
    "zero-byte database": (_empty_database, "empty (0 bytes)"),
    "missing database": (_missing_database, "missing"),
    "missing vector file": (_missing_vectors, "missing"),
    "garbage keyword index": (_garbage_keyword_index, "keyword index"),
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_index_is_not_ready_with_the_reason_never_a_500(
    tmp_path: Path, damage: str
) -> None:
    built(tmp_path)
    apply, reason = DAMAGES[damage]
    apply(tmp_path)
    vectors_before = sorted(p.name for p in index_dir(tmp_path).glob("vectors.*"))
    with client(tmp_path) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and reason in r.json()["reason"], r.json()
        # Each damage is named as itself (a StoreError is not re-worded as another).
        assert ("keyword" in r.json()["reason"]) == ("keyword" in damage), r.json()
        for method, path, body in [
            ("POST", "/ask", {"question": "What is the capital of France?"}),
            ("GET", "/documents", None),
            ("GET", "/documents/paris.txt", None),
            ("POST", "/documents", {"id": "new.txt", "text": "New text."}),
            ("DELETE", "/documents/paris.txt", None),
        ]:
            resp = c.request(method, path, json=body, headers=AUTH)
            assert resp.status_code == 503 and reason in resp.json()["detail"], (path, resp.text)
        assert c.get("/health").status_code == 200
        assert c.get("/metrics").status_code == 200
    # Nothing was recreated over the remains: the vector files are all still there.
    assert sorted(p.name for p in index_dir(tmp_path).glob("vectors.*")) == vectors_before


@pytest.mark.parametrize("damage", ["truncated vectors", "zero-byte database"])
def test_rag_serve_refuses_a_damaged_index_in_one_line(tmp_path: Path, damage: str) -> None:
    built(tmp_path)
    DAMAGES[damage][0](tmp_path)
    run = rag_cli(tmp_path, "serve")
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rag: error:"), run.stderr


def test_a_zero_byte_database_is_never_recreated_over_vectors(tmp_path: Path) -> None:
    built(tmp_path)
    _empty_database(tmp_path)
    pipe = Pipeline(settings(tmp_path), embedder=FakeEmbedder())
    with pytest.raises(StoreError, match="0 bytes"):
        pipe.ingest([Document("x.txt", "Some new text.")])
    assert (index_dir(tmp_path) / "index.sqlite").stat().st_size == 0
    assert list(index_dir(tmp_path).glob("vectors.*.faiss"))
    run = rag_cli(tmp_path, "ingest", str(tmp_path / "nothing-here"))
    assert run.returncode == 2 and "Traceback" not in run.stderr


# ---- a full disk ---------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["faiss", "fsync"])
def test_a_full_disk_during_a_commit_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The two ways a full disk shows while the vector file is written: FAISS's short write
    (a RuntimeError, as measured on a full 2 MB tmpfs) and an OSError from the OS."""
    built(tmp_path)
    real_write = faiss.write_index

    def short_write(index: Any, path: str) -> None:
        Path(path).write_bytes(b"partial")  # what a full disk leaves behind
        raise RuntimeError(f"write error in {path}: 32686 != 72960 (No space left on device)")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "faiss":
        monkeypatch.setattr(faiss, "write_index", short_write)
    else:
        monkeypatch.setattr(faiss, "write_index", real_write)
        monkeypatch.setattr(os, "fsync", failing_fsync)
    pipe = Pipeline(settings(tmp_path), embedder=FakeEmbedder())
    with pytest.raises(StoreWriteFailed, match=r"No space left on device.*nothing was changed"):
        pipe.ingest([Document("berlin.txt", "Berlin is the capital of Germany.")])
    with pytest.raises(StoreWriteFailed):  # a new version of a document: new vectors
        pipe.ingest([Document("paris.txt", "Paris is the capital of France. And more.")])
    pipe.close()
    with client(tmp_path) as c:
        r = c.post(
            "/documents", json={"id": "b.txt", "text": "Bern is in Switzerland."}, headers=AUTH
        )
        assert r.status_code == 507 and "nothing was changed" in r.json()["detail"]
    monkeypatch.undo()
    assert not list(index_dir(tmp_path).glob("*.tmp"))
    assert_consistent_and_holds(tmp_path, set(TEXTS))
    answer = Pipeline(settings(tmp_path), embedder=FakeEmbedder()).ask("capital of France?")
    assert answer.doc_id == "paris.txt"


def test_a_delete_on_a_full_disk_commits_and_its_merge_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A delete writes no vector file (its vectors become tombstones), so a full disk does
    not stop it; the merge it sets off (rewriting a half-dead segment) fails, is logged,
    and leaves the committed delete and the old segment as they were."""
    built(tmp_path)  # one segment: paris and rome

    def full(index: Any, path: str) -> None:
        raise RuntimeError(f"write error in {path} (No space left on device)")

    monkeypatch.setattr(faiss, "write_index", full)
    pipe = Pipeline(settings(tmp_path), embedder=FakeEmbedder())
    assert pipe.delete("paris.txt")
    pipe.close()
    assert "segment merge" in caplog.text and "No space left" in caplog.text
    monkeypatch.undo()
    assert not list(index_dir(tmp_path).glob("*.tmp"))
    assert_consistent_and_holds(tmp_path, {"rome.txt"})
    answer = Pipeline(settings(tmp_path), embedder=FakeEmbedder()).ask("capital of Italy?")
    assert answer.doc_id == "rome.txt"


# ---- two writers on one index ----------------------------------------------------------------
def _corpus(root: Path, name: str, n: int) -> Path:
    folder = root / name
    folder.mkdir()
    for i in range(n):
        (folder / f"{name}-{i:03d}.txt").write_text(f"Document {i} of {name}. " * 40)
    return folder


def test_two_rag_ingest_processes_on_one_index(tmp_path: Path) -> None:
    root = tmp_path / "idx"
    a, b = _corpus(tmp_path, "a", 60), _corpus(tmp_path, "b", 60)
    env = {**os.environ, "RAG_INDEX_ROOT": str(root), "RAG_READER": "sentence"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FAKE_MODEL_CLI, "ingest", str(folder), "--quiet"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in (a, b)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    ids = {f"a-{i:03d}.txt" for i in range(60)} | {f"b-{i:03d}.txt" for i in range(60)}
    assert_consistent_and_holds(root, ids)


def test_rag_ingest_beside_a_running_server(tmp_path: Path) -> None:
    built(tmp_path)
    corpus = _corpus(tmp_path, "cli", 30)
    with client(tmp_path, sync_ingest_max_chars=100_000) as c:
        cli = subprocess.Popen(
            [sys.executable, "-c", FAKE_MODEL_CLI, "ingest", str(corpus), "--quiet"],
            cwd=ROOT,
            env={**os.environ, "RAG_INDEX_ROOT": str(tmp_path), "RAG_READER": "sentence"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        codes = []
        for i in range(10):
            r = c.post(
                "/documents", json={"id": f"http-{i}.txt", "text": f"Via HTTP {i}."}, headers=AUTH
            )
            codes.append(r.status_code)
            if r.status_code == 202:  # the CLI held the index: queued, not hung
                from tests.test_service_api import wait_job

                assert wait_job(c, r.json()["job"]["id"])["state"] == "done"
        out = cli.communicate(timeout=300)
        assert cli.returncode == 0, out
        assert set(codes) <= {201, 202}
        # The server sees what the CLI committed.
        r = c.get("/documents", params={"limit": 200})
        assert r.json()["total"] == 2 + 30 + 10
    ids = (
        set(TEXTS) | {f"cli-{i:03d}.txt" for i in range(30)} | {f"http-{i}.txt" for i in range(10)}
    )
    assert_consistent_and_holds(tmp_path, ids)


def test_a_rebuild_is_refused_while_a_server_holds_the_index(tmp_path: Path) -> None:
    built(tmp_path)
    corpus = _corpus(tmp_path, "new", 3)
    with client(tmp_path) as c:
        assert (
            c.post(
                "/documents", json={"id": "kept.txt", "text": "Kept text."}, headers=AUTH
            ).status_code
            == 201
        )
        run = rag_cli(tmp_path, "ingest", str(corpus), "--rebuild", "--quiet")
        assert run.returncode == 2 and "a server is serving" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
        assert c.get("/documents/kept.txt").status_code == 200
    assert_consistent_and_holds(tmp_path, set(TEXTS) | {"kept.txt"})
    # With the server gone, the rebuild goes through.
    run = rag_cli(tmp_path, "ingest", str(corpus), "--rebuild", "--quiet")
    assert run.returncode == 0, run.stderr
    assert_consistent_and_holds(tmp_path, {f"new-{i:03d}.txt" for i in range(3)})


# ---- the key file ------------------------------------------------------------------------------
def _resolve(root: str, out: Any) -> None:
    try:
        out.put(resolve_api_keys(Settings(index_root=Path(root)))[0])
    except Exception as exc:  # reported to the test, which fails on it
        out.put(f"error: {exc!r}")


def test_two_servers_starting_together_share_one_key(tmp_path: Path) -> None:
    for attempt in range(5):
        root = tmp_path / f"r{attempt}"
        ctx = mp.get_context("fork")
        out = ctx.Queue()
        procs = [ctx.Process(target=_resolve, args=(str(root), out)) for _ in range(8)]
        for p in procs:
            p.start()
        keys = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(60)
        assert len(set(keys)) == 1 and not keys[0].startswith("error"), keys
        assert (root / KEY_FILE).read_text().strip() == keys[0]
        assert oct((root / KEY_FILE).stat().st_mode & 0o777) == "0o600"
        assert [p.name for p in root.iterdir()] == [KEY_FILE]  # no temporary file left


# ---- a job committed just before the process died -------------------------------------------
def test_a_job_committed_before_a_crash_is_done_after_the_restart(tmp_path: Path) -> None:
    """The process dies after the store commit of a job and before the job table says so:
    the commit names the job, so the restart reports it done, and the other job, which
    committed nothing, failed."""
    from service.jobs import JOBS_FILE, JobState, JobStore
    from service.services import COMMITTED_JOB_KEY

    built(tmp_path)
    jobs = JobStore(index_dir(tmp_path) / JOBS_FILE)
    committed, lost = jobs.create(1), jobs.create(1)
    jobs.started(committed.id)
    pipe = Pipeline(settings(tmp_path), embedder=FakeEmbedder())
    pipe.ingest(
        [Document("late.txt", "Committed just before the crash.")],
        commit_every=None,
        stamp={COMMITTED_JOB_KEY: committed.id},
    )
    pipe.close()
    with client(tmp_path) as c:
        assert c.get(f"/jobs/{committed.id}").json()["state"] == JobState.done
        assert c.get(f"/jobs/{lost.id}").json()["state"] == JobState.failed
        assert c.get("/documents/late.txt").status_code == 200


def _create(path: str, out: Any) -> None:
    try:
        Store(Path(path)).create()
        out.put("ok")
    except Exception as exc:  # reported to the test, which fails on it
        out.put(f"error: {exc!r}")


def test_processes_creating_one_new_index_together_never_see_it_half_made(
    tmp_path: Path,
) -> None:
    """CI caught two `rag ingest` into a new index: one saw the other's schema half made
    and refused it as "not an index". Creation now waits for the write lock."""
    ctx = mp.get_context("fork")
    for attempt in range(10):
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_create, args=(str(tmp_path / f"i{attempt}" / "default"), out))
            for _ in range(6)
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(60)
        assert results == ["ok"] * 6, results
