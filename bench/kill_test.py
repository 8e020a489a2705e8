"""kill -9, again and again: `rag ingest` and the HTTP server are SIGKILLed at random moments,
and after each kill the index must open, be consistent and hold every commit reported done.

    .venv/bin/python bench/kill_test.py --runs 100            # both phases, real model
    .venv/bin/python bench/kill_test.py --runs 100 --fake-model

Phase "cli": each run ingests a folder of new documents (and new versions of two earlier
ones) with `rag ingest`; one run in four is left to finish, the others are killed after a
random delay spread over a run's life (some finish first all the same). A run
that exited 0 reported its documents done.

Phase "server": a server is started, a JSONL upload of many documents goes to a background
job, and the server is killed at a random moment (some jobs finish first, and are seen
``done`` through GET /jobs before the kill). After the restart, a job seen done must have
all its documents, the interrupted job must be ``failed``, and the index consistent.

After every kill: ``Store.check()`` (the index opens, its vector file matches its checksum,
vectors = chunk rows = keyword rows), every document reported done is present, and each
document's chunk rows match its ``n_chunks``. ``--fake-model`` replaces the encoder with a
hashed bag of words (the write path is the same; the runs are shorter). Results go to
bench/results/kill_test.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.store import Store, StoreError  # noqa: E402
from service.testing import free_port  # noqa: E402

KEY = "kill-key"
FAKE_CLI = (
    "import sys; from tests.conftest import FakeEmbedder; import rag.pipeline as p; "
    "from rag import cli; p.Embedder = lambda *a, **k: FakeEmbedder(); "
    "sys.exit(cli.main(sys.argv[1:]))"
)
FAKE_SERVER = (
    "import os, sys, uvicorn; from tests.conftest import FakeEmbedder; "
    "from rag.pipeline import Pipeline; from rag.settings import Settings; "
    "from service.app import create_app; s = Settings(); "
    "uvicorn.run(create_app(s, pipeline=Pipeline(s, embedder=FakeEmbedder())), "
    "host='127.0.0.1', port=s.port, log_level='warning')"
)


def text(run: int, i: int, words: int) -> str:
    rng = random.Random(run * 100_003 + i)
    vocab = "north korea workers donbas sanctions russia labor envoy talks july missile".split()
    sentences = [
        " ".join(rng.choice(vocab) for _ in range(12)).capitalize() + "."
        for _ in range(words // 12)
    ]
    return f"Run {run} document {i}. " + " ".join(sentences)


def check(index: Path, done: set[str]) -> dict[str, Any]:
    """Consistency and durability of the index after a kill; raises AssertionError."""
    store = Store(index)
    try:
        health = store.check()
        # An audit of the rows beside the store's own check: read the database directly.
        conn = sqlite3.connect(store.db_path)
        try:
            ids = {r[0] for r in conn.execute("SELECT id FROM documents")}
            bad = conn.execute(
                "SELECT d.id FROM documents d LEFT JOIN chunks c ON c.doc_id = d.id "
                "GROUP BY d.id HAVING COUNT(c.id) != d.n_chunks"
            ).fetchall()
        finally:
            conn.close()
    finally:
        store.close()
    missing = done - ids
    assert not missing, f"documents reported done are missing: {sorted(missing)[:5]}"
    assert not bad, f"documents whose chunk rows do not match n_chunks: {bad[:5]}"
    return {"documents": health.documents, "chunks": health.chunks}


def cli_phase(runs: int, fake: bool, work: Path, rng: random.Random) -> dict[str, Any]:
    root = work / "cli-index"
    env = {**os.environ, "RAG_INDEX_ROOT": str(root), "RAG_READER": "sentence"}
    done: set[str] = set()
    killed = finished = 0
    durations: list[float] = []
    for run in range(runs):
        folder = work / f"cli-{run}"
        folder.mkdir()
        for i in range(rng.randint(5, 40)):
            (folder / f"r{run:03d}-{i:02d}.txt").write_text(text(run, i, 400))
        for earlier in rng.sample(sorted(done), min(2, len(done))):
            (folder / earlier).write_text(text(run, 99, 300))  # a new version of an old one
        cmd = [sys.executable, "-c", FAKE_CLI] if fake else [str(ROOT / ".venv/bin/rag")]
        cmd += ["ingest", str(folder), "--quiet"]
        # Delays spread over a run's whole life: imports, model load, chunking, commits.
        # One run in four is left to finish (it reports its documents done, and its time
        # sets the range); the others are killed at a moment spread over a run's life.
        typical = sum(durations[-5:]) / len(durations[-5:]) if durations else 15.0
        delay = None if rng.random() < 0.25 else rng.uniform(0.3, typical * 1.1)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if proc.returncode == 0:
            finished += 1
            durations.append(time.monotonic() - t0)
            done |= {p.name for p in folder.iterdir()}
        elif proc.returncode == -signal.SIGKILL:
            killed += 1
        else:
            raise AssertionError(f"rag ingest failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if (root / "default").exists():
            check(root / "default", done)
        shutil.rmtree(folder)
        print(
            f"cli run {run + 1}/{runs}: {'done' if proc.returncode == 0 else 'killed'}", flush=True
        )
    final = check(root / "default", done)
    return {"runs": runs, "killed": killed, "finished": finished, "checks_passed": runs, **final}


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("the server exited at start-up")
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def _request(url: str, method: str = "GET", body: bytes | None = None, ctype: str = "") -> Any:
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Bearer {KEY}")
    if ctype:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def server_phase(runs: int, fake: bool, work: Path, rng: random.Random) -> dict[str, Any]:
    root = work / "server-index"
    done: set[str] = set()
    killed_running = finished = failed_after = done_after = 0
    last_seen_done = False
    last_job: str | None = None
    last_ids: set[str] = set()
    for run in range(runs + 1):  # the last start only checks the last kill
        port = free_port()
        env = {
            **os.environ,
            "RAG_INDEX_ROOT": str(root),
            "RAG_API_KEYS": KEY,
            "RAG_PORT": str(port),
            "RAG_READER": "sentence",
            "RAG_LOG_REQUESTS": "false",
        }
        cmd = (
            [sys.executable, "-c", FAKE_SERVER] if fake else [str(ROOT / ".venv/bin/rag"), "serve"]
        )
        with open(work / "server.log", "ab") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc)
        if last_job is not None:  # the job the previous kill interrupted is failed now
            job = _request(f"{url}/jobs/{last_job}")
            present = sum(1 for d in last_ids if _exists(url, d))
            if job["state"] == "done":
                done |= last_ids
                done_after += not last_seen_done
                assert present == len(last_ids), "a job reported done lacks documents"
            else:
                assert job["state"] == "failed", job
                failed_after += 1
                assert present == 0, f"a failed (interrupted) job left {present} documents"
        check(root / "default", done)
        if run == runs:
            proc.terminate()
            proc.wait()
            break
        # Jobs the encoder finishes in seconds as often as not: some are seen done.
        n = rng.randint(50, 600) if fake else rng.randint(3, 40)
        ids = [f"s{run:03d}-{i:03d}.txt" for i in range(n)]
        body = "".join(
            json.dumps({"id": d, "text": text(1000 + run, i, 300)}) + "\n"
            for i, d in enumerate(ids)
        )
        data, boundary = _multipart(body.encode())
        sub = _request(
            f"{url}/documents", "POST", data, f"multipart/form-data; boundary={boundary}"
        )
        last_job, last_ids = sub["job"]["id"], set(ids)
        time.sleep(rng.uniform(0.0, 2.0 if fake else 8.0))
        last_seen_done = _request(f"{url}/jobs/{last_job}")["state"] == "done"
        if last_seen_done:
            finished += 1
            done |= last_ids
        else:
            killed_running += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check(root / "default", done)
        print(f"server run {run + 1}/{runs}", flush=True)
    final = check(root / "default", done)
    return {
        "runs": runs,
        "jobs_seen_done_before_the_kill": finished,
        "killed_with_the_job_not_done": killed_running,
        "interrupted_jobs_failed_after_restart_with_nothing_stored": failed_after,
        "jobs_committed_before_the_kill_and_done_after_restart": done_after,
        "checks_passed": 2 * runs,
        **final,
    }


def _exists(url: str, doc_id: str) -> bool:
    try:
        _request(f"{url}/documents/{doc_id}")
        return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def _multipart(content: bytes) -> tuple[bytes, str]:
    boundary = "killtestboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="up.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), boundary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100, help="kills per phase")
    ap.add_argument("--phase", choices=["cli", "server", "both"], default="both")
    ap.add_argument("--fake-model", action="store_true", help="hashed bag of words encoder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kill_test.json")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    result: dict[str, Any] = {"fake_model": args.fake_model, "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            if args.phase in ("cli", "both"):
                result["cli"] = cli_phase(args.runs, args.fake_model, work, rng)
            if args.phase in ("server", "both"):
                result["server"] = server_phase(args.runs, args.fake_model, work, rng)
        except (AssertionError, StoreError) as exc:
            result["failure"] = str(exc)
            print(f"FAILED: {exc}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 1 if "failure" in result else 0


if __name__ == "__main__":
    sys.exit(main())
