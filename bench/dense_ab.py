"""Dense search through the store over two kept indexes, side by side in one process:
each question asked of both (alternating which goes first), so the machine's noise falls
on both alike; p50 / p95 of each and their ratio.

    .venv/bin/python bench/dense_ab.py A_DIR:TYPE:EF_SEARCH B_DIR:TYPE:EF_SEARCH[:EF@BELOW]

e.g. the 1M indexes ``bench/store_scale.py --keep`` leaves, built under two ANN settings:
    bench/dense_ab.py runs/keep1m/idx:HNSW32_SQ8:256 runs/keep1m-h12/idx:HNSW12_SQ8:384
Queries: real SQuAD dev questions encoded by the project's embedder
(``bench/real_vectors.py``), depth 20 as the retriever asks; query encoding excluded. An
optional ``EF@BELOW`` searches the HNSW segments of fewer than BELOW vectors with efSearch
EF instead (RAG_ANN_SMALL_EF_SEARCH, RAG_ANN_SMALL_VECTORS; without it, no such tier); the
top 10 of B is compared with A's (overlap@10: B's recall relative to A's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.real_vectors import load  # noqa: E402
from rag.settings import IndexSettings  # noqa: E402
from rag.store import AnnPolicy, Store  # noqa: E402

DEPTH = 20


def open_store(spec: str) -> tuple[str, Store]:
    """``DIR:TYPE:EF[:EF@BELOW]``: the store of DIR searched with that ANN policy (the
    small-segment tier from ``EF@BELOW``, else none)."""
    small = (0, 0)
    if spec.count(":") == 3:
        spec, rule = spec.rsplit(":", 1)
        ef_small, below = rule.split("@")
        small = (int(ef_small), int(below))
    folder, index_type, ef = spec.rsplit(":", 2)
    s = IndexSettings()
    ann = AnnPolicy(
        index_type,
        s.ann_min_vectors,
        int(ef),
        s.ann_nprobe,
        s.ann_ef_construction,
        small_vectors=small[1],
        small_ef_search=small[0],
    )
    label = f"{index_type} efSearch {ef}" + (f", {small[0]} below {small[1]:,}" if small[1] else "")
    return label, Store(Path(folder), ann=ann, search_threads=2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    _, queries = load(100_352)
    queries = queries[: args.queries]
    stores = [open_store(args.a), open_store(args.b)]
    for label, store in stores:  # open and load the segments before timing
        with store.read() as snap:
            snap.dense(queries[:1], depth=DEPTH)
            print(f"{label}: {len(snap.segments())} segments")
    times: list[list[float]] = [[], []]
    overlap: list[float] = []
    for r in range(args.rounds):
        for i, q in enumerate(queries):
            order = [0, 1] if (i + r) % 2 == 0 else [1, 0]
            tops: list[list[int]] = [[], []]
            for k in order:
                t = time.perf_counter()
                with stores[k][1].read() as snap:
                    (hits,) = snap.dense(q[None, :], depth=DEPTH)
                times[k].append((time.perf_counter() - t) * 1000)
                tops[k] = [h.id for h in hits[:10]]
            if r == 0:
                overlap.append(len(set(tops[0]) & set(tops[1])) / max(1, len(tops[0])))
    for (label, _), ts in zip(stores, times, strict=True):
        p95 = float(np.percentile(ts, 95))
        print(f"{label}: p50 {statistics.median(ts):.2f} ms, p95 {p95:.2f} ms")
    print(f"ratio b/a (p50): {statistics.median(times[1]) / statistics.median(times[0]):.3f}")
    print(f"overlap@10 of b with a: {statistics.mean(overlap):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
