"""How the store's costs grow with the index: one commit of 2,048 chunks, dense / BM25 /
hybrid latency, disk and memory, at growing size; two checkouts side by side in one run.

    .venv/bin/python bench/store_scale.py [--sizes 20000,100000,200000] [--compare REV]

Chunk texts are real: SQuAD v1.1 train paragraphs, and past them the same paragraphs'
sentences recombined (pass k joins paragraph i's sentences with paragraph i+k's), eight
chunks to a document, written through ``Store.apply`` in commits of 2,048 chunks as the
pipeline makes them. Vectors are synthetic unit vectors (dimension 384): a flat search
costs the same whatever the values, but ANN recall measured on them would mean nothing,
so none is. 60 SQuAD v1.1 dev questions are asked at each size (query encoding excluded:
random unit query vectors for dense, the questions' own FTS5 expressions for BM25, both
through ``Retriever``). A commit's time is the median of the ``--commits`` commits measured
at each size (they are part of the index from then on).

Each store runs in a subprocess of its own; ``--compare REV`` adds a worktree of REV (e.g.
the commit before segments) beside this checkout. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The data paths of bench.common, not imported from it: that would put this checkout's
# ``rag`` first on the path of a worker that must import another checkout's.
SHARED = ROOT.parent / "shared" / "data"
SQUAD_TRAIN = SHARED / "qa-train" / "squad_v1.1_train.json.gz"
SQUAD_DEV = SHARED / "squad" / "dev-v1.1.json.gz"
DIM = 384
CHUNKS_PER_DOC = 8
COMMIT_CHUNKS = 2048
QUESTIONS = 60
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _open(path: Path) -> Any:
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def paragraphs() -> list[str]:
    with _open(SQUAD_TRAIN) as fh:
        data = json.load(fh)["data"]
    return [p["context"] for a in data for p in a["paragraphs"]]


def chunk_texts(paras: Sequence[str]) -> Iterator[str]:
    """The paragraphs, then their sentences recombined pass after pass, forever."""
    yield from paras
    sentences = [_SENTENCE.split(p) for p in paras]
    k = 1
    while True:
        for i, own in enumerate(sentences):
            other = sentences[(i + k) % len(sentences)]
            yield " ".join(own[: len(own) // 2 + 1] + other[len(other) // 2 :])
        k += 1


def questions() -> list[str]:
    with _open(SQUAD_DEV) as fh:
        data = json.load(fh)["data"]
    qs = [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]]
    return random.Random(1).sample(qs, QUESTIONS)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def pct(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def worker(sizes: list[int], commits: int, folder: Path) -> None:
    """Build one index up to each size in turn, measuring there (prints JSON lines)."""
    from rag.models import Chunk, Document
    from rag.retrieval import Retriever
    from rag.store import Store, Upsert

    rng = np.random.default_rng(0)

    class Vectors:
        """The retriever's embedder: random unit query vectors, no model."""

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            v = rng.standard_normal((len(texts), DIM)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        def warm_up(self) -> None:
            pass

    texts = chunk_texts(paragraphs())
    asked = questions()
    store = Store(folder / "idx")
    store.create()
    retriever = Retriever(Vectors(), depth=30)  # type: ignore[arg-type]
    total = 0
    doc_number = 0

    def commit() -> float:
        nonlocal total, doc_number
        upserts = []
        for _ in range(COMMIT_CHUNKS // CHUNKS_PER_DOC):
            parts = [next(texts) for _ in range(CHUNKS_PER_DOC)]
            text = "\n\n".join(parts)
            chunks, start = [], 0
            for part in parts:
                chunks.append(Chunk(f"doc-{doc_number}", start, start + len(part), part, 0))
                start += len(part) + 2
            vectors = rng.standard_normal((len(parts), DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            upserts.append(Upsert(Document(f"doc-{doc_number}", text), chunks, vectors))
            doc_number += 1
        t = time.perf_counter()
        store.apply(upserts)
        total += COMMIT_CHUNKS
        return time.perf_counter() - t

    for size in sizes:
        while total + COMMIT_CHUNKS * commits < size:
            commit()
        commit_s = statistics.median(commit() for _ in range(commits))
        timings: dict[str, list[float]] = {"dense": [], "bm25": [], "hybrid": []}
        with store.read() as snap:
            for q in asked:
                for mode in timings:
                    t = time.perf_counter()
                    retriever.retrieve(snap, q, top_k=5, mode=mode)  # type: ignore[arg-type]
                    timings[mode].append((time.perf_counter() - t) * 1000)
        row: dict[str, Any] = {"chunks": total, "commit_s": round(commit_s, 3)}
        for mode, ms in timings.items():
            row[f"{mode}_p50_ms"] = pct(ms, 50)
            row[f"{mode}_p95_ms"] = pct(ms, 95)
        row["disk_mb"] = round(disk_mb(folder / "idx"), 1)
        row["build_rss_mb"] = round(rss_mb(), 1)
        row["serve_rss_mb"] = serve_rss(folder / "idx", asked)
        print(json.dumps(row), flush=True)


def serve_rss(index: Path, asked: Sequence[str]) -> float:
    """RSS of a fresh process that opens ``index`` and answers the questions (what a server
    holds for it: the loaded vectors and SQLite's cache, none of the build's garbage)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-probe", str(index)]
    proc = subprocess.run(
        cmd, input="\n".join(asked), capture_output=True, text=True, cwd=os.getcwd(), check=True
    )
    return float(proc.stdout.strip().splitlines()[-1])


def serve_probe(index: Path) -> None:
    from rag.retrieval import Retriever
    from rag.store import Store

    rng = np.random.default_rng(1)

    class Vectors:
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            v = rng.standard_normal((len(texts), DIM)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    retriever = Retriever(Vectors(), depth=30)  # type: ignore[arg-type]
    store = Store(index)
    with store.read() as snap:
        for q in sys.stdin.read().splitlines():
            retriever.retrieve(snap, q, top_k=5)
    print(round(rss_mb(), 1))


def run(checkout: Path, sizes: list[int], commits: int) -> list[dict[str, Any]]:
    """The worker in a subprocess importing ``rag`` from ``checkout``."""
    with tempfile.TemporaryDirectory(dir=ROOT / "runs") as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tmp]
        cmd += ["--sizes", ",".join(map(str, sizes)), "--commits", str(commits)]
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{checkout}: {proc.stderr[-2000:]}")
        return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000,100000,200000")
    ap.add_argument("--commits", type=int, default=3, help="commits timed at each size")
    ap.add_argument("--compare", default=None, help="a git revision to run beside this one")
    ap.add_argument("--compare-sizes", default=None, help="sizes for REV (default: --sizes)")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--serve-probe", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.serve_probe is not None:
        sys.path.insert(0, os.getcwd())
        serve_probe(args.serve_probe)
        return 0
    if args.worker is not None:
        sys.path.insert(0, os.getcwd())
        worker(sizes, args.commits, args.worker)
        return 0
    (ROOT / "runs").mkdir(exist_ok=True)
    results = {"this checkout": run(ROOT, sizes, args.commits)}
    if args.compare:
        tree = Path(tempfile.mkdtemp(dir=ROOT / "runs", prefix="compare-"))
        subprocess.run(
            ["git", "worktree", "add", "-f", str(tree), args.compare],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            other = [int(s) for s in (args.compare_sizes or args.sizes).split(",")]
            rev = subprocess.run(
                ["git", "rev-parse", "--short", args.compare],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            results[f"{args.compare} ({rev})"] = run(tree, other, args.commits)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
            shutil.rmtree(tree, ignore_errors=True)
    cols = list(next(iter(results.values()))[0])
    lines = ["| store | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, rows in results.items():
        for row in rows:
            lines.append(f"| {name} | " + " | ".join(str(row[c]) for c in cols) + " |")
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        command = "python bench/store_scale.py " + " ".join(sys.argv[1:])
        args.out.with_suffix(".md").write_text(
            f"# Store costs by size\n\nCommand: `{command}` ({time.strftime('%Y-%m-%d')}, "
            f"{os.cpu_count()} cores). Method: the docstring of bench/store_scale.py.\n\n"
            + "\n".join(lines)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
