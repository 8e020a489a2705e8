"""POST /ask."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from rag.models import Answer
from service.schemas import AskRequest
from service.services import QAService

router = APIRouter(tags=["questions"])


def qa_service(request: Request) -> QAService:
    service: QAService = request.app.state.qa
    return service


@router.post("/ask", response_model=Answer, summary="Answer a question with cited spans")
def ask(body: AskRequest, qa: Annotated[QAService, Depends(qa_service)]) -> Answer:
    return qa.ask(body.question, body.top_k, body.filters)
