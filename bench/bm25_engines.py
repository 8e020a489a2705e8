"""Keyword engines side by side: SQLite FTS5 (ours) against tantivy and bm25s, by numbers.

    runs/bm25-venv/bin/python bench/bm25_engines.py [--sizes 20000,100000,200000]
        [--engines fts5,tantivy,bm25s] [--out eval/reports/store/bm25_engines.json]

Corpus and questions are ``bench/store_scale.py``'s, so sizes line up with its report: the
chunk texts of ``chunk_texts(paragraphs())`` (SQuAD v1.1 train paragraphs, then their
sentences recombined), chunk ids 1, 2, ... in stream order, and its 60 SQuAD v1.1 dev
questions. tantivy and bm25s are not project dependencies: they live in a venv of their own
(``runs/bm25-venv``, see eval/reports/store/bm25_engines.md); run with the project venv, the
engines it lacks are skipped, saying so.

The engines, each queried for its top 30 (``DEPTH``) with the same words:
  fts5     the store's table (contentless, ``porter unicode61 remove_diacritics 2``) in a
           WAL database with ``synchronous = FULL`` as the store opens it, queried with
           ``rag.retrieval.fts_query`` (the question's content words, each quoted, OR-ed)
           and ``ORDER BY bm25(chunks_fts)``.
  tantivy  an on-disk index: ``id`` (i64, indexed, fast) and ``text`` (``en_stem``:
           lowercase + English Snowball stemmer, positions kept as FTS5 keeps them), one
           indexing thread; the same ``fts_query`` expression through tantivy's query
           parser (an OR of term queries, BM25 k1 1.2 b 0.75, block-max WAND top-k with
           ``count=False``); ids read from the fast field.
  bm25s    ``bm25s.tokenize`` with its English stopwords and PyStemmer's English stemmer
           (no stemmer if PyStemmer is missing), ``BM25(k1=1.2, b=0.75)`` (Lucene's variant,
           the others' k1 and b), saved with ``save`` and read back with ``load``; queried with
           the same content words; zero-score padding dropped.

At each size, in one process per engine that builds up through the sizes in turn:
  build_s   wall time of writing the index from empty in commits of 2,048 chunks (FTS5:
            one transaction each; tantivy: one ``commit()`` plus ``reload()`` each). bm25s
            has no incremental update: its build is one full index of the whole corpus
            (tokenise + index + save), and that is also its commit and delete cost.
  commit_s  median of ``--commits`` more commits of 2,048 (bm25s: one full re-index with
            them; ``bm25s_tokenize_s`` is its tokenising share, which a cache of token ids
            per chunk could save).
  p50/p95   query latency in ms over the 60 questions asked 3 times each after one warm-up
            pass, single thread, query building included (``fts_query``, parsing, tokenising).
  disk_mb   the index's files (FTS5: after a WAL checkpoint).
  rss       ``import_rss_mb``: a fresh process with the engine imported; ``serve_rss_mb``:
            the same after opening the on-disk index and answering the 60 questions once.
  delete_s  deleting 2,048 chunks by id, a seeded sample of the live ones (FTS5: the
            contentless 'delete' command, which needs each text; tantivy: delete by term
            on ``id`` and commit; bm25s: a full re-index without them). They stay deleted.
  overlap10 mean share of FTS5's top 10 found in the engine's top 10 (the engines tokenise
            and weigh differently: a sanity check, not a quality measure).
Quality, where it means something: SQuAD v1.1 dev, its 2,067 paragraphs as the documents and
all its 10,570 questions; hit@5 and hit@20 of the question's own paragraph.

Every command is meant to run pinned (``taskset -c 1``); the workers inherit the pinning.
Temporary indexes go under ``runs/`` and are deleted after measuring. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.store_scale import (  # noqa: E402
    COMMIT_CHUNKS,
    SQUAD_DEV,
    _open,
    chunk_texts,
    disk_mb,
    paragraphs,
    pct,
    questions,
    rss_mb,
)

try:
    from rag.retrieval import fts_query

    FTS_QUERY = "rag.retrieval.fts_query"
except ImportError:  # rag.retrieval needs FAISS, which the bm25 venv does not have
    from rag.text import STOPWORDS

    _WORD = re.compile(r"\w+", re.UNICODE)

    def fts_query(question: str) -> str:
        """``rag.retrieval.fts_query``, copied: the question's content words, each quoted,
        OR-ed."""
        terms = [w for w in _WORD.findall(question.lower()) if w not in STOPWORDS]
        unique = list(dict.fromkeys(terms))
        return " OR ".join('"' + t.replace('"', '""') + '"' for t in unique)

    FTS_QUERY = "a copy of rag.retrieval.fts_query"


ENGINES = ("fts5", "tantivy", "bm25s")
MODULES = {"fts5": "sqlite3", "tantivy": "tantivy", "bm25s": "bm25s"}
DEPTH = 30
TOP = 10
REPEATS = 3
K1, B = 1.2, 0.75
FTS_TABLE = """
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='', tokenize='porter unicode61 remove_diacritics 2'
)"""
FTS_SEARCH = (
    "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? "
    "ORDER BY s LIMIT ?"
)
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def query_words(question: str) -> list[str]:
    """The words of ``fts_query``'s expression, unquoted (bm25s's query)."""
    return [w.replace('""', '"') for w in _QUOTED.findall(fts_query(question))]


class Engine(Protocol):
    def add(self, ids: Sequence[int], texts: Sequence[str], commit: bool = True) -> None: ...

    def delete(self, ids: Sequence[int], texts: Sequence[str]) -> None: ...

    def search(self, question: str, k: int) -> list[int]: ...

    def extra(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Fts5:
    """The store's keyword table alone, written and read as the store does."""

    def __init__(self, folder: Path, read_only: bool = False) -> None:
        self.path = folder / "fts.sqlite"
        if read_only:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            return
        folder.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(FTS_TABLE)

    def add(self, ids: Sequence[int], texts: Sequence[str], commit: bool = True) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)", zip(ids, texts, strict=True)
        )
        self.conn.execute("COMMIT")

    def delete(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', ?, ?)",
            zip(ids, texts, strict=True),
        )
        self.conn.execute("COMMIT")

    def search(self, question: str, k: int) -> list[int]:
        match = fts_query(question)
        if not match:
            return []
        return [r[0] for r in self.conn.execute(FTS_SEARCH, (match, k))]

    def extra(self) -> dict[str, Any]:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {}

    def close(self) -> None:
        self.conn.close()


