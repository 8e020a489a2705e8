"""Hybrid retrieval over a kept index by two checkouts, side by side: each question asked of
both in alternation.

    .venv/bin/python bench/hybrid_ab.py INDEX_DIR [--rev HEAD~1] [--questions 600] \\
        [--a-env KEY=VALUE ...] [--b-env KEY=VALUE ...]

e.g. over the 1M-chunk index ``bench/store_scale.py --vectors real --keep runs/keep1m``
leaves: ``bench/hybrid_ab.py runs/keep1m/idx --rev HEAD~1``. Two worker processes open
the same index, one importing ``rag`` from a worktree of ``REV``, one from this checkout,
each with the default settings and its own ``--a-env`` / ``--b-env``; every question is
sent to both (alternating which goes first, so the machine's noise falls on both alike)
and each times its own hybrid
``Retriever.retrieve`` (top 5 of depth 30, as ``POST /ask`` asks). Query encoding is
excluded: the questions are the SQuAD v1.1 dev sample of ``bench/real_vectors.py``, sent
with their cached real embeddings. Prints p50 / p95 of each, their ratio, and how many
questions got the same top 5 chunks from both. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 30
TOP_K = 5


def worker(index: Path) -> None:
    """Answer ``{"question", "vector"}`` lines on stdin with ``{"ms", "ids"}`` lines."""
    import numpy as np

    from rag.retrieval import Retriever
    from rag.settings import IndexSettings
    from rag.store import Store

    class Given:
        """The retriever's embedder: the vector sent with the question."""

        vector = np.zeros((1, 0), dtype=np.float32)

        def embed(self, texts: Any) -> np.ndarray:
            return self.vector

        def warm_up(self) -> None:
            pass

    given = Given()
    options: dict[str, Any] = {}
    if "keyword_beside_dense" in inspect.signature(Retriever).parameters:
        from rag.settings import RetrievalSettings

        options["keyword_beside_dense"] = RetrievalSettings().keyword_beside_dense
    retriever = Retriever(given, depth=DEPTH, **options)  # type: ignore[arg-type]
    store = Store.from_settings(IndexSettings(), index)
    store.check()
    with store.read() as snap:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            asked = json.loads(line)
            given.vector = np.asarray([asked["vector"]], dtype=np.float32)
            t = time.perf_counter()
            passages = retriever.retrieve(snap, asked["question"], top_k=TOP_K)
            ms = (time.perf_counter() - t) * 1000
            print(json.dumps({"ms": ms, "ids": [p.id for p in passages]}), flush=True)
    store.close()


def start(checkout: Path, index: Path, extra: list[str]) -> subprocess.Popen[str]:
    """A worker importing ``rag`` from ``checkout`` with ``extra`` settings (``KEY=VALUE``),
    ready to be asked."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(index.resolve())]
    env = {**os.environ, "PYTHONPATH": str(checkout), **dict(e.split("=", 1) for e in extra)}
    proc = subprocess.Popen(
        cmd, cwd=checkout, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if "ready" not in proc.stdout.readline():
        raise SystemExit(f"the worker of {checkout} did not start")
    return proc


def ask(proc: subprocess.Popen[str], question: str, vector: list[float]) -> dict[str, Any]:
    stdin: IO[str] = proc.stdin  # type: ignore[assignment]
    stdout: IO[str] = proc.stdout  # type: ignore[assignment]
    stdin.write(json.dumps({"question": question, "vector": vector}) + "\n")
    stdin.flush()
    out: dict[str, Any] = json.loads(stdout.readline())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("index", type=Path, nargs="?", help="an index folder (e.g. runs/keep1m/idx)")
    ap.add_argument("--rev", default="HEAD~1", help="the revision asked as A")
    ap.add_argument("--questions", type=int, default=600)
    ap.add_argument("--a-env", nargs="*", default=[], help="KEY=VALUE settings of A")
    ap.add_argument("--b-env", nargs="*", default=[], help="KEY=VALUE settings of B")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        sys.path.insert(0, os.getcwd())
        worker(args.worker)
        return 0
    if args.index is None or not (args.index / "index.sqlite").is_file():
        ap.error("INDEX_DIR must be an index folder (holding index.sqlite)")

    import numpy as np

    sys.path.insert(0, str(ROOT))
    from bench.real_vectors import cache_dir, query_texts

    vectors = np.load(cache_dir() / "queries.npy")
    texts = query_texts()
    count = min(args.questions, len(texts), len(vectors))
    (ROOT / "runs").mkdir(exist_ok=True)
    tree = Path(tempfile.mkdtemp(dir=ROOT / "runs", prefix="hybrid-ab-"))
    subprocess.run(
        ["git", "worktree", "add", "-f", "--detach", str(tree), args.rev],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    workers = {}
    try:
        workers = {
            "A": start(tree, args.index, args.a_env),
            "B": start(ROOT, args.index, args.b_env),
        }
        times: dict[str, list[float]] = {"A": [], "B": []}
        same = 0
        for i in range(count):
            got = {}
            for name in ("A", "B") if i % 2 == 0 else ("B", "A"):
                got[name] = ask(workers[name], texts[i], vectors[i].tolist())
                times[name].append(got[name]["ms"])
            same += got["A"]["ids"] == got["B"]["ids"]
    finally:
        for proc in workers.values():
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=60)
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
        shutil.rmtree(tree, ignore_errors=True)
    a, b = (statistics.median(times[n]) for n in ("A", "B"))
    print(f"hybrid, {count} questions over {args.index}, query encoding excluded:")
    for name, label, p50 in (
        ("A", f"{args.rev} {' '.join(args.a_env)}", a),
        ("B", f"this checkout {' '.join(args.b_env)}", b),
    ):
        p95 = np.percentile(times[name], 95)
        print(f"{name} ({label.strip()}) p50 {p50:.2f} ms, p95 {p95:.2f} ms")
    print(f"ratio b/a (p50): {b / a:.3f}; same top 5: {same}/{count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
