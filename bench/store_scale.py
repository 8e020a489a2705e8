"""How the store's costs grow with the index: one commit of 2,048 chunks, dense / BM25 /
hybrid latency, disk and memory, at growing size; two checkouts side by side in one run.
Questions are timed after the background merges the writes asked for have finished
(``merges_wait_s``: how long that took after the size's last commit). ``commit_s`` is one
commit alone (the median of ``--commits``, each after the merges earlier ones asked for);
``ingest_s_per_commit`` the amortised cost: the wall time of the commits that grew the index
to this size, with the background merges they asked for, per commit.

    .venv/bin/python bench/store_scale.py [--sizes 20000,100000,200000] [--compare REV]

Chunk texts are real: SQuAD v1.1 train paragraphs, and past them the same paragraphs'
sentences recombined (pass k joins paragraph i's sentences with paragraph i+k's), eight
chunks to a document, written through ``Store.apply`` in commits of 2,048 chunks as the
pipeline makes them. Vectors are synthetic unit vectors (dimension 384; a flat search
costs the same whatever the values, but ANN recall on them would mean nothing, so none is
reported), or with ``--vectors real`` the cached real embeddings of the same texts
(``bench/real_vectors.py``), perturbed copies past them, and real question vectors; then
``dense_recall@10`` is measured against brute force over every vector written (on real
embeddings alone: ``bench/ann_recall.py``). Each document's metadata
``part`` is its number mod 4, so a filter ``{"part": 1}`` allows a quarter of the index (the
``_part`` columns); the ``_docs`` columns filter to 8 random documents' ids.
60 SQuAD v1.1 dev questions are asked at each size (query encoding excluded:
given query vectors for dense, the questions' content words for BM25, both
through ``Retriever``). The ``--commits`` commits timed at each size are part of the index
from then on.

Each store runs in a subprocess of its own; ``--compare REV`` adds a worktree of REV (e.g.
the commit before segments) beside this checkout. With ``RAG_SEARCH_THREADS`` above 1 (the
default, 2), dense and hybrid are also timed with the segments searched one after another
(``_1t`` columns), alternating question by question. Nothing here is asserted.
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
# Noise per dimension added to a real vector reused past the cached ones (cosine to it
# about 0.86 after renormalising): near real vectors, not copies of them.
PERTURB = 0.03
CHUNKS_PER_DOC = 8
COMMIT_CHUNKS = 2048
QUESTIONS = 60
PARTS = 4
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
    """VmRSS in MiB (kB / 1024; the ``*_rss_mb`` columns keep their first name)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def pct(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


class VectorSource:
    """Chunk and query vectors: random unit vectors, or (``folder``, from
    ``bench/real_vectors.py``) the real embeddings of the same chunk texts in order, then
    real ones perturbed (``PERTURB`` per dimension, renormalised) past the cached count, and
    real question vectors."""

    def __init__(self, folder: Path | None) -> None:
        self.rng = np.random.default_rng(0)
        self.real: np.ndarray | None = None
        self.query_vectors: np.ndarray | None = None
        if folder is not None:
            blocks = sorted(folder.glob("block-*[0-9].npy"))
            self.real = np.concatenate([np.load(b) for b in blocks])
            self.query_vectors = np.load(folder / "queries.npy")
        self.made = 0
        self.asked = 0

    def chunks(self, n: int) -> np.ndarray:
        if self.real is None:
            v = self.rng.standard_normal((n, DIM)).astype(np.float32)
        else:
            rows = np.arange(self.made, self.made + n)
            v = self.real[rows % len(self.real)].copy()
            far = rows >= len(self.real)
            v[far] += PERTURB * self.rng.standard_normal((int(far.sum()), DIM)).astype(np.float32)
        self.made += n
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def queries(self, n: int) -> np.ndarray:
        if self.query_vectors is None:
            v = self.rng.standard_normal((n, DIM)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)
        rows = np.arange(self.asked, self.asked + n) % len(self.query_vectors)
        self.asked += n
        return self.query_vectors[rows]


def open_store(path: Path) -> Any:
    """The store as the service configures it by default (a checkout from before
    ``Store.from_settings`` gets its plain constructor)."""
    from rag.store import Store

    if hasattr(Store, "from_settings"):
        from rag.settings import IndexSettings

        return Store.from_settings(IndexSettings(), path)
    return Store(path)


def recall_at_10(snap: Any, kept: list[np.ndarray], queries: np.ndarray) -> float:
    """Mean share of the exact top 10 (brute force over every vector written; chunk ids
    are given in order from 1, and nothing is deleted) that the store's dense search finds."""
    matrix = np.concatenate(kept)
    truth = np.argpartition(-(queries @ matrix.T), 10, axis=1)[:, :10] + 1
    found = snap.dense(queries, 10)
    return float(
        np.mean(
            [
                len({h.id for h in f} & set(t.tolist())) / 10
                for f, t in zip(found, truth, strict=True)
            ]
        )
    )


def worker(sizes: list[int], commits: int, folder: Path, vectors: Path | None) -> None:
    """Build one index up to each size in turn, measuring there (prints JSON lines)."""
    from rag.models import Chunk, Document
    from rag.retrieval import Retriever
    from rag.store import Upsert

    source = VectorSource(vectors)
    kept: list[np.ndarray] = []

    class Vectors:
        """The retriever's embedder: query vectors from the source, no model."""

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            return source.queries(len(texts))

        def warm_up(self) -> None:
            pass

    texts = chunk_texts(paragraphs())
    asked = questions()
    store = open_store(folder / "idx")
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
            vectors = source.chunks(len(parts))
            if source.real is not None:
                kept.append(vectors)
            # A quarter of the documents per ``part``: what a filtered question selects.
            doc = Document(f"doc-{doc_number}", text, metadata={"part": doc_number % PARTS})
            upserts.append(Upsert(doc, chunks, vectors))
            doc_number += 1
        t = time.perf_counter()
        store.apply(upserts)
        total += COMMIT_CHUNKS
        return time.perf_counter() - t

    wait = getattr(store, "wait_for_merges", None)

    def settled_commit() -> float:
        # One commit alone: the background merges earlier commits asked for are finished
        # first, so that it is not timed sharing the two cores with a merge's graph build.
        if wait is not None:
            wait()
        return commit()

    for size in sizes:
        # The stretch of writes up to this size, background merges included (their wait at
        # its end): the amortised cost of a commit, what ingest pays per 2,048 chunks.
        t = time.perf_counter()
        stretch = 0
        while total + COMMIT_CHUNKS * commits < size:
            commit()
            stretch += 1
        if wait is not None:
            wait()
        ingest_s = (time.perf_counter() - t) / max(stretch, 1)
        commit_s = statistics.median(settled_commit() for _ in range(commits))
        # Questions are timed once the merges the writes asked for are done (a server's
        # index between bursts of writes): a merge building a large HNSW graph takes both
        # cores for tens of seconds, and questions asked meanwhile time the merge instead.
        t = time.perf_counter()
        if wait is not None:
            wait()
        merges_wait_s = time.perf_counter() - t
        timings: dict[str, list[float]] = {m: [] for m in ("dense", "bm25", "hybrid")}
        timings |= {f"{m}_{f}": [] for m in ("dense", "hybrid") for f in ("part", "docs")}
        # With RAG_SEARCH_THREADS > 1, the same questions again with the segments searched
        # one after another ("_1t"), alternating with the threaded ones (same load).
        threaded = getattr(store, "search_threads", 1) > 1
        if threaded:
            timings |= {"dense_1t": [], "hybrid_1t": []}
        picker = random.Random(size)
        with store.read() as snap:
            pool = getattr(snap, "_pool", None)
            for q in asked:
                # A wide filter (a quarter of the index) and a narrow one (8 documents).
                wanted = {
                    "part": {"part": 1},
                    "docs": {"doc_id": [f"doc-{picker.randrange(doc_number)}" for _ in range(8)]},
                }
                for name in timings:
                    mode, _, which = name.partition("_")
                    filters = wanted.get(which)
                    if threaded:
                        snap._pool = None if which == "1t" else pool
                    t = time.perf_counter()
                    retriever.retrieve(snap, q, top_k=5, mode=mode, filters=filters)  # type: ignore[arg-type]
                    timings[name].append((time.perf_counter() - t) * 1000)
            if threaded:
                snap._pool = pool
            recall = recall_at_10(snap, kept, source.queries(200)) if kept else None
        row: dict[str, Any] = {
            "chunks": total,
            "commit_s": round(commit_s, 3),
            "ingest_s_per_commit": round(ingest_s, 3),
            "merges_wait_s": round(merges_wait_s, 1),
        }
        for mode, ms in timings.items():
            row[f"{mode}_p50_ms"] = pct(ms, 50)
            row[f"{mode}_p95_ms"] = pct(ms, 95)
        if recall is not None:
            row["dense_recall@10"] = round(recall, 4)
        row["disk_mb"] = round(disk_mb(folder / "idx"), 1)
        row["build_rss_mb"] = round(rss_mb(), 1)
        row |= serve_rss(folder / "idx", asked)
        print(json.dumps(row), flush=True)


def serve_rss(index: Path, asked: Sequence[str]) -> dict[str, float]:
    """RSS of a fresh process that opens ``index`` and answers the questions (what a server
    holds for it: the loaded vectors and SQLite's cache, none of the build's garbage), and
    the seconds it took to open and check the index (the store's part of start to /ready;
    models excluded)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-probe", str(index)]
    proc = subprocess.run(
        cmd, input="\n".join(asked), capture_output=True, text=True, cwd=os.getcwd(), check=True
    )
    out: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def serve_probe(index: Path) -> None:
    from rag.retrieval import Retriever

    rng = np.random.default_rng(1)

    class Vectors:
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            v = rng.standard_normal((len(texts), DIM)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    retriever = Retriever(Vectors(), depth=30)  # type: ignore[arg-type]
    t = time.perf_counter()
    store = open_store(index)
    store.check()  # what the service does before /ready: checksums, counts, segments loaded
    ready_s = time.perf_counter() - t
    with store.read() as snap:
        for q in sys.stdin.read().splitlines():
            retriever.retrieve(snap, q, top_k=5)
    print(json.dumps({"serve_rss_mb": round(rss_mb(), 1), "open_check_s": round(ready_s, 2)}))


def run(
    checkout: Path,
    sizes: list[int],
    commits: int,
    vectors: Path | None,
    keep: Path | None = None,
) -> list[dict[str, Any]]:
    """The worker in a subprocess importing ``rag`` from ``checkout``; ``keep``: where the
    built index folder is moved afterwards (to serve it with ``rag serve``)."""
    with tempfile.TemporaryDirectory(dir=ROOT / "runs") as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tmp]
        cmd += ["--sizes", ",".join(map(str, sizes)), "--commits", str(commits)]
        if vectors is not None:
            cmd += ["--vectors-dir", str(vectors)]
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{checkout}: {proc.stderr[-2000:]}")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / "idx"), str(keep / "idx"))
        return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000,100000,200000")
    ap.add_argument("--commits", type=int, default=5, help="commits timed at each size")
    ap.add_argument("--compare", default=None, help="a git revision to run beside this one")
    ap.add_argument(
        "--keep", type=Path, default=None, help="move this checkout's index to KEEP/idx at the end"
    )
    ap.add_argument("--compare-sizes", default=None, help="sizes for REV (default: --sizes)")
    ap.add_argument(
        "--vectors",
        choices=["random", "real"],
        default="random",
        help="real: cached real embeddings (bench/real_vectors.py), perturbed past them",
    )
    ap.add_argument("--vectors-dir", type=Path, default=None, help=argparse.SUPPRESS)
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
        worker(sizes, args.commits, args.worker, args.vectors_dir)
        return 0
    (ROOT / "runs").mkdir(exist_ok=True)
    vectors = None
    if args.vectors == "real":
        sys.path.insert(0, str(ROOT))
        from bench.real_vectors import cache_dir

        vectors = cache_dir()
    results = {"this checkout": run(ROOT, sizes, args.commits, vectors, args.keep)}
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
            results[f"{args.compare} ({rev})"] = run(tree, other, args.commits, vectors)
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
