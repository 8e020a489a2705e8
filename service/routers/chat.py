"""OpenAI-compatible endpoints: GET /v1/models, POST /v1/chat/completions (streaming too)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
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
from service.routers.deps import collections
from service.security import authorize, readable, require_any_read_key
from service.services import Collections

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_any_read_key)])
Registry = Annotated[Collections, Depends(collections)]


@router.get(
    "/models",
    response_model=ModelList,
    summary="The models: the default collection's bare id, then one per collection",
)
def models(request: Request, registry: Registry) -> ModelList:
    ids = [registry.settings.chat_model_id] if readable(request, registry.default_name) else []
    ids += [registry.model_id(c.name) for c in registry if readable(request, c.name)]
    return to_openai_models(ids)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="Chat completion: the extractive answer with citation markers",
    responses={200: {"content": {"text/event-stream": {}}}, **errors(403, 404, 409, 503, 504)},
)
async def chat_completions(
    request: Request, body: ChatRequest, registry: Registry
) -> ChatCompletion | StreamingResponse:
    # The model names the collection ("<chat_model_id>:<name>"; any other: the default).
    # The key's scope is checked before the name is looked up: a key outside it learns
    # nothing about which collections exist.
    name = registry.name_for_model(body.model)
    authorize(request, name)
    chat = registry.get(name).chat
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
