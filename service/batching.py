"""Micro-batching of concurrent questions: one encoder pass for the questions that arrive
while the previous batch is being answered.

Under load, sixteen requests each encoding 1 query and ~8 sentences on their own would
oversubscribe the cores with sixteen concurrent model calls; one worker thread answering
them together runs the model once per batch, with larger (cheaper per text) batches. With a
single client nothing waits: a question arriving at an idle worker is answered at once.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from rag.models import Answer
from service.queues import drain

log = logging.getLogger(__name__)


class Timeout(RuntimeError):
    """A question not answered within its time budget (HTTP 504)."""


class Stopping(RuntimeError):
    """The service is shutting down and takes no more questions (HTTP 503)."""


AskBatchFn = Callable[
    [Sequence[str], int | None, Mapping[str, Any] | None, Sequence[str | None]], list[Answer]
]


@dataclass(frozen=True, slots=True)
class _Request:
    question: str
    top_k: int | None
    filters: Mapping[str, Any] | None
    context: str | None
    future: Future[Answer]

    @property
    def group(self) -> str:
        """Requests that can share one ``ask_batch`` call (same depth and filters)."""
        return json.dumps([self.top_k, self.filters], sort_keys=True, default=str)


class AskBatcher:
    """``workers`` daemon threads draining one queue of questions into ``ask_batch`` calls.

    Two workers on two cores let one batch retrieve (SQLite, FAISS) while another encodes.
    ``on_idle`` runs on a worker once the queue has stayed empty for ``idle_s`` seconds after
    a batch (a pause in the traffic, never between back-to-back questions: e.g. returning
    freed memory to the OS, whose pages the next question would fault in again);
    ``after_batch`` runs on the worker after each batch's answers are handed over (e.g.
    the same, when memory has grown by enough to be worth it).
    """

    def __init__(
        self,
        ask_batch: AskBatchFn,
        max_batch: int,
        workers: int = 1,
        on_idle: Callable[[], object] | None = None,
        idle_s: float = 1.0,
        after_batch: Callable[[], object] | None = None,
    ) -> None:
        self.ask_batch = ask_batch
        self.on_idle = on_idle
        self.after_batch = after_batch
        self.idle_s = idle_s
        self.max_batch = max_batch
        self.workers = workers
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = False

    def _ensure_started(self) -> None:
        with self._lock:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"ask-batcher-{i}", daemon=True)
                    for i in range(self.workers)
                ]
                for t in self._threads:
                    t.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the workers: questions still queued fail at once with ``Stopping`` (their
        callers get 503), the batches being answered finish within ``timeout``."""
        with self._lock:
            threads, self._threads = self._threads, []
            self._stopping = True
        for item in drain(self._queue):
            if item is not None and item.future.set_running_or_notify_cancel():
                item.future.set_exception(Stopping("the service is shutting down"))
        for _ in threads:
            self._queue.put(None)
        for t in threads:
            t.join(timeout)

    def ask(
        self,
        question: str,
        top_k: int | None,
        filters: Mapping[str, Any] | None,
        context: str | None,
        timeout: float | None = None,
    ) -> Answer:
        """Answer one question, batched with whatever else is waiting; blocks until done,
        or raises ``Timeout`` after ``timeout`` seconds (the question is dropped if it has
        not started)."""
        if self._stopping:
            raise Stopping("the service is shutting down")
        self._ensure_started()
        future: Future[Answer] = Future()
        self._queue.put(_Request(question, top_k, filters, context, future))
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()  # a worker skips it if it has not started it yet
            raise Timeout(f"no answer within {timeout:g} s: the service is busy") from None

    def _run(self) -> None:
        answered = False  # since the last idle call
        while True:
            try:
                if answered and self.on_idle is not None:
                    first = self._queue.get(timeout=self.idle_s)
                else:
                    first = self._queue.get()
            except queue.Empty:
                assert self.on_idle is not None
                try:
                    self.on_idle()
                except Exception:  # housekeeping: never the end of a worker
                    log.exception("idle work failed")
                answered = False
                continue
            answered = True
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # a stop for this worker: finish the batch, then exit
                    stop = True
                    break
                batch.append(item)
            groups: dict[str, list[_Request]] = {}
            for r in batch:
                groups.setdefault(r.group, []).append(r)
            for requests in groups.values():
                self._answer(requests)
            if self.after_batch is not None:
                try:
                    self.after_batch()
                except Exception:  # housekeeping: never the end of a worker
                    log.exception("work after a batch failed")
            if stop:
                return

    def _answer(self, requests: list[_Request]) -> None:
        # Questions whose caller gave up (timed out) before they started are skipped.
        requests = [r for r in requests if r.future.set_running_or_notify_cancel()]
        if not requests:
            return
        try:
            answers = self.ask_batch(
                [r.question for r in requests],
                requests[0].top_k,
                requests[0].filters,
                [r.context for r in requests],
            )
        except Exception as exc:
            if len(requests) == 1:
                requests[0].future.set_exception(exc)
                return
            # One bad question must not fail its batch-mates: answer each on its own, so
            # that only the one that fails gets the error.
            for r in requests:
                self._answer_alone(r)
            return
        for r, a in zip(requests, answers, strict=True):
            r.future.set_result(a)

    def _answer_alone(self, r: _Request) -> None:
        try:
            answer = self.ask_batch([r.question], r.top_k, r.filters, [r.context])[0]
        except Exception as exc:
            r.future.set_exception(exc)
            return
        r.future.set_result(answer)
