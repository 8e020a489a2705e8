"""The FastAPI application factory: ``create_app(settings)``."""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from rag.pipeline import Pipeline, QuestionError
from rag.settings import Settings
from rag.store import StoreError, StoreWriteFailed
from rag.validation import InvalidInput
from service import openapi
from service.batching import Stopping, Timeout
from service.jobs import QueueFull
from service.metrics import HTTP_METHODS, Metrics
from service.middleware import BodyLimit, FormDefaultIsJSON, RequestLog, TrustedHosts, access_log
from service.routers import ask, chat, collections, documents, health, pages
from service.routers.deps import collection_param
from service.routers.pages import STATIC_DIR
from service.schemas import validation_message
from service.security import KeyChecker, resolve_api_keys
from service.services import (
    BadCollection,
    BadDocument,
    BadSpan,
    CollectionConflict,
    Collections,
    NotFound,
    NotReady,
    QAService,
    UnsupportedUpload,
)

log = logging.getLogger("rag.service")


def _configure_logging() -> None:
    """One JSON line per request on stderr, and the service's own notices (unless the host
    app configured these loggers itself)."""
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


_OPENAI_ERROR_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def _error(
    request: Request, status: int, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """``{"detail": message}``; under /v1 also OpenAI's ``{"error": {...}}``, which its
    clients read the message from."""
    content: dict[str, object] = {"detail": detail}
    if request.url.path.startswith("/v1/"):
        kind = _OPENAI_ERROR_TYPES.get(
            status, "invalid_request_error" if status < 500 else "api_error"
        )
        content["error"] = {"message": detail, "type": kind, "param": None, "code": None}
    return JSONResponse(status_code=status, content=content, headers=headers)


# Service and library errors -> HTTP status; each becomes {"detail": message}.
ERROR_STATUS: dict[type[Exception], int] = {
    QuestionError: 422,
    BadDocument: 422,
    BadCollection: 422,
    CollectionConflict: 409,
    BadSpan: 404,
    UnsupportedUpload: 415,
    NotFound: 404,
    StoreError: 409,
    StoreWriteFailed: 507,
    InvalidInput: 422,
    QueueFull: 429,
    NotReady: 503,
    # A database found damaged while serving: the reason, not a 500 on every request.
    sqlite3.DatabaseError: 503,
    Stopping: 503,
    Timeout: 504,
}


def _status_handler(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return _error(request, status, str(exc))

    return handler


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's,
    and GET and POST /documents are two routes)."""
    allowed = []
    for method in sorted(HTTP_METHODS):
        scope = {**request.scope, "method": method}
        if any(r.matches(scope)[0] == Match.FULL for r in app.router.routes):
            allowed.append(method)
    return allowed


def create_app(
    settings: Settings | None = None, warm_up: bool = True, pipeline: Pipeline | None = None
) -> FastAPI:
    """Build the app; ``warm_up`` loads the model at start-up so the first answer is fast.

    ``pipeline`` replaces the one built from ``settings`` (tests pass a model-free one).
    """
    settings = settings or Settings()
    metrics = Metrics()
    qa = QAService(settings, metrics, pipeline)
    registry = Collections(settings, qa)
    if settings.log_requests:
        _configure_logging()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            qa.warm_up()
        else:
            qa.start()
        registry.start()
        yield
        registry.shutdown()
        qa.shutdown()

    app = FastAPI(
        title="rag: extractive question answering",
        description="Answers are verbatim spans of the indexed documents, with citations "
        "whose quote equals document.text[start:end]. OpenAI-compatible chat at /v1.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.qa = qa
    app.state.collections = registry
    app.state.keys = KeyChecker(resolve_api_keys(settings), settings.api_key_scopes)

    for exc_type, status in ERROR_STATUS.items():
        app.add_exception_handler(exc_type, _status_handler(status))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(app, request))}
        return _error(request, exc.status_code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(request, 422, validation_message(exc.errors()))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(request, 500, "internal error")

    app.include_router(ask.router)
    app.include_router(documents.router)
    app.include_router(collections.router)
    # Every question and document route again under /collections/{collection}.
    for router in (ask.router, documents.router):
        app.include_router(
            router, prefix="/collections/{collection}", dependencies=[Depends(collection_param)]
        )
    app.include_router(chat.router)
    app.include_router(health.router)
    app.include_router(pages.router)
    openapi.install(app, settings)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # add_middleware wraps: the last added runs first.
    app.add_middleware(FormDefaultIsJSON)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(TrustedHosts, allowed=settings.allowed_hosts())
    app.add_middleware(RequestLog, metrics=metrics, log_requests=settings.log_requests)
    return app
