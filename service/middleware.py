"""ASGI middleware of the service (pure ASGI: streaming responses pass through untouched)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics

_FORM = b"application/x-www-form-urlencoded"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access_log = logging.getLogger("rag.access")


class FormDefaultIsJSON:
    """Treat a urlencoded-form body as JSON: this API takes no urlencoded forms.

    ``curl -d '{"question": ...}'`` sends its body as ``application/x-www-form-urlencoded``
    unless told otherwise; without this, the most common first request a user types would
    get a 422. The body itself is still validated as JSON by the route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            # In place: outer middleware reads the matched route back from this scope.
            scope["headers"] = [
                (k, b"application/json")
                if k == b"content-type" and v.split(b";")[0].strip().lower() == _FORM
                else (k, v)
                for k, v in scope["headers"]
            ]
        await self.app(scope, receive, send)


async def _json_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a request body over ``max_bytes``, declared or streamed, before any route."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over the limit of {self.max_bytes} bytes"
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    await _json_error(send, 400, "invalid Content-Length")
                    return
                if declared > self.max_bytes:
                    await _json_error(send, 413, message)
                    return
        # Chunked or lying bodies: buffer up to the limit, then replay to the app.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            part = msg.get("body", b"")
            size += len(part)
            if size > self.max_bytes:
                await _json_error(send, 413, message)
                return
            chunks.append(part)
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class TrustedHosts:
    """400 for a ``Host`` header naming a host this service does not serve.

    With reads open, a page on another site could rebind its own name to 127.0.0.1 and read
    answers and documents through the user's browser (DNS rebinding); the browser then
    still sends the attacker's name as Host, which this refuses. ``"*"`` allows any.
    """

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = frozenset(h.lower().strip("[]") for h in allowed)

    def _host_ok(self, scope: Scope) -> bool:
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").strip().lower()
        if host.startswith("["):  # [::1]:8000
            name = host[1:].split("]", 1)[0]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.any or self._host_ok(scope):
            await self.app(scope, receive, send)
            return
        await _json_error(
            send,
            400,
            "this Host is not served here (set RAG_TRUSTED_HOSTS to the names clients use)",
        )


class RequestLog:
    """A request id on every response, one JSON log line per request, and the HTTP metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, log_requests: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - t0
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            self.metrics.observe_request(scope["method"], route, status, seconds)
            if self.log_requests:
                access_log.info(
                    json.dumps(
                        {
                            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": scope["path"],
                            "route": route,
                            "status": status,
                            "duration_ms": round(seconds * 1000, 2),
                            "client": (scope.get("client") or ("", 0))[0],
                        }
                    )
                )
