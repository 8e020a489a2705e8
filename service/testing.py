"""Run the service in a child process under uvicorn and wait until it is ready.

Used by the tests and the load benchmark; also handy for a user's own integration tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180


@dataclass(frozen=True)
class RunningServer:
    """A uvicorn child process serving ``service.app:create_app`` at ``url``."""

    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(index_root: Path, api_key: str, log: Path, **env: str) -> RunningServer:
    """Start ``uvicorn service.app:create_app --factory`` on a free loopback port.

    Settings reach the app as RAG_* environment variables (``env`` adds more); its output
    goes to ``log``. Returns once GET /ready answers 200 (model warm, index open).
    """
    port = free_port()
    environ = {
        **os.environ,
        "RAG_INDEX_ROOT": str(index_root),
        "RAG_API_KEYS": api_key,
        "RAG_PORT": str(port),
        **env,
    }
    cmd = [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, env=environ, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2) as r:
                if r.status == 200:
                    return RunningServer(proc, url)
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server not ready in time: {log.read_text()[-2000:]}")
