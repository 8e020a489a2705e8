"""Request and response models of the HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AskRequest(BaseModel):
    """A question, with optional retrieval depth and document filters."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(..., description="The question; blank or over the length limit is 422.")
    top_k: int | None = Field(None, ge=1, le=50, description="Passages to retrieve and read.")
    filters: dict[str, str | int | float | bool | list[str | int | float | bool]] | None = Field(
        None,
        description='Only documents matching every key: "doc_id" or a metadata field; a list '
        "value matches any of its items.",
    )


class Health(BaseModel):
    status: str
    documents: int | None = None


class ErrorBody(BaseModel):
    detail: Any
