"""What serving many collections costs: start-up, memory, threads, and a question's time in
one collection beside the default, at 1, 10 and 100 collections (model-free: the fake
embedder and the sentence reader, so the figures are the service's own overhead).

    .venv/bin/python bench/collections_scale.py [--counts 1,10,100] [--questions 50]

Each collection holds a few small documents. Reported per count: seconds to start the app
(every collection opened and checked), the process's RSS growth over the app before
collections, its thread count, and the median POST /ask time in the default collection and
in the last collection (side by side, alternating).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from rag.models import Document  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from service.app import create_app  # noqa: E402
from tests.conftest import LOCAL, FakeEmbedder, unit_settings  # noqa: E402

TEXTS = [
    "Paris is the capital of France. It lies on the Seine.",
    "Oslo is the capital of Norway. It lies on a fjord.",
    "Lima is the capital of Peru. It lies near the Pacific.",
]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(root: Path, count: int) -> None:
    """``count`` collections of three documents each, built as the CLI builds an index."""
    for i in range(count):
        settings = unit_settings(index_root=root, index_name=f"c{i:03d}")
        pipe = Pipeline(settings, embedder=FakeEmbedder())
        pipe.ingest([Document(f"d{j}", t) for j, t in enumerate(TEXTS)])
        pipe.close()


def measure(count: int, questions: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, count)
        settings = unit_settings(
            index_root=root, abstain_threshold=0.0, api_keys=["k"], log_requests=False
        )
        pipeline = Pipeline(settings, embedder=FakeEmbedder())
        before = rss_mb()
        threads_before = threading.active_count()
        t0 = time.perf_counter()
        with TestClient(
            create_app(settings, warm_up=False, pipeline=pipeline), base_url=LOCAL
        ) as c:
            started = time.perf_counter() - t0
            c.post(
                "/documents",
                json={"id": "p", "text": TEXTS[0]},
                headers={"Authorization": "Bearer k"},
            )
            grown, threads = rss_mb() - before, threading.active_count() - threads_before
            times: dict[str, list[float]] = {"default": [], "last": []}
            last = f"/collections/c{count - 1:03d}"
            for _ in range(questions):
                for name, prefix in (("default", ""), ("last", last)):
                    q0 = time.perf_counter()
                    r = c.post(f"{prefix}/ask", json={"question": "What is the capital of France?"})
                    times[name].append((time.perf_counter() - q0) * 1000)
                    assert r.status_code == 200, r.text
        return {
            "collections": count,
            "start_s": round(started, 3),
            "rss_growth_mb": round(grown, 1),
            "threads": threads,
            "ask_ms_p50_default": round(statistics.median(times["default"]), 2),
            "ask_ms_p50_collection": round(statistics.median(times["last"]), 2),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="1,10,100")
    ap.add_argument("--questions", type=int, default=50)
    args = ap.parse_args()
    for count in (int(x) for x in args.counts.split(",")):
        print(json.dumps(measure(count, args.questions)), flush=True)


if __name__ == "__main__":
    main()
