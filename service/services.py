"""The service layer: what the routers call. Logic lives here, not in the routers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rag.models import Answer
from rag.pipeline import Pipeline
from rag.settings import Settings


class QAService:
    """Answers questions from the configured index; one per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pipeline = Pipeline(settings)

    def warm_up(self) -> None:
        self.pipeline.warm_up()

    def ask(self, question: str, top_k: int | None, filters: Mapping[str, Any] | None) -> Answer:
        return self.pipeline.ask(question, top_k=top_k, filters=filters)

    def document_count(self) -> int | None:
        store = self.pipeline.store
        return store.counts()[0] if store.exists() else None
