"""The service layer: what the routers call. Logic lives here, not in the routers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag.ingest import LoadError, load_bytes
from rag.models import Answer, Document, DocumentInfo, IngestReport
from rag.pipeline import Pipeline, QuestionError
from rag.settings import Settings
from rag.store import StoreBusy, StoreError
from rag.validation import InvalidInput, check_document
from service.batching import AskBatcher
from service.jobs import JOBS_FILE, IngestWorker, Job, JobState, JobStore
from service.metrics import Metrics

log = logging.getLogger("rag.service")
# Manifest key naming the last ingest job whose documents were committed.
COMMITTED_JOB_KEY = "committed_job"


class NotFound(LookupError):
    """A document, job or span the request names does not exist (HTTP 404)."""


class UnsupportedUpload(ValueError):
    """An upload of a type the loaders do not read (HTTP 415)."""


class BadDocument(ValueError):
    """A document the service will not store (HTTP 422), with the reason."""


class NotReady(RuntimeError):
    """The index cannot be served (damaged, not loaded yet): HTTP 503 with the reason."""


class BadSpan(LookupError):
    """A span that is not inside its document (HTTP 404: no such span)."""


@dataclass(frozen=True, slots=True)
class SpanView:
    """A cited span with context on each side, for a frontend to show a citation."""

    doc_id: str
    title: str
    start: int
    end: int
    quote: str
    context_start: int
    context_end: int
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class Submitted:
    """What POST /documents did: ingested now (``report``) or queued (``job``)."""

    documents: list[Document]
    report: IngestReport | None = None
    job: Job | None = None


class QAService:
    """Answers questions and manages the documents of the configured index; one per app."""

    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, pipeline: Pipeline | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.pipeline = pipeline or Pipeline(settings)
        self.jobs = JobStore(settings.index_dir / JOBS_FILE)
        self.worker = IngestWorker(self.jobs, self._ingest_job, self._job_finished)
        self._ready = False
        self.not_ready_reason = "starting: the model is not loaded yet"
        self.metrics.bind_index(self.counts)
        self.batcher = AskBatcher(
            self._ask_batch, settings.ask_max_batch, settings.ask_batch_workers
        )

    # ---- lifecycle ---------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the models, then start (see ``start``)."""
        self.pipeline.warm_up()
        self.start()

    def start(self) -> None:
        """Open (or create) and check the index, fail interrupted jobs, start the ingest
        worker. A damaged index leaves the service up but not ready: /ready and every
        route that needs the index answer 503 with the reason, never a 500."""
        try:
            self.pipeline.open_index()
        except StoreError as exc:
            self.not_ready_reason = str(exc)
            log.error("the index cannot be served: %s", exc)
            return
        self.jobs.mark_interrupted(committed=self.pipeline.manifest().get(COMMITTED_JOB_KEY))
        self.worker.start()
        self._ready = True

    def require_ready(self) -> None:
        """NotReady (503) unless the index was opened and checked."""
        if not self._ready:
            raise NotReady(self.not_ready_reason)

    def shutdown(self) -> None:
        """Stop without working through queues: waiting questions get 503, jobs not yet
        started fail ("submit again"), a running job gets ``shutdown_grace_s`` to commit."""
        grace = self.settings.shutdown_grace_s
        self.batcher.stop(timeout=grace)
        self.worker.stop(timeout=grace)
        self.pipeline.close()

    @property
    def ready(self) -> bool:
        return self._ready

    def counts(self) -> tuple[int, int]:
        return self.pipeline.counts() if self._ready else (0, 0)

    def document_count(self) -> int | None:
        if not self._ready or not self.pipeline.exists():
            return None
        return self.pipeline.counts()[0]

    # ---- questions ---------------------------------------------------------------------
    def _check_top_k(self, top_k: int | None) -> None:
        if top_k is not None and not 1 <= top_k <= self.settings.max_top_k:
            raise QuestionError(f"top_k must be between 1 and {self.settings.max_top_k}")

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        context: str | None = None,
    ) -> Answer:
        self.require_ready()
        self._check_top_k(top_k)
        if self.settings.ask_batching:
            # A bad question or filter fails alone, before it can join a batch.
            self.pipeline.check_question(question)
            self.pipeline.check_filters(filters)
            answer = self.batcher.ask(
                question, top_k, filters, context, timeout=self.settings.question_timeout_s
            )
        else:
            answer = self.pipeline.ask(question, top_k=top_k, filters=filters, context=context)
        self.metrics.observe_answer(answer.answered)
        return answer

    def _ask_batch(
        self,
        questions: Sequence[str],
        top_k: int | None,
        filters: Mapping[str, Any] | None,
        contexts: Sequence[str | None],
    ) -> list[Answer]:
        return self.pipeline.ask_batch(questions, top_k=top_k, filters=filters, contexts=contexts)

    def ask_batch(
        self, questions: Sequence[str], top_k: int | None, filters: Mapping[str, Any] | None
    ) -> list[Answer]:
        self.require_ready()
        self._check_top_k(top_k)
        limit = self.settings.max_batch_questions
        if not questions:
            raise QuestionError("questions: give at least one question")
        if len(questions) > limit:
            raise QuestionError(f"questions: {len(questions)} given; the limit is {limit}")
        for i, q in enumerate(questions):
            try:
                self.pipeline.check_question(q)
            except QuestionError as exc:
                raise QuestionError(f"questions[{i}]: {exc}") from None
        answers = self.pipeline.ask_batch(questions, top_k=top_k, filters=filters)
        for a in answers:
            self.metrics.observe_answer(a.answered)
        return answers

    # ---- documents ---------------------------------------------------------------------
    def submit(self, documents: list[Document]) -> Submitted:
        """Ingest small single documents now; queue the rest for the background worker."""
        self.require_ready()
        if not documents:
            raise BadDocument("the upload holds no document")
        limit = self.settings.max_upload_records
        if len(documents) > limit:
            raise BadDocument(f"{len(documents)} documents in one upload; the limit is {limit}")
        seen: set[str] = set()
        for d in documents:
            try:
                check_document(d.id, d.text, d.title, d.metadata, self.settings.max_metadata_depth)
            except InvalidInput as exc:
                raise BadDocument(f"document {d.id[:80]!r}: {exc}") from None
            if not d.text.strip():
                raise BadDocument(f"document {d.id!r} has no text")
            if d.id in seen:
                raise BadDocument(f"document id {d.id!r} appears twice in the upload")
            seen.add(d.id)
        small = (
            len(documents) == 1 and len(documents[0].text) <= self.settings.sync_ingest_max_chars
        )
        # A small document is ingested now unless a writer holds the index (a job here, or
        # `rag ingest` in another process): then it queues instead of waiting for it.
        if small:
            try:
                report = self.pipeline.ingest(documents, commit_every=None, wait=False)
                return Submitted(documents, report=report)
            except StoreBusy:
                pass
        job = self.worker.submit(documents, max_active=self.settings.max_queued_jobs)
        self.metrics.jobs_active.set(self.jobs.active())
        return Submitted(documents, job=job)

    def parse_upload(
        self,
        data: bytes,
        filename: str,
        doc_id: str | None,
        title: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> list[Document]:
        """Documents from an uploaded file; its name types it and names the document."""
        name = filename.replace("\\", "/").rsplit("/", 1)[-1]  # never a path, only a name
        suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        try:
            docs = load_bytes(data, suffix, doc_id or name, self.settings.max_upload_records)
        except LoadError as exc:
            if str(exc).startswith("unsupported file type"):
                raise UnsupportedUpload(f"{name}: {exc}") from None
            raise BadDocument(f"{name}: {exc}") from None
        if suffix == ".jsonl" and (doc_id or title or metadata):
            raise BadDocument("id, title and metadata come from the records of a JSONL upload")
        if suffix != ".jsonl":
            d = docs[0]
            docs = [
                Document(
                    d.id,
                    d.text,
                    title if title is not None else d.title,
                    {**d.metadata, **(metadata or {})},
                )
            ]
        return docs

    def _ingest_job(
        self,
        job_id: str,
        documents: Sequence[Document],
        progress: Callable[[int], None],
        plan: Callable[[int], None],
    ) -> IngestReport:
        # One commit for the whole submission: it is stored entirely or not at all, and
        # the commit names the job, so a restart after it knows the job is done.
        return self.pipeline.ingest(
            documents,
            progress,
            commit_every=None,
            plan=plan,
            stamp={COMMITTED_JOB_KEY: job_id},
        )

    def _job_finished(self, state: JobState) -> None:
        self.metrics.jobs.labels(state.value).inc()
        self.metrics.jobs_active.set(self.jobs.active())

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    def list_documents(self, limit: int, offset: int) -> tuple[list[DocumentInfo], int]:
        self.require_ready()
        return self.pipeline.documents(limit, offset), self.pipeline.counts()[0]

    def document(self, doc_id: str) -> tuple[Document, DocumentInfo]:
        self.require_ready()
        found = self.pipeline.document_with_info(doc_id)
        if found is None:
            raise NotFound(f"no document {doc_id!r}")
        return found

    def delete(self, doc_id: str) -> None:
        self.require_ready()
        if not self.pipeline.delete(doc_id):
            raise NotFound(f"no document {doc_id!r}")

    def span(self, doc_id: str, start: int, end: int, context: int | None) -> SpanView:
        self.require_ready()
        doc = self.pipeline.document(doc_id)
        if doc is None:
            raise NotFound(f"no document {doc_id!r}")
        n = len(doc.text)
        if not 0 <= start <= end <= n:
            raise BadSpan(f"span {start}-{end} is not inside document {doc_id!r} ({n} characters)")
        width = self.settings.span_context_chars if context is None else context
        lo, hi = max(0, start - width), min(n, end + width)
        t = doc.text
        return SpanView(doc_id, doc.title, start, end, t[start:end], lo, hi, t[lo:start], t[end:hi])
