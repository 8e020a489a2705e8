"""Real embeddings of the store-scale corpus, cached outside git, built in the background.

    .venv/bin/python bench/real_vectors.py [--count 100000] [--threads 1]

ANN recall means something only on the vectors the model really makes, and 2 cores encode
about 15 chunks/s on one thread (25 on two), so the ``count`` first chunk texts of
``bench/store_scale.py``'s corpus are encoded once, block by block (2,048 texts, one commit's
worth, a ``.npy`` file each), into ``runs/vectors/<key>/``: an interrupted run resumes at the
first missing block. ``key`` hashes the embedding weights and the corpus recipe, so a change
of either starts a new cache. 1,000 SQuAD v1.1 dev questions (seeded sample) are encoded
beside them as the query set. ``load(count)`` hands both to the benchmarks.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.store_scale import SQUAD_DEV, _open, chunk_texts, paragraphs  # noqa: E402

BLOCK = 2048
QUERY_COUNT = 1000
CACHE = ROOT / "runs" / "vectors"
RECIPE = "store_scale.chunk_texts v1"


def cache_dir() -> Path:
    """The cache folder of this model and corpus recipe."""
    from rag.ingest import Embedder

    h = hashlib.sha256(f"{Embedder().weights_sha256} {RECIPE}".encode())
    return CACHE / h.hexdigest()[:12]


def query_texts() -> list[str]:
    with _open(SQUAD_DEV) as fh:
        data = json.load(fh)["data"]
    qs = [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]]
    return random.Random(7).sample(qs, QUERY_COUNT)


def build(count: int, threads: int) -> Path:
    """Encode what is missing of the first ``count`` texts (and the queries); the folder."""
    import torch

    from rag.ingest import Embedder

    torch.set_num_threads(threads)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(batch_size=64)
    embedder.warm_up()
    queries = folder / "queries.npy"
    if not queries.exists():
        np.save(folder / "queries.tmp.npy", embedder.embed(query_texts()))
        (folder / "queries.tmp.npy").rename(queries)
    texts = chunk_texts(paragraphs())
    blocks = -(-count // BLOCK)
    start = time.perf_counter()
    done = 0
    for b in range(blocks):
        block = list(itertools.islice(texts, BLOCK))
        target = folder / f"block-{b:05d}.npy"
        if target.exists():
            continue
        vectors = embedder.embed(block).astype(np.float32)
        tmp = folder / f"block-{b:05d}.tmp.npy"
        np.save(tmp, vectors)
        tmp.rename(target)
        done += len(block)
        rate = done / (time.perf_counter() - start)
        left = (blocks - b - 1) * BLOCK / rate
        print(f"block {b + 1}/{blocks}: {rate:.1f} texts/s, about {left / 60:.0f} min left")
        sys.stdout.flush()
    return folder


def load(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` cached chunk vectors (fewer if fewer are cached) and the queries."""
    folder = cache_dir()
    parts = []
    have = 0
    for b in itertools.count():
        path = folder / f"block-{b:05d}.npy"
        if have >= count or not path.exists():
            break
        parts.append(np.load(path))
        have += len(parts[-1])
    if not parts:
        raise SystemExit(f"no cached vectors in {folder}: run bench/real_vectors.py first")
    return np.concatenate(parts)[:count], np.load(folder / "queries.npy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    print(build(args.count, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
