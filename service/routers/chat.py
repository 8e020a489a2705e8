"""OpenAI-compatible endpoints: GET /v1/models, POST /v1/chat/completions (streaming too)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from service.chat import ChatService
from service.openapi import errors
from service.routers.deps import chat_service
from service.schemas import ChatCompletion, ChatRequest, ModelList
from service.security import require_read_key

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_read_key)])
Chat = Annotated[ChatService, Depends(chat_service)]


@router.get("/models", response_model=ModelList, summary="The one model this service serves")
def models(chat: Chat) -> ModelList:
    return chat.models()


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="Chat completion: the extractive answer with citation markers",
    responses={200: {"content": {"text/event-stream": {}}}, **errors(409, 503, 504)},
)
async def chat_completions(body: ChatRequest, chat: Chat) -> ChatCompletion | StreamingResponse:
    if body.stream:
        events = await run_in_threadpool(chat.stream, body)
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return await run_in_threadpool(chat.complete, body)
