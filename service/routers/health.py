"""Operations: GET /health (alive), GET /ready (model warm, index open), GET /metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from service.routers.deps import qa_service
from service.schemas import Health, Ready
from service.services import QAService

router = APIRouter(tags=["operations"])
QA = Annotated[QAService, Depends(qa_service)]


@router.get("/health", response_model=Health, summary="Liveness, with the document count")
def health(qa: QA) -> Health:
    return Health(status="ok", documents=qa.document_count())


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness: 200 once the model is warm and the index open, else 503",
    responses={503: {"model": Ready}},
)
def ready(qa: QA) -> Response:
    if not qa.ready:
        body = Ready(status="not ready", reason=qa.not_ready_reason)
        return JSONResponse(body.model_dump(), status_code=503)
    docs, chunks = qa.counts()
    return JSONResponse(Ready(status="ready", documents=docs, chunks=chunks).model_dump())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(qa: QA) -> Response:
    return Response(qa.metrics.render(), media_type=qa.metrics.content_type)
