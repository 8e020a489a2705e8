"""Dependencies shared by the routers: the app's services."""

from __future__ import annotations

from fastapi import Request

from service.chat import ChatService
from service.services import QAService


def qa_service(request: Request) -> QAService:
    service: QAService = request.app.state.qa
    return service


def chat_service(request: Request) -> ChatService:
    service: ChatService = request.app.state.chat
    return service