class Tantivy:
    """An on-disk tantivy index: one writer thread, one commit per batch."""

    def __init__(self, folder: Path, read_only: bool = False) -> None:
        import tantivy

        self.tantivy = tantivy
        path = folder / "tantivy"
        if read_only:
            self.index = tantivy.Index.open(str(path))
            self.searcher = self.index.searcher()
            return
        path.mkdir(parents=True, exist_ok=True)
        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("id", stored=False, indexed=True, fast=True)
        builder.add_text_field("text", stored=False, tokenizer_name="en_stem")
        self.index = tantivy.Index(builder.build(), path=str(path))
        self.writer = self.index.writer(heap_size=128_000_000, num_threads=1)
        self.searcher = self.index.searcher()

    def _commit(self) -> None:
        self.writer.commit()
        self.index.reload()
        self.searcher = self.index.searcher()

    def add(self, ids: Sequence[int], texts: Sequence[str], commit: bool = True) -> None:
        for i, text in zip(ids, texts, strict=True):
            self.writer.add_document(self.tantivy.Document(id=i, text=text))
        if commit:
            self._commit()

    def delete(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        for i in ids:
            self.writer.delete_documents_by_term("id", i)
        self._commit()

    def search(self, question: str, k: int) -> list[int]:
        match = fts_query(question)
        if not match:
            return []
        query = self.index.parse_query(match, ["text"])
        hits = self.searcher.search(query, limit=k, count=False).hits
        return [int(i) for i in self.searcher.fast_field_values("id", [a for _, a in hits])]

    def extra(self) -> dict[str, Any]:
        return {"tantivy_segments": self.searcher.num_segments}

    def close(self) -> None:
        if hasattr(self, "writer"):
            self.writer.wait_merging_threads()


class Bm25s:
    """bm25s: a sparse matrix built whole; every change is a full re-index, saved."""

    def __init__(self, folder: Path, read_only: bool = False) -> None:
        import bm25s
        import numpy as np

        self.bm25s = bm25s
        self.np = np
        try:
            import Stemmer

            self.stemmer: Any = Stemmer.Stemmer("english")
        except ImportError:
            self.stemmer = None
        self.path = folder / "bm25s"
        self.texts: dict[int, str] = {}
        self.tokenize_s = 0.0
        if read_only:
            self.model = bm25s.BM25.load(str(self.path), show_progress=False)
            self.ids = np.load(self.path / "ids.npy")
            return
        folder.mkdir(parents=True, exist_ok=True)
        self.model = bm25s.BM25(k1=K1, b=B)
        self.ids = np.zeros(0, dtype=np.int64)

    def _tokenize(self, texts: list[str], ids: bool) -> Any:
        return self.bm25s.tokenize(
            texts, stopwords="en", stemmer=self.stemmer, return_ids=ids, show_progress=False
        )

    def _reindex(self) -> None:
        """Tokenise and index every live chunk, save beside the old index and swap."""
        ids = sorted(self.texts)
        t = time.perf_counter()
        tokens = self._tokenize([self.texts[i] for i in ids], True)
        self.tokenize_s = time.perf_counter() - t
        model = self.bm25s.BM25(k1=K1, b=B)
        model.index(tokens, show_progress=False)
        new = self.path.with_name("bm25s.new")
        shutil.rmtree(new, ignore_errors=True)
        model.save(str(new))
        self.np.save(new / "ids.npy", self.np.asarray(ids, dtype=self.np.int64))
        old = self.path.with_name("bm25s.old")
        if self.path.exists():
            self.path.rename(old)
        new.rename(self.path)
        shutil.rmtree(old, ignore_errors=True)
        self.model, self.ids = model, self.np.asarray(ids, dtype=self.np.int64)

    def add(self, ids: Sequence[int], texts: Sequence[str], commit: bool = True) -> None:
        self.texts.update(zip(ids, texts, strict=True))
        if commit:
            self._reindex()

    def delete(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        for i in ids:
            self.texts.pop(i, None)
        self._reindex()

    def search(self, question: str, k: int) -> list[int]:
        words = query_words(question)
        tokens = self._tokenize([" ".join(words)], False)[0] if words else []
        if not tokens:
            return []
        k = min(k, len(self.ids))
        docs, scores = self.model.retrieve([tokens], k=k, show_progress=False, n_threads=0)
        return [int(self.ids[d]) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def extra(self) -> dict[str, Any]:
        return {"bm25s_tokenize_s": round(self.tokenize_s, 3)}

    def close(self) -> None:
        pass


def open_engine(name: str, folder: Path, read_only: bool = False) -> Engine:
    kinds: dict[str, type[Fts5] | type[Tantivy] | type[Bm25s]] = {
        "fts5": Fts5,
        "tantivy": Tantivy,
        "bm25s": Bm25s,
    }
    return kinds[name](folder, read_only)


def timed_search(engine: Engine, asked: Sequence[str]) -> tuple[list[float], list[list[int]]]:
    """Latencies (ms) of ``REPEATS`` passes after a warm-up one, and the top ``TOP`` ids."""
    tops = [engine.search(q, DEPTH)[:TOP] for q in asked]
    ms: list[float] = []
    for _ in range(REPEATS):
        for q in asked:
            t = time.perf_counter()
            engine.search(q, DEPTH)
            ms.append((time.perf_counter() - t) * 1000)
    return ms, tops


def probe_rss(name: str, folder: Path, asked: Sequence[str]) -> dict[str, float]:
    """RSS of a fresh process that opens the index and answers the questions once."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", name, "--folder", str(folder)]
    proc = subprocess.run(cmd, input="\n".join(asked), capture_output=True, text=True)
    if proc.returncode:
        return {"probe_error": float("nan")}
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def probe(name: str, folder: Path) -> None:
    importlib.import_module(MODULES[name])
    if name == "bm25s" and importlib.util.find_spec("Stemmer") is not None:
        importlib.import_module("Stemmer")
    imported = rss_mb()
    engine = open_engine(name, folder, read_only=True)
    for q in sys.stdin.read().splitlines():
        engine.search(q, DEPTH)
    print(json.dumps({"import_rss_mb": round(imported, 1), "serve_rss_mb": round(rss_mb(), 1)}))


def quality(name: str, folder: Path) -> dict[str, Any]:
    """hit@5 and hit@20 of the gold paragraph over all SQuAD v1.1 dev questions."""
    with _open(SQUAD_DEV) as fh:
        data = json.load(fh)["data"]
    paras = [p for a in data for p in a["paragraphs"]]
    engine = open_engine(name, folder / "quality")
    engine.add(list(range(1, len(paras) + 1)), [p["context"] for p in paras])
    hits = {5: 0, 20: 0}
    count = 0
    t = time.perf_counter()
    for number, p in enumerate(paras, start=1):
        for qa in p["qas"]:
            top = engine.search(qa["question"], 20)
            count += 1
            for k in hits:
                hits[k] += number in top[:k]
    elapsed = time.perf_counter() - t
    engine.close()
    shutil.rmtree(folder / "quality", ignore_errors=True)
    return {
        "engine": name,
        "documents": len(paras),
        "questions": count,
        "hit@5": round(hits[5] / count, 4),
        "hit@20": round(hits[20] / count, 4),
        "mean_query_ms": round(elapsed / count * 1000, 2),
    }


def worker(name: str, sizes: list[int], commits: int, folder: Path, with_quality: bool) -> None:
    """Build one engine's index up through ``sizes``, measuring at each (prints JSON lines)."""
    if with_quality:
        print(json.dumps({"quality": quality(name, folder)}), flush=True)
    stream: Iterator[str] = chunk_texts(paragraphs())
    asked = questions()
    engine = open_engine(name, folder)
    incremental = name != "bm25s"
    timed = commits if incremental else 1
    texts: dict[int, str] = {}
    next_id = 1
    build_s = 0.0

    def batch() -> tuple[list[int], list[str]]:
        nonlocal next_id
        ids = list(range(next_id, next_id + COMMIT_CHUNKS))
        chunk = [next(stream) for _ in ids]
        texts.update(zip(ids, chunk, strict=True))
        next_id += COMMIT_CHUNKS
        return ids, chunk

    for size in sizes:
        began = time.perf_counter()
        while len(texts) + COMMIT_CHUNKS * timed < size:
            ids, chunk = batch()
            t = time.perf_counter()
            engine.add(ids, chunk, commit=incremental)
            build_s += time.perf_counter() - t
        commit_times = []
        for _ in range(timed):
            ids, chunk = batch()
            t = time.perf_counter()
            engine.add(ids, chunk)
            commit_times.append(time.perf_counter() - t)
        commit_s = statistics.median(commit_times)
        build_s = build_s + sum(commit_times) if incremental else commit_s
        row: dict[str, Any] = {
            "engine": name,
            "size": size,
            "chunks": len(texts),
            "build_s": round(build_s, 2),
            "commit_s": round(commit_s, 3),
            "commits_timed": timed,
        }
        ms, tops = timed_search(engine, asked)
        row["p50_ms"] = pct(ms, 50)
        row["p95_ms"] = pct(ms, 95)
        row.update(engine.extra())
        row["disk_mb"] = round(disk_mb(folder), 1)
        row.update(probe_rss(name, folder, asked))
        gone = random.Random(size).sample(sorted(texts), COMMIT_CHUNKS)
        t = time.perf_counter()
        engine.delete(gone, [texts[i] for i in gone])
        row["delete_s"] = round(time.perf_counter() - t, 3)
        for i in gone:
            del texts[i]
        row["elapsed_s"] = round(time.perf_counter() - began, 1)
        row["top10"] = tops
        print(json.dumps(row), flush=True)
    engine.close()


def run_engine(
    name: str, sizes: list[int], commits: int, with_quality: bool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The worker for ``name`` in a subprocess of its own, its index in a temporary folder."""
    with tempfile.TemporaryDirectory(dir=ROOT / "runs", prefix=f"bm25-{name}-") as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
        cmd += ["--folder", tmp, "--sizes", ",".join(map(str, sizes))]
        cmd += ["--commits", str(commits)] + ([] if with_quality else ["--no-quality"])
        rows: list[dict[str, Any]] = []
        found: dict[str, Any] | None = None
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout or []:
                if not line.startswith("{"):
                    continue
                item = json.loads(line)
                if "quality" in item:
                    found = item["quality"]
                    print(f"{name} quality: {found}", file=sys.stderr, flush=True)
                else:
                    rows.append(item)
                    shown = {k: v for k, v in item.items() if k != "top10"}
                    print(f"{name}: {shown}", file=sys.stderr, flush=True)
        if proc.returncode:
            print(f"{name}: worker exited {proc.returncode}", file=sys.stderr)
        return rows, found


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    found["query"] = FTS_QUERY
    for package in ("tantivy", "bm25s", "PyStemmer", "numpy", "scipy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def overlap(rows: list[dict[str, Any]]) -> None:
    """Each row's mean overlap@10 with FTS5's row of the same size (then drop the lists)."""
    reference = {r["size"]: r["top10"] for r in rows if r["engine"] == "fts5"}
    for row in rows:
        ref = reference.get(row["size"])
        if ref is not None:
            shares = [
                len(set(mine) & set(theirs)) / max(len(theirs), 1)
                for mine, theirs in zip(row["top10"], ref, strict=True)
            ]
            row["overlap10"] = round(statistics.mean(shares), 3)
        del row["top10"]


COLUMNS = [
    "engine",
    "chunks",
    "build_s",
    "commit_s",
    "delete_s",
    "p50_ms",
    "p95_ms",
    "disk_mb",
    "import_rss_mb",
    "serve_rss_mb",
    "overlap10",
    "elapsed_s",
]
NOTES = """\
## What each engine offers

- **FTS5 (now)**: incremental adds, rows in a transaction; deletes by the contentless
  'delete' command, which needs the chunk's text; commits are the SQLite transaction of the
  chunk rows themselves (WAL, `synchronous = FULL`): all or nothing with the store.
- **tantivy**: incremental adds, a new segment per commit, merged in background threads;
  deletes by term on an indexed id (`delete_documents_by_term`), applied at the commit.
  `commit()` publishes and persists everything since the last commit; after a crash the
  index reopens at the last commit (`commit_opstamp`), and `rollback()` drops uncommitted
  work. It is a second store beside SQLite: no shared transaction with the chunk rows.
- **bm25s**: no incremental add, no delete: every change is a full re-index (build_s,
  commit_s and delete_s are each one: tokenise + index + save of every live chunk;
  `bm25s_tokenize_s` is the tokenising share). A `weight_mask` at query time could hide
  deleted rows, their terms still counting in the statistics. `save()` writes files with no
  transaction (here: a new folder, swapped in by renames).

tantivy's and FTS5's build_s is every commit of 2,048 from empty, summed. Reading the
numbers: FTS5's serve RSS stays small because SQLite reads pages through the OS page cache
(outside RSS) while tantivy's memory-mapped files count once touched and bm25s loads its
whole matrix; tantivy merges segments in background threads, which here share the one
pinned core with the queries and commits; the other core was busy with another process.
"""


def render(report: dict[str, Any]) -> str:
    lines = ["# Keyword engines: FTS5, tantivy, bm25s", ""]
    for run in report["runs"]:
        lines.append(f"Command: `{run['command']}` ({run['date']}, {run['pinning']}).")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items())]
    lines += ["", "Method: the docstring of bench/bm25_engines.py.", ""]
    if report.get("skipped"):
        lines += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items())]
        lines.append("")
    lines += ["## Costs by size", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in sorted(report["rows"], key=lambda r: (r["size"], ENGINES.index(r["engine"]))):
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
    if report.get("quality"):
        lines += ["", "## SQuAD v1.1 dev: gold paragraph among the top k", ""]
        cols = ["engine", "documents", "questions", "hit@5", "hit@20", "mean_query_ms"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for q in report["quality"]:
            lines.append("| " + " | ".join(str(q[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n\n" + NOTES


def affinity() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def taskset() -> str:
    """``taskset -c CORES `` when this process is pinned to fewer cores than there are."""
    cores = affinity()
    pinned = cores and len(cores) < (os.cpu_count() or 0)
    return f"taskset -c {','.join(map(str, cores))} " if pinned else ""


def pinning() -> str:
    cores = affinity()
    if not cores:
        return "affinity unknown"
    return f"pinned to core(s) {','.join(map(str, cores))} of {os.cpu_count()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000,100000,200000")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--commits", type=int, default=3, help="commits timed at each size")
    ap.add_argument("--no-quality", action="store_true", help="skip the SQuAD dev hit@k")
    ap.add_argument("--out", type=Path, default=None, help="write JSON (and .md beside it)")
    ap.add_argument("--append", action="store_true", help="merge into --out's rows")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.probe is not None:
        probe(args.probe, args.folder)
        return 0
    if args.worker is not None:
        worker(args.worker, sizes, args.commits, args.folder, not args.no_quality)
        return 0
    (ROOT / "runs").mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name in args.engines.split(","):
        if importlib.util.find_spec(MODULES[name]) is None:
            skipped[name] = f"not installed for {sys.executable}"
            print(f"{name}: skipped, {skipped[name]}", file=sys.stderr)
            continue
        if name == "bm25s" and importlib.util.find_spec("Stemmer") is None:
            print("bm25s: PyStemmer missing, indexing without a stemmer", file=sys.stderr)
        engine_rows, quality_row = run_engine(name, sizes, args.commits, not args.no_quality)
        rows += engine_rows
        found += [quality_row] if quality_row else []
    overlap(rows)
    python = Path(sys.executable)
    if python.is_relative_to(ROOT):
        python = python.relative_to(ROOT)
    command = f"{taskset()}{python} bench/bm25_engines.py " + " ".join(sys.argv[1:])
    run = {"command": command, "date": time.strftime("%Y-%m-%d"), "pinning": pinning()}
    report: dict[str, Any] = {"runs": [run], "versions": versions(), "skipped": skipped}
    report["rows"], report["quality"] = rows, found
    if args.out is not None and args.append and args.out.exists():
        old = json.loads(args.out.read_text())
        done = {(r["engine"], r["size"]) for r in rows}
        report["runs"] = old["runs"] + report["runs"]
        report["rows"] = [r for r in old["rows"] if (r["engine"], r["size"]) not in done] + rows
        redone = {q["engine"] for q in found}
        report["quality"] = [q for q in old["quality"] if q["engine"] not in redone] + found
    text = render(report)
    print(text)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
