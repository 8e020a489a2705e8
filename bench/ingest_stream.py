"""A large folder through `rag ingest`'s path: memory, throughput and resuming, everything
measured but the encoder.

    .venv/bin/python bench/ingest_stream.py [--files 10000,100000]

For each size, ``files`` text files are written under ``runs/`` (the chunk texts of
``bench/store_scale.py``'s corpus, one per file, about 160 tokens each) and ingested in a
fresh process through what `rag ingest` runs: ``LoadStream`` (one file read at a time) into
``Pipeline.ingest`` with commits of ``RAG_COMMIT_CHUNKS`` chunks. The encoder is a stand-in
(random unit vectors of the real dimension): the real one embeds about 21 chunks/s on 2 cores,
80 minutes per 100k chunks, and is the same cost whatever the pipeline around it does.
Reported per size: peak RSS of the streamed ingest and, beside it, of the whole folder loaded
first (``load_paths``, as `rag ingest` did before), chunks/s of everything but the encoder,
and a resume: an ingest stopped after half the files (as by Ctrl-C) and run again, with how
many chunks the second run embedded and its time. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.store_scale import chunk_texts, paragraphs  # noqa: E402


def write_folder(folder: Path, files: int) -> None:
    """``files`` text files of the corpus' chunk texts, 1,000 to a subfolder."""
    if folder.exists() and len(list(folder.rglob("*.txt"))) == files:
        return
    shutil.rmtree(folder, ignore_errors=True)
    for n, text in enumerate(itertools.islice(chunk_texts(paragraphs()), files)):
        sub = folder / f"{n // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{n:06d}.txt").write_text(text, encoding="utf-8")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(folder: Path, index_root: Path, mode: str) -> dict[str, Any]:
    """One ingest in this process (``stream``, ``list``, or ``resume``: stopped half way,
    then again)."""
    from rag.ingest import Embedder, LoadStream, load_paths
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    class StandIn(Embedder):
        """Random unit vectors of the real model's dimension; no model."""

        def __init__(self) -> None:
            super().__init__(model_path=Path("/nonexistent"))
            self.rng = np.random.default_rng(0)

        def warm_up(self) -> None:
            return None

        @property
        def dim(self) -> int:
            return 384

        @property
        def max_seq_length(self) -> int:
            return 256

        def manifest(self) -> dict[str, str]:
            return {"embedding_model": "stand-in", "embedding_sha256": "stand-in"}

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            v = self.rng.standard_normal((len(texts), 384)).astype(np.float32)
            out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
            return out

    settings = Settings(index_root=index_root, index_name="bench")
    pipe = Pipeline(settings, embedder=StandIn())
    total = len(list(folder.rglob("*.txt")))
    row: dict[str, Any] = {"files": total, "mode": mode}
    t = time.perf_counter()
    if mode == "list":
        report = pipe.ingest(load_paths([folder]).documents)
    elif mode == "stream":
        report = pipe.ingest(LoadStream([folder]))
    else:

        def half(docs: LoadStream) -> Iterator[Any]:
            for n, doc in enumerate(docs):
                if n == total // 2:
                    raise KeyboardInterrupt
                yield doc

        try:
            pipe.ingest(half(LoadStream([folder])))
        except KeyboardInterrupt:
            row["stopped_with_chunks"] = pipe.counts()[1]
        t = time.perf_counter()
        report = pipe.ingest(LoadStream([folder]))
        row["resumed_unchanged"] = len(report.unchanged)
    seconds = time.perf_counter() - t
    row["chunks_embedded"] = report.chunks_embedded
    row["seconds"] = round(seconds, 1)
    row["chunks_per_s"] = round(report.chunks_embedded / seconds, 1) if seconds else None
    row["peak_rss_mb"] = round(peak_mb(), 1)
    pipe.close()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", default="10000,100000")
    ap.add_argument("--worker", nargs=3, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "store" / "ingest")
    args = ap.parse_args()
    if args.worker:
        folder, root, mode = args.worker
        print(json.dumps(worker(Path(folder), Path(root), mode)))
        return 0
    rows = []
    for files in (int(f) for f in args.files.split(",")):
        folder = ROOT / "runs" / f"ingest-{files}"
        write_folder(folder, files)
        for mode in ("stream", "list", "resume"):
            root = ROOT / "runs" / f"ingest-index-{files}-{mode}"
            shutil.rmtree(root, ignore_errors=True)
            cmd = [sys.executable, __file__, "--worker", str(folder), str(root), mode]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                raise SystemExit(proc.stderr[-2000:])
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(root, ignore_errors=True)
    cols = sorted(
        {c for r in rows for c in r}, key=lambda c: list(rows[0]).index(c) if c in rows[0] else 99
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    print("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    command = "python bench/ingest_stream.py " + " ".join(sys.argv[1:])
    args.out.with_suffix(".md").write_text(
        f"# Streamed ingest of a large folder\n\nCommand: `{command}` "
        f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores). Method: the docstring of "
        "bench/ingest_stream.py.\n\n" + "\n".join(lines) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
