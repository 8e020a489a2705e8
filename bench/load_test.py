"""Bounded HTTP load test of POST /ask, alone and during a 500-document ingest.

    .venv/bin/python bench/load_test.py [--duration 30] [--clients 1 4 16]
        [--server-env RAG_ASK_BATCHING=false]                (or: make load-test)

1. Index the 2,067 SQuAD v1.1 dev paragraphs (index ``bench-squad-dev``, built once).
2. Serve it with uvicorn on loopback (one process, as ``make serve`` does).
3. For each client count, run that many closed-loop clients (threads, one keep-alive HTTP
   connection each) for a fixed duration, asking seeded dev questions: requests/s, p50/p99
   latency, errors.
4. Again, while a 500-document JSONL upload (SQuAD v1.1 *train* paragraphs, read from
   ../shared) is ingested by the background worker: the same figures plus torn-read checks —
   every citation must equal its document's text[start:end] and every passage's text its
   chunk of the document, read back after the run.
The clients share the 2 cores with the server, so figures are for this whole machine.
Nothing is asserted; results go to stdout and bench/results/load_test.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SHARED, SQUAD_DEV, gold_index, load_squad, percentile  # noqa: E402
from service.testing import start_server  # noqa: E402

SQUAD_TRAIN = SHARED / "qa-train" / "squad_v1.1_train.json.gz"
INDEX_NAME = "bench-squad-dev"
KEY = "load-test-key"


@dataclass
class Run:
    """What the clients of one phase saw."""

    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ok = self.latencies_ms
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 1),
            "requests": len(ok) + len(self.errors),
            "errors": len(self.errors),
            "requests_per_s": round(len(ok) / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": round(percentile(ok, 50), 1),
            "p99_ms": round(percentile(ok, 99), 1),
            "first_errors": self.errors[:3],
        }


def load(url: str, questions: list[str], clients: int, stop: threading.Event, seed: int) -> Run:
    """``clients`` closed-loop clients asking until ``stop`` is set."""
    run = Run(clients)
    lock = threading.Lock()

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        with httpx.Client(base_url=url, timeout=120) as http:
            while not stop.is_set():
                q = rng.choice(questions)
                t = time.perf_counter()
                try:
                    r = http.post("/ask", json={"question": q})
                    ms = (time.perf_counter() - t) * 1000
                    with lock:
                        if r.status_code == 200:
                            run.latencies_ms.append(ms)
                            run.answers.append(r.json())
                        else:
                            run.errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    with lock:
                        run.errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.seconds = time.perf_counter() - t0
    return run


def timed(url: str, questions: list[str], clients: int, seconds: float, seed: int) -> Run:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        return load(url, questions, clients, stop, seed)
    finally:
        timer.cancel()


def train_paragraphs(n: int, seed: int) -> list[dict[str, Any]]:
    with gzip.open(SQUAD_TRAIN, "rt", encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    paragraphs = [
        (article["title"], j, p["context"])
        for article in data
        for j, p in enumerate(article["paragraphs"])
    ]
    chosen = random.Random(seed).sample(paragraphs, n)
    return [{"id": f"train/{title}/{j}", "title": title, "text": text} for title, j, text in chosen]


def torn_reads(url: str, answers: list[dict[str, Any]]) -> tuple[int, int]:
    """(checked, mismatched) citations and passages against the stored documents."""
    texts: dict[str, str] = {}
    checked = bad = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for a in answers:
            spans = [(c["doc_id"], c["start"], c["end"], c["quote"]) for c in a["citations"]]
            spans += [(p["doc_id"], p["start"], p["end"], p["text"]) for p in a["passages"]]
            for doc_id, start, end, quote in spans:
                if doc_id not in texts:
                    r = http.get(f"/documents/{doc_id}")
                    texts[doc_id] = r.json()["text"] if r.status_code == 200 else ""
                checked += 1
                bad += texts[doc_id][start:end] != quote
    return checked, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per load phase")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--ingest-clients", type=int, default=4)
    ap.add_argument("--ingest-docs", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ingest", action="store_true", help="skip the during-ingest phase")
    ap.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="RAG_X=V",
        help="extra setting for the server (repeatable), e.g. RAG_ASK_BATCHING=false",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load_test.json")
    args = ap.parse_args()

    gold = load_squad(SQUAD_DEV)
    gold_index(gold, INDEX_NAME).close()
    questions = [q.question for q in gold.questions]
    docs = train_paragraphs(args.ingest_docs, args.seed)

    # Serve a copy, so the ingest phase never changes the cached benchmark index.
    work = Path(tempfile.mkdtemp(prefix="rag-load-"))
    shutil.copytree(ROOT / "index" / INDEX_NAME, work / INDEX_NAME)
    extra = dict(kv.split("=", 1) for kv in args.server_env)
    server = start_server(
        work,
        KEY,
        work / "server.log",
        RAG_INDEX_NAME=INDEX_NAME,
        RAG_LOG_REQUESTS="false",
        **extra,
    )
    results: dict[str, Any] = {
        "index_documents": len(gold.documents),
        "server_env": extra,
        "phases": [],
    }
    try:
        for i, clients in enumerate(args.clients):
            # Warm every path once before timing (first requests load caches).
            timed(server.url, questions, clients, 2.0, seed=100 + i)
            run = timed(server.url, questions, clients, args.duration, seed=i)
            s = {"phase": "ask", **run.summary()}
            results["phases"].append(s)
            print(json.dumps(s))

        if args.no_ingest:
            finish(args.out, results)
            return 0
        body = "\n".join(json.dumps(d) for d in docs).encode()
        stop = threading.Event()
        holder: dict[str, Run] = {}
        loader = threading.Thread(
            target=lambda: holder.setdefault(
                "run", load(server.url, questions, args.ingest_clients, stop, seed=99)
            )
        )
        loader.start()
        time.sleep(1.0)
        t0 = time.perf_counter()
        r = httpx.post(
            server.url + "/documents",
            files={"file": ("train.jsonl", body, "application/jsonl")},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=120,
        )
        r.raise_for_status()
        job_id = r.json()["job"]["id"]
        while True:
            job = httpx.get(f"{server.url}/jobs/{job_id}", timeout=60).json()
            if job["state"] in ("done", "failed"):
                break
            time.sleep(0.5)
        ingest_s = time.perf_counter() - t0
        time.sleep(1.0)
        stop.set()
        loader.join()
        run = holder["run"]
        checked, bad = torn_reads(server.url, run.answers)
        total = httpx.get(server.url + "/documents", params={"limit": 1}).json()["total"]
        s = {
            "phase": "ask during ingest",
            **run.summary(),
            "ingest_job": job["state"],
            "ingest_documents": job["documents"],
            "ingest_chunks": job["chunks_total"],
            "ingest_seconds": round(ingest_s, 1),
            "documents_after": total,
            "spans_checked": checked,
            "torn_spans": bad,
        }
        results["phases"].append(s)
        print(json.dumps(s))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    finish(args.out, results)
    return 0


def finish(out: Path, results: dict[str, Any]) -> None:
    """Write the results and print them as a Markdown table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n| phase | clients | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
    for p in results["phases"]:
        print(
            f"| {p['phase']} | {p['clients']} | {p['requests_per_s']} | {p['p50_ms']} | "
            f"{p['p99_ms']} | {p['errors']} |"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
