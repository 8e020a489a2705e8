"""ASGI middleware of the service."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_FORM = b"application/x-www-form-urlencoded"


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
            headers = [
                (k, b"application/json")
                if k == b"content-type" and v.split(b";")[0].strip().lower() == _FORM
                else (k, v)
                for k, v in scope["headers"]
            ]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
