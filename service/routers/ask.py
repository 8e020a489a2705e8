"""POST /ask and POST /ask/batch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from service.openapi import errors
from service.routers.deps import qa_service
from service.schemas import AnswerOut, AskBatchRequest, AskBatchResponse, AskRequest
from service.security import require_read_key
from service.services import QAService

router = APIRouter(tags=["questions"], dependencies=[Depends(require_read_key)])


@router.post(
    "/ask",
    response_model=AnswerOut,
    summary="Answer a question with cited spans",
    responses=errors(409, 503, 504),
)
def ask(body: AskRequest, qa: Annotated[QAService, Depends(qa_service)]) -> AnswerOut:
    answer = qa.ask(body.question, body.top_k, body.filters, answers=body.answers)
    return AnswerOut.model_validate(answer)


@router.post(
    "/ask/batch",
    response_model=AskBatchResponse,
    summary="Answer many questions at once (batched encoder)",
    responses=errors(409, 503),
)
def ask_batch(
    body: AskBatchRequest, qa: Annotated[QAService, Depends(qa_service)]
) -> AskBatchResponse:
    answers = qa.ask_batch(body.questions, body.top_k, body.filters, body.answers)
    return AskBatchResponse(answers=[AnswerOut.model_validate(a) for a in answers])
