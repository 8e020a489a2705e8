"""Background ingest jobs: a persisted job table and one worker thread.

Jobs are recorded in ``<index>/jobs.sqlite``. A job is reported ``done`` only after the
pipeline committed all of its documents in one atomic store write, so a service restarted
after a crash serves every document of every job it reported done. Jobs that were queued or
running when the process died are marked ``failed`` (interrupted) at the next start: their
documents were never committed, and the client can resubmit them.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from rag.models import Document, IngestReport
from service.queues import drain

JOBS_FILE = "jobs.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    documents INTEGER NOT NULL,
    chunks_total INTEGER,
    chunks_done INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT
);
"""


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


@dataclass(frozen=True, slots=True)
class Job:
    """An ingest job as stored."""

    id: str
    state: JobState
    created: float
    documents: int
    started: float | None = None
    finished: float | None = None
    chunks_total: int | None = None
    chunks_done: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    error: str | None = None


class JobStore:
    """The job table. Thread-safe (one short-lived connection per call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        conn.executescript(_SCHEMA)
        return conn

    def _exec(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            conn = self._connect()
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()

    def create(self, documents: int) -> Job:
        job = Job(uuid.uuid4().hex, JobState.queued, time.time(), documents)
        self._exec(
            "INSERT INTO jobs (id, state, created, documents) VALUES (?, ?, ?, ?)",
            (job.id, job.state.value, job.created, documents),
        )
        return job

    def started(self, job_id: str) -> None:
        self._exec(
            "UPDATE jobs SET state = ?, started = ? WHERE id = ?",
            (JobState.running.value, time.time(), job_id),
        )

    def planned(self, job_id: str, chunks: int) -> None:
        self._exec("UPDATE jobs SET chunks_total = ? WHERE id = ?", (chunks, job_id))

    def progressed(self, job_id: str, chunks: int) -> None:
        self._exec("UPDATE jobs SET chunks_done = chunks_done + ? WHERE id = ?", (chunks, job_id))

    def finished(self, job_id: str, report: IngestReport) -> None:
        result = {"added": report.added, "updated": report.updated, "unchanged": report.unchanged}
        self._exec(
            "UPDATE jobs SET state = ?, finished = ?, result = ? WHERE id = ?",
            (JobState.done.value, time.time(), json.dumps(result), job_id),
        )

    def failed(self, job_id: str, error: str) -> None:
        self._exec(
            "UPDATE jobs SET state = ?, finished = ?, error = ? WHERE id = ?",
            (JobState.failed.value, time.time(), error, job_id),
        )

    def mark_interrupted(self, committed: str | None = None) -> int:
        """Jobs a previous process left queued or running: failed, their writes never made;
        except ``committed``, the job the index says it committed (the process died between
        that commit and recording it here), which is done."""
        if committed is not None:
            self._exec(
                "UPDATE jobs SET state = ?, finished = ?, result = ? WHERE id = ? AND state = ?",
                (
                    JobState.done.value,
                    time.time(),
                    json.dumps({"added": [], "updated": [], "unchanged": []}),
                    committed,
                    JobState.running.value,
                ),
            )
        rows = self._exec(
            "UPDATE jobs SET state = ?, finished = ?, error = ? WHERE state IN (?, ?) RETURNING id",
            (
                JobState.failed.value,
                time.time(),
                "interrupted: the service stopped before this ingest was committed; "
                "none of its documents were stored, submit them again",
                JobState.queued.value,
                JobState.running.value,
            ),
        )
        return len(rows)

    def get(self, job_id: str) -> Job | None:
        rows = self._exec(
            "SELECT id, state, created, documents, started, finished, chunks_total, "
            "chunks_done, result, error FROM jobs WHERE id = ?",
            (job_id,),
        )
        if not rows:
            return None
        r = rows[0]
        result = json.loads(str(r[8])) if r[8] else {}
        return Job(
            id=str(r[0]),
            state=JobState(str(r[1])),
            created=float(r[2]),  # type: ignore[arg-type]
            documents=int(r[3]),  # type: ignore[call-overload]
            started=None if r[4] is None else float(r[4]),  # type: ignore[arg-type]
            finished=None if r[5] is None else float(r[5]),  # type: ignore[arg-type]
            chunks_total=None if r[6] is None else int(r[6]),  # type: ignore[call-overload]
            chunks_done=int(r[7]),  # type: ignore[call-overload]
            added=result.get("added", []),
            updated=result.get("updated", []),
            unchanged=result.get("unchanged", []),
            error=None if r[9] is None else str(r[9]),
        )

    def active(self) -> int:
        rows = self._exec(
            "SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)",
            (JobState.queued.value, JobState.running.value),
        )
        count: int = rows[0][0]  # type: ignore[assignment]
        return count


STOPPED_BEFORE_START = (
    "the service stopped before this ingest started; none of its documents were stored, "
    "submit them again"
)


class QueueFull(RuntimeError):
    """No room for another ingest job (HTTP 429)."""


# (job id, documents, progress, plan) -> report
IngestFn = Callable[
    [str, Sequence[Document], Callable[[int], None], Callable[[int], None]], IngestReport
]


class IngestWorker:
    """One daemon thread running queued ingest jobs in order."""

    def __init__(
        self,
        jobs: JobStore,
        ingest: IngestFn,
        on_finish: Callable[[JobState], None] | None = None,
    ) -> None:
        self.jobs = jobs
        self.ingest = ingest
        self.on_finish = on_finish
        self._queue: queue.Queue[tuple[str, Sequence[Document]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        with self._lock:
            self._stopping = False
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
                self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop without working through the queue: jobs not yet started fail now ("submit
        again"); the running one gets ``timeout`` seconds to commit. A job cut off by the
        process exit stores nothing (one atomic commit) and is marked interrupted at the
        next start."""
        with self._lock:
            self._stopping = True
            for item in drain(self._queue):
                if item is not None:
                    self.jobs.failed(item[0], STOPPED_BEFORE_START)
            if self._thread is not None:
                self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, documents: Sequence[Document], max_active: int | None = None) -> Job:
        """Queue a job; ``QueueFull`` when ``max_active`` jobs are already queued or running."""
        with self._lock:
            if self._stopping:
                raise QueueFull("the service is shutting down: submit again later")
            if max_active is not None and self.jobs.active() >= max_active:
                raise QueueFull(
                    f"{max_active} ingest jobs are queued or running: submit again when one "
                    "has finished (GET /jobs/{id})"
                )
            job = self.jobs.create(len(documents))
            self._queue.put((job.id, documents))
        self._ensure_thread()
        return job

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            job_id, documents = item
            self.jobs.started(job_id)
            state = JobState.done
            try:
                report = self.ingest(
                    job_id,
                    documents,
                    lambda n, j=job_id: self.jobs.progressed(j, n),  # type: ignore[misc]
                    lambda n, j=job_id: self.jobs.planned(j, n),  # type: ignore[misc]
                )
                self.jobs.finished(job_id, report)
            except Exception as exc:  # a job's failure is its record, not the worker's end
                state = JobState.failed
                self.jobs.failed(job_id, f"{type(exc).__name__}: {exc}")
            if self.on_finish is not None:
                self.on_finish(state)
