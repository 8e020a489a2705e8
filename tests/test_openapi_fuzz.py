"""The OpenAPI document tells the truth: schemathesis against the app started as
``make serve`` starts it (``rag serve``), with a write key, every phase (examples, coverage,
fuzzing, stateful) and every check: no server error, every response in its documented
schema with a documented status, schema-valid requests accepted and schema-invalid ones
refused, created documents readable at the URL they are given, deleted ones gone.

Bounded by ``MAX_EXAMPLES`` per operation and a fixed seed (a failure reproduces with the
command printed in the output: ``st replay <id>``, or the same command line).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from service.testing import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.model
CONFIG = ROOT / "tests" / "openapi" / "schemathesis.toml"
MAX_EXAMPLES = 20
SEED = 1
KEY = "fuzz-key"


def _serve(index_root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RAG_INDEX_ROOT": str(index_root),
        "RAG_API_KEYS": KEY,
        "RAG_PORT": str(port),
        "RAG_LOG_REQUESTS": "false",
        # Uploads over 200 characters go through background jobs, so GET /jobs is fuzzed too.
        "RAG_SYNC_INGEST_MAX_CHARS": "200",
    }
    rag = Path(sys.executable).parent / "rag"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(rag), "serve"], env=env, cwd=ROOT, stdout=fh, stderr=fh)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rag serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("rag serve was not ready in time")


def test_schemathesis_finds_nothing(seed_index_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "index"
    shutil.copytree(seed_index_root, root)
    port = free_port()
    server = _serve(root, port, tmp_path / "server.log")
    try:
        st = Path(sys.executable).parent / "schemathesis"
        cmd = [
            str(st),
            "--config-file",
            str(CONFIG),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--header",
            f"Authorization: Bearer {KEY}",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--generation-database",
            "none",
            "--no-color",
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=1500)
    finally:
        server.terminate()
        server.wait(timeout=60)
    out = run.stdout + run.stderr
    generated = re.search(r"(\d+) generated", out)
    print(out[-3000:])
    assert generated is not None and int(generated.group(1)) > 0, out[-3000:]
    assert run.returncode == 0, out[-6000:]
    log = (tmp_path / "server.log").read_text()
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
