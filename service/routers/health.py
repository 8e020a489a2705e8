"""GET /health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from service.routers.ask import qa_service
from service.schemas import Health
from service.services import QAService

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, summary="Liveness, with the document count")
def health(qa: Annotated[QAService, Depends(qa_service)]) -> Health:
    return Health(status="ok", documents=qa.document_count())
