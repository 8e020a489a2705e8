"""Prometheus metrics of one app (its own registry, so that several apps never share)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Latency buckets (seconds) spanning a cached retrieval to a large synchronous ingest.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Label values come from this set only: a client inventing methods must not create series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Request counts and latencies by route, answers vs abstentions, index size, jobs."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rag_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.answers = Counter(
            "rag_answers", "Questions answered or abstained on", ["outcome"], registry=r
        )
        self.documents = Gauge("rag_index_documents", "Documents in the index", registry=r)
        self.chunks = Gauge("rag_index_chunks", "Chunks in the index", registry=r)
        self.jobs = Counter(
            "rag_ingest_jobs", "Background ingest jobs finished, by state", ["state"], registry=r
        )
        self.heap_trims = Counter(
            "rag_heap_trims",
            "Times the heap's freed memory was handed back to the OS, by reason (growth: "
            "between back-to-back questions; idle: after a pause)",
            ["reason"],
            registry=r,
        )
        self.jobs_active = Gauge(
            "rag_ingest_jobs_active", "Background ingest jobs queued or running", registry=r
        )
        self.answerable_share = Gauge(
            "rag_answerable_share",
            "The answerable share the next question is decided at, estimated from the "
            "questions asked (RAG_SPAN_ANSWERABLE_PRIOR=online); NaN when not estimated",
            registry=r,
        )

    def bind_index(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Read the index size at scrape time instead of tracking every write."""
        self.documents.set_function(lambda: float(counts()[0]))
        self.chunks.set_function(lambda: float(counts()[1]))

    def bind_answerable_share(self, share: Callable[[], float | None]) -> None:
        """Read the online answerable share at scrape time (None: not estimated, NaN)."""
        self.answerable_share.set_function(lambda: _or_nan(share()))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request; unknown methods are counted as ``OTHER``, and ``route`` is a
        route template (or "(unmatched)"), never the raw path."""
        method = method if method in HTTP_METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_answer(self, answered: bool) -> None:
        self.answers.labels("answered" if answered else "abstained").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
