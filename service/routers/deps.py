"""Dependencies shared by the routers: the app's services."""

from __future__ import annotations

from fastapi import Request

from service.services import ChatService, DocumentService, QAService


def qa_service(request: Request) -> QAService:
    service: QAService = request.app.state.qa
    return service


def document_service(request: Request) -> DocumentService:
    service: DocumentService = request.app.state.documents
    return service


def chat_service(request: Request) -> ChatService:
    service: ChatService = request.app.state.chat
    return service
