"""``POST /ask`` latency of two configurations side by side, in one run.

    .venv/bin/python bench/ask_ab.py [--rounds 3] [--b-env RAG_RERANK=false]
    .venv/bin/python bench/ask_ab.py --a-tree /tmp/old_tree    (another checkout as "A")

Starts two ``rag serve`` processes over copies of the seed index (``index/default``; build
it with ``make index``; ``--index`` another one, e.g. a kept ``bench/store_scale.py`` index of
long passages), each configured by its environment (``--a-env`` / ``--b-env``,
``KEY=VALUE`` pairs) or run from another source tree (``--a-tree``: that checkout's code
and fit files, with this venv; its own ``index/default`` when it has one), and asks them
the seed gold set's questions in alternation, A then B then B then A..., for ``--rounds``
rounds, so both see the same machine load.
Reports p50/p95 end-to-end latency (client side, ms), each server's peak RSS and its heap
trims (/metrics). ``--squad N`` asks SQuAD v1.1 dev questions instead. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
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

from bench.common import percentile  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    index_root: Path, env: dict[str, str], tree: Path | None
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    full = {**os.environ, **env}
    cmd = [sys.executable, "-m", "rag.cli", "serve", "--index-root", str(index_root)]
    if tree is not None:
        full["PYTHONPATH"] = str(tree)
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=full,
        cwd=str(tree or ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server {cmd} did not start")


def _ask(url: str, question: str) -> float:
    body = json.dumps({"question": question}).encode()
    req = urllib.request.Request(url + "/ask", body, {"content-type": "application/json"})
    t0 = time.perf_counter()
    urllib.request.urlopen(req, timeout=120).read()
    return (time.perf_counter() - t0) * 1000


def _peak_rss(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return round(int(fields["VmHWM"].split()[0]) / 1024, 1)


def _heap_trims(url: str) -> dict[str, int]:
    """The server's heap trims so far by reason (its /metrics; empty for a tree without
    them)."""
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("rag_heap_trims_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = int(float(line.rsplit(" ", 1)[1]))
    return out


def _squad_questions(count: int) -> list[str]:
    """The first question of each of the first ``count`` SQuAD v1.1 dev paragraphs."""
    import gzip

    path = ROOT.parent / "shared" / "data" / "squad" / "dev-v1.1.json.gz"
    with gzip.open(path) as f:
        data = json.load(f)
    questions = [p["qas"][0]["question"] for a in data["data"] for p in a["paragraphs"]]
    return questions[:count]


def _env(pairs: list[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in pairs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--a-env", nargs="*", default=[])
    ap.add_argument("--b-env", nargs="*", default=[])
    ap.add_argument("--a-tree", type=Path, default=None, help="source tree A runs from")
    ap.add_argument("--gold", type=Path, default=ROOT / "eval" / "gold" / "seeds.jsonl")
    ap.add_argument(
        "--squad",
        type=int,
        default=0,
        help="ask the first question of each of the first N SQuAD v1.1 dev paragraphs "
        "(from ../shared) instead of the gold set's",
    )
    ap.add_argument(
        "--index",
        type=Path,
        default=ROOT / "index" / "default",
        help="index folder both servers serve a copy of (default: the seed index)",
    )
    args = ap.parse_args()

    if args.squad:
        questions = _squad_questions(args.squad)
    else:
        questions = [json.loads(line)["question"] for line in args.gold.read_text().splitlines()]
    source = args.index
    if not source.is_dir():
        raise SystemExit(f"no index at {source} (the seed index: run `make index` first)")
    work = Path(tempfile.mkdtemp(prefix="rag-ab-"))
    procs = []
    try:
        servers = {}
        for name, env, tree in (
            ("A", _env(args.a_env), args.a_tree),
            ("B", _env(args.b_env), None),
        ):
            root = work / name
            # A tree of its own serves its own build of the seed index (an older schema
            # than this checkout's, if that is what its code writes); any other index is
            # served as it is by both.
            seed = args.index.resolve() == (ROOT / "index" / "default").resolve()
            own = tree / "index" / "default" if tree is not None and seed else None
            shutil.copytree(own if own is not None and own.is_dir() else source, root / "default")
            proc, url = _start(root, env, tree)
            procs.append(proc)
            servers[name] = (proc, url)
        for _, url in servers.values():  # warm-up
            _ask(url, questions[0])
        times: dict[str, list[float]] = {"A": [], "B": []}
        for r in range(args.rounds):
            for i, q in enumerate(questions):
                order = ("A", "B") if (r + i) % 2 == 0 else ("B", "A")
                for name in order:
                    times[name].append(_ask(servers[name][1], q))
        result = {
            name: {
                "env": args.a_env if name == "A" else args.b_env,
                "tree": str(args.a_tree) if name == "A" and args.a_tree else str(ROOT),
                "asks": len(ts),
                "p50_ms": round(statistics.median(ts), 1),
                "p95_ms": round(percentile(ts, 95), 1),
                "peak_rss_mib": _peak_rss(servers[name][0].pid),
                "heap_trims": _heap_trims(servers[name][1]),
            }
            for name, ts in times.items()
        }
        result["ratio_p50_b_over_a"] = round(result["B"]["p50_ms"] / result["A"]["p50_ms"], 3)  # type: ignore[index]
        print(json.dumps(result, indent=2))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
