"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rag.pipeline import QuestionError
from rag.settings import Settings
from rag.store import StoreError
from service.middleware import FormDefaultIsJSON
from service.routers import ask, health
from service.services import QAService

log = logging.getLogger("rag.service")


def create_app(settings: Settings | None = None, warm_up: bool = True) -> FastAPI:
    """Build the app; ``warm_up`` loads the model at start-up so the first answer is fast."""
    settings = settings or Settings()
    qa = QAService(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            qa.warm_up()
        yield

    app = FastAPI(
        title="rag: extractive question answering",
        description="Answers are verbatim spans of the indexed documents, with citations "
        "whose quote equals document.text[start:end].",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.qa = qa
    app.state.settings = settings

    @app.exception_handler(QuestionError)
    async def question_error(_: Request, exc: QuestionError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        messages = [
            "the request body is not valid JSON"
            if e.get("type") == "json_invalid"
            else f"{'.'.join(str(x) for x in e['loc'] if x != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": "; ".join(messages)})

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    app.add_middleware(FormDefaultIsJSON)
    app.include_router(ask.router)
    app.include_router(health.router)
    return app
