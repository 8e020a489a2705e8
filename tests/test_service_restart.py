"""Crash safety of HTTP ingest: SIGKILL the server under uvicorn, restart it, check the index."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.testing import start_server
from tests.conftest import SEED_ID

pytestmark = pytest.mark.model
KEY = "restart-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _job(url: str, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = httpx.get(f"{url}/jobs/{job_id}", timeout=30).json()
    return job


def test_done_jobs_survive_sigkill_and_interrupted_ones_leave_nothing(
    seed_index_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "index"
    shutil.copytree(seed_index_root, root)
    log = tmp_path / "server.log"
    env = {"RAG_SYNC_INGEST_MAX_CHARS": "0"}  # every upload goes through the job worker
    server = start_server(root, KEY, log, **env)
    try:
        doc = {"id": "done-doc", "text": "The Quillmouth ferry was built by Anna Brask in 1902."}
        r = httpx.post(server.url + "/documents", json=doc, headers=AUTH, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["job"]["id"]
        deadline = time.monotonic() + 120
        while _job(server.url, job_id)["state"] != "done":
            assert time.monotonic() < deadline, "job not done in time"
            time.sleep(0.1)

        # A big job, killed while it runs.
        records = [
            json.dumps({"id": f"bulk-{i}", "text": f"Bulk record {i}. " + "Filler words. " * 300})
            for i in range(150)
        ]
        files = {"file": ("bulk.jsonl", "\n".join(records).encode(), "application/jsonl")}
        r = httpx.post(server.url + "/documents", files=files, headers=AUTH, timeout=30)
        assert r.status_code == 202, r.text
        bulk_id = r.json()["job"]["id"]
        deadline = time.monotonic() + 120
        while _job(server.url, bulk_id)["chunks_done"] == 0:
            assert time.monotonic() < deadline, "bulk job did not start"
            time.sleep(0.05)
        server.process.kill()  # SIGKILL: no shutdown handler runs
        server.process.wait()
    finally:
        if server.process.poll() is None:
            server.stop()

    server = start_server(root, KEY, log, **env)
    try:
        url = server.url
        assert httpx.get(f"{url}/documents/done-doc").json()["text"] == doc["text"]
        assert httpx.get(f"{url}/documents/{SEED_ID}").status_code == 200
        bulk = _job(url, bulk_id)
        assert bulk["state"] == "failed" and "interrupted" in bulk["error"]
        assert httpx.get(f"{url}/documents/bulk-0").status_code == 404
        listed = httpx.get(f"{url}/documents", params={"limit": 200}).json()
        assert sorted(d["id"] for d in listed["items"]) == sorted(["done-doc", SEED_ID])
        answer = httpx.post(
            f"{url}/ask", json={"question": "Who built the Quillmouth ferry?"}, timeout=60
        ).json()
        assert answer["passages"][0]["doc_id"] == "done-doc"
    finally:
        server.stop()
