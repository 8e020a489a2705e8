"""The question-answering service: lifecycle, readiness and questions.

One ``QAService`` per app holds the pipeline, opens and checks the index at start-up and
says whether it can be served. The job table and the ingest worker start and stop with it:
jobs interrupted by a crash are failed at start against the commit stamp the worker writes
(``COMMITTED_JOB_KEY``), which is one invariant, so both sides of it live here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rag.models import Answer, Document, IngestReport
from rag.pipeline import Pipeline, QuestionError
from rag.settings import Settings
from rag.store import StoreError
from service.batching import AskBatcher
from service.jobs import JOBS_FILE, IngestWorker, JobState, JobStore
from service.memory import HeapKeeper
from service.metrics import Metrics

log = logging.getLogger("rag.service")
# Manifest key naming the last ingest job whose documents were committed.
COMMITTED_JOB_KEY = "committed_job"


class NotReady(RuntimeError):
    """The index cannot be served (damaged, not loaded yet): HTTP 503 with the reason."""


class QAService:
    """Answers questions over the configured index; one per app."""

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
        self.metrics.bind_answerable_share(self.pipeline.answerable_share)
        self.heap = HeapKeeper(
            settings.heap_trim_growth_mb << 20,
            on_trim=lambda reason: self.metrics.heap_trims.labels(reason).inc(),
        )
        self.batcher = AskBatcher(
            self._ask_batch,
            settings.ask_max_batch,
            settings.ask_batch_workers,
            on_idle=self.heap.idle if settings.heap_trim_idle_s > 0 else None,
            idle_s=settings.heap_trim_idle_s,
            after_batch=self.heap.after_batch,
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
        self._ready = False
        self.not_ready_reason = "shutting down"
        self.batcher.stop(timeout=grace)
        self.worker.stop(timeout=grace)
        self.pipeline.close(wait_merges=False)

    @property
    def ready(self) -> bool:
        return self._ready

    def counts(self) -> tuple[int, int]:
        return self.pipeline.counts() if self._ready else (0, 0)

    def document_count(self) -> int | None:
        if not self._ready or not self.pipeline.exists():
            return None
        return self.pipeline.counts()[0]

    # ---- ingest jobs (run by the worker) -----------------------------------------------
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
        answers: int = 1,
    ) -> Answer:
        self.require_ready()
        self._check_top_k(top_k)
        self.pipeline.check_answers(answers)
        if self.settings.ask_batching:
            # A bad question or filter fails alone, before it can join a batch.
            self.pipeline.check_question(question)
            self.pipeline.check_filters(filters)
            answer = self.batcher.ask(
                question, top_k, filters, context, timeout=self.settings.question_timeout_s
            )
            # Batches compose the most answers anyone may ask for; the first n of them are
            # exactly the n best (the choice is greedy, best first).
            answer = dataclasses.replace(answer, answers=answer.answers[:answers])
        else:
            answer = self.pipeline.ask(
                question, top_k=top_k, filters=filters, context=context, answers=answers
            )
        self.metrics.observe_answer(answer.answered)
        return answer

    def _ask_batch(
        self,
        questions: Sequence[str],
        top_k: int | None,
        filters: Mapping[str, Any] | None,
        contexts: Sequence[str | None],
    ) -> list[Answer]:
        return self.pipeline.ask_batch(
            questions,
            top_k=top_k,
            filters=filters,
            contexts=contexts,
            answers=self.settings.max_answers,
        )

    def ask_batch(
        self,
        questions: Sequence[str],
        top_k: int | None,
        filters: Mapping[str, Any] | None,
        answers: int = 1,
    ) -> list[Answer]:
        self.require_ready()
        self._check_top_k(top_k)
        self.pipeline.check_answers(answers)
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
        found = self.pipeline.ask_batch(questions, top_k=top_k, filters=filters, answers=answers)
        for a in found:
            self.metrics.observe_answer(a.answered)
        return found
