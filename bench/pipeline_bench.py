"""Core pipeline figures: ingest throughput vs the bare encoder, ask latency, serve memory.

    .venv/bin/python bench/pipeline_bench.py [--questions 200]   (or: make bench)

1. Ingest the 2,067 SQuAD v1.1 dev paragraphs into a fresh index and compare its chunks/s
   with ``model.encode`` alone on the same chunk texts, measured before and after the ingest
   in the same run (the ratio uses their median).
2. Ask a seeded sample of dev questions against that index: retrieve and read latency
   p50/p95 (ms), plus EM/F1 and answer-in-top-5 for orientation.
3. Start ``rag serve`` on the seed index and read its peak resident memory (VmHWM) after
   warm-up and 20 questions.
Nothing here is asserted: figures go to stdout and bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SQUAD_DEV, percentile  # noqa: E402
from rag.gold import (  # noqa: E402
    exact_match,
    f1,
    load_squad,
)
from rag.ingest import (  # noqa: E402
    Embedder,
    load_paths,
)
from rag.pipeline import Pipeline  # noqa: E402
from rag.settings import Settings  # noqa: E402


def encode_alone(embedder: Embedder, texts: list[str]) -> float:
    t = time.perf_counter()
    embedder.model.encode(
        texts, batch_size=embedder.batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    return len(texts) / (time.perf_counter() - t)


def ingest_and_encode(workdir: Path, embedder: Embedder) -> tuple[dict[str, object], Pipeline]:
    gold = load_squad(SQUAD_DEV)
    pipe = Pipeline(Settings(index_root=workdir), embedder=embedder)
    chunks = [c for d in gold.documents for c in pipe.chunk(d)]
    texts = [c.text for c in chunks]
    wordpieces = [embedder.wordpiece_count(t) for t in texts]
    embedder.embed(texts[:64])  # warm the kernels before anything is timed
    before = encode_alone(embedder, texts)
    report = pipe.ingest(gold.documents)
    after = encode_alone(embedder, texts)
    ingest_rate = report.chunks_embedded / report.seconds
    encode_rate = statistics.median([before, after])
    return {
        "paragraphs": len(gold.documents),
        "chunks": len(texts),
        "max_chunk_wordpieces": max(wordpieces),
        "chunks_over_max_seq_length": sum(w > embedder.max_seq_length for w in wordpieces),
        "ingest_seconds": round(report.seconds, 1),
        "ingest_chunks_per_s": round(ingest_rate, 1),
        "encode_alone_chunks_per_s": [round(before, 1), round(after, 1)],
        "ingest_over_encode_ratio": round(ingest_rate / encode_rate, 3),
    }, pipe


def ask_latency(pipe: Pipeline, n: int, seed: int) -> dict[str, object]:
    gold = load_squad(SQUAD_DEV)
    questions = random.Random(seed).sample(gold.questions, n)
    pipe.ask(questions[0].question)  # warm-up, not counted
    retrieve, read, total, ems, f1s, top5 = [], [], [], [], [], []
    for q in questions:
        t = time.perf_counter()
        answer = pipe.ask(q.question)
        total.append((time.perf_counter() - t) * 1000)
        retrieve.append(answer.timings_ms["retrieve"])
        read.append(answer.timings_ms["read"])
        ems.append(exact_match(answer.text, q.answer_texts))
        f1s.append(f1(answer.text, q.answer_texts))
        top5.append(any(a in p.text for p in answer.passages[:5] for a in q.answer_texts))

    def p(values: list[float]) -> dict[str, float]:
        return {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1)}

    return {
        "questions": n,
        "seed": seed,
        "retrieve_ms": p(retrieve),
        "read_ms": p(read),
        "total_ms": p(total),
        "em": round(100 * statistics.mean(ems), 1),
        "f1": round(100 * statistics.mean(f1s), 1),
        "answer_in_top5": round(statistics.mean(top5), 3),
    }


def serve_memory(workdir: Path) -> dict[str, object]:
    """Peak RSS of `rag serve` on the seed index, after warm-up and 20 questions."""
    root = workdir / "serve"
    Pipeline(Settings(index_root=root)).ingest(load_paths([ROOT / "seeds"]).documents)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rag = str(Path(sys.executable).parent / "rag")
    proc = subprocess.Popen(
        [rag, "serve", "--index-root", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        body = json.dumps({"question": "Who said North Korean workers would be welcomed?"})
        for _ in range(20):
            req = urllib.request.Request(
                url + "/ask", body.encode(), {"content-type": "application/json"}
            )
            urllib.request.urlopen(req, timeout=60).read()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {
            "peak_rss_mib": round(int(fields["VmHWM"].split()[0]) / 1024, 1),
            "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        }
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        embedder = Embedder()
        embedder.warm_up()
        results: dict[str, object] = {"cpus": os.cpu_count()}
        results["ingest"], pipe = ingest_and_encode(workdir / "squad", embedder)
        print(json.dumps(results["ingest"], indent=2), flush=True)
        results["ask"] = ask_latency(pipe, args.questions, args.seed)
        print(json.dumps(results["ask"], indent=2), flush=True)
        results["serve"] = serve_memory(workdir)
        print(json.dumps(results["serve"], indent=2), flush=True)
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
