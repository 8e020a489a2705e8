"""The chat page (GET /), the embedding guide (GET /embed); assets under /static."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["pages"], include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
def chat_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.api_route("/embed", methods=["GET", "HEAD"])
def embed_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "embed.html", media_type="text/html")
