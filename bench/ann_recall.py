"""Which FAISS index a large vector segment should be: recall@10 against exact search on
real embeddings, per-question latency on one thread, build time and bytes per vector.

    .venv/bin/python bench/ann_recall.py [--count 100000] [--queries 1000]

Vectors: the first ``count`` chunk texts of ``bench/store_scale.py``'s corpus, encoded by the
project's embedder (``bench/real_vectors.py`` caches them); queries: 1,000 SQuAD v1.1 dev
questions encoded the same way. The truth is an exact inner-product search (``Flat``); each
candidate is a FAISS factory string (inner product, as the store builds them) trained on the
vectors themselves, searched at each of its search-time settings (IVF ``nprobe``, HNSW
``efSearch``). Latency: the median of single-query searches on one thread (a question asks
one vector at a time), after a warm-up pass. Nothing here is asserted; the store's defaults
are chosen from the table this writes (eval/reports/store/ann.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.real_vectors import load  # noqa: E402

K = 10
LATENCY_QUERIES = 300
# HNSW graphs are built as the store's merges build them (RAG_ANN_EF_CONSTRUCTION).
EF_CONSTRUCTION = 80


def candidates(n: int) -> list[tuple[str, str | None, list[int]]]:
    """(factory string, search parameter, its values): flat, scalar quantisers, IVF with
    about 4 sqrt(n) lists, HNSW with 32 links plain and with 32, 16, 12 or 8 links over
    8-bit codes (fewer links: a smaller graph, and each step of the search cheaper), and 12
    links over 6- and 4-bit codes (smaller vectors, coarser distances)."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    probes = [8, 16, 32, 64, 128]
    efs = [64, 128, 256, 384, 512]
    return [
        ("Flat", None, [0]),
        ("SQfp16", None, [0]),
        ("SQ8", None, [0]),
        (f"IVF{nlist},Flat", "nprobe", probes),
        (f"IVF{nlist},SQ8", "nprobe", probes),
        ("HNSW32", "efSearch", efs),
        ("HNSW32_SQ8", "efSearch", efs),
        ("HNSW16_SQ8", "efSearch", efs),
        ("HNSW12_SQ8", "efSearch", efs),
        ("HNSW8_SQ8", "efSearch", efs),
        ("HNSW12_SQ6", "efSearch", efs),
        ("HNSW12_SQ4", "efSearch", efs),
    ]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def index_bytes(index: faiss.Index) -> int:
    with tempfile.NamedTemporaryFile(dir=ROOT / "runs", suffix=".faiss") as tmp:
        faiss.write_index(index, tmp.name)
        return os.path.getsize(tmp.name)


def set_param(index: faiss.Index, name: str | None, value: int) -> None:
    if name == "nprobe":
        faiss.extract_index_ivf(index).nprobe = value
    elif name == "efSearch":
        faiss.downcast_index(index).hnsw.efSearch = value


def measure(
    count: int, queries_n: int, threads: int, only: set[str] | None = None
) -> list[dict[str, Any]]:
    vectors, queries = load(count)
    queries = queries[:queries_n]
    n = len(vectors)
    faiss.omp_set_num_threads(threads)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, K)
    rows: list[dict[str, Any]] = []
    for factory, param, values in candidates(n):
        if only is not None and factory not in only:
            continue
        faiss.omp_set_num_threads(threads)
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
        if hnsw is not None:
            hnsw.efConstruction = EF_CONSTRUCTION
        t = time.perf_counter()
        index.train(vectors)
        index.add(vectors)
        build_s = time.perf_counter() - t
        size = index_bytes(index)
        for value in values:
            set_param(index, param, value)
            faiss.omp_set_num_threads(threads)
            _, found = index.search(queries, K)
            faiss.omp_set_num_threads(1)
            for q in queries[:20]:  # warm-up
                index.search(q[None, :], K)
            times = []
            for q in queries[:LATENCY_QUERIES]:
                t = time.perf_counter()
                index.search(q[None, :], K)
                times.append((time.perf_counter() - t) * 1000)
            row = {
                "index": factory,
                "param": f"{param}={value}" if param else "",
                "recall@10": round(recall(found, truth), 4),
                "p50_ms": round(statistics.median(times), 3),
                "build_s": round(build_s, 1),
                "bytes_per_vector": round(size / n, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2, help="threads for building")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "store" / "ann")
    ap.add_argument(
        "--only", default=None, help="comma-separated factory strings: measure just these"
    )
    args = ap.parse_args()
    (ROOT / "runs").mkdir(exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    rows = measure(args.count, args.queries, args.threads, only)
    n = len(load(args.count)[0])
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"vectors": n, "rows": rows}, indent=2))
    command = "python bench/ann_recall.py " + " ".join(sys.argv[1:])
    args.out.with_suffix(".md").write_text(
        f"# ANN indexes for large segments, on {n:,} real embeddings\n\n"
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores). "
        "Method: the docstring of bench/ann_recall.py.\n\n" + "\n".join(lines) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
