"""The chat page (GET /), the embedding guide (GET /embed); assets under /static."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/")
def chat_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/embed")
def embed_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "embed.html", media_type="text/html")
