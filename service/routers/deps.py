"""Dependencies shared by the routers: the services of the collection a request acts on
(its path's ``/collections/{collection}``, else the default one)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request

from rag.settings import INDEX_NAME_PATTERN
from service.services import ChatService, Collection, Collections, DocumentService, QAService


def collections(request: Request) -> Collections:
    registry: Collections = request.app.state.collections
    return registry


def collection(request: Request) -> Collection:
    """The collection of the request's path (404 if there is none), else the default."""
    name = request.path_params.get("collection")
    registry = collections(request)
    return registry.default if name is None else registry.get(str(name))


def collection_param(
    collection: Annotated[
        str,
        Path(
            pattern=INDEX_NAME_PATTERN,
            description="The collection (a named index); the routes without this prefix "
            "act on the default one.",
        ),
    ],
) -> None:
    """Declares ``{collection}`` for the prefixed routes (validated; read by
    ``collection``)."""


def qa_service(request: Request) -> QAService:
    return collection(request).qa


def document_service(request: Request) -> DocumentService:
    return collection(request).documents


def chat_service(request: Request) -> ChatService:
    return collection(request).chat
