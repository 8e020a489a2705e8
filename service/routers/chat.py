"""OpenAI-compatible endpoints: GET /v1/models, POST /v1/chat/completions (streaming too)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from service.openai import (
    ChatCompletion,
    ChatRequest,
    ModelList,
    to_openai_models,
    to_openai_response,
    to_openai_sse_stream,
)
from service.openapi import errors
from service.routers.deps import chat_service
from service.security import require_read_key
from service.services import ChatService

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_read_key)])
Chat = Annotated[ChatService, Depends(chat_service)]


@router.get("/models", response_model=ModelList, summary="The one model this service serves")
def models(chat: Chat) -> ModelList:
    return to_openai_models(chat.model_id)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="Chat completion: the extractive answer with citation markers",
    responses={200: {"content": {"text/event-stream": {}}}, **errors(409, 503, 504)},
)
async def chat_completions(body: ChatRequest, chat: Chat) -> ChatCompletion | StreamingResponse:
    # The answer is computed before the first event, so a bad request is a plain 4xx, not
    # a broken stream.
    reply = await run_in_threadpool(
        chat.reply, body.messages, body.top_k, body.filters, body.citations_in_text, body.answers
    )
    if body.stream:
        return StreamingResponse(
            to_openai_sse_stream(reply),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return to_openai_response(reply)
