"""The OpenAPI document, made to tell the truth about this app and its settings.

FastAPI's generated document is a start; a generated client must be able to trust every
part of it, so after generation:

- every error a route can answer is declared, with the ``{"detail": ...}`` body every error
  has (FastAPI declares a 422 ``HTTPValidationError`` shape the service never sends, and
  none of the 400/401/404/409/413/415/429/503/504 it does);
- the key is declared only where this configuration asks for it (reads are open unless
  ``read_requires_key``);
- request limits that come from settings (question length, batch size, ``top_k``, filter
  keys and values, chat messages and parts, metadata depth) are written into the schemas,
  so that a schema-valid request is one the service accepts, and a schema-invalid one is
  one it refuses.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from rag.settings import Settings
from rag.validation import (
    DOC_ID_MAX_CHARS,
    DOC_ID_PATTERN,
    FILTER_KEY_PATTERN,
    INT64_MAX,
    INT64_MIN,
)
from service.schemas import TITLE_MAX_CHARS, DocumentIn, ErrorBody
from service.security import READ_SCHEME

ERROR = "#/components/schemas/ErrorBody"
DESCRIPTIONS = {
    400: "The Host header names a host this service does not serve (RAG_TRUSTED_HOSTS).",
    401: "Missing or invalid API key (`Authorization: Bearer <key>`).",
    403: "The API key is valid but not for this collection (RAG_API_KEY_SCOPES), or a "
    "scoped key asked to create or delete a collection.",
    404: "No such collection, document, job or span.",
    409: "The index cannot be used now (another model's index, or rebuilt meanwhile), or "
    "the collection exists, is the default one, or would be one too many.",
    413: "The request body is over RAG_MAX_BODY_BYTES.",
    415: "An upload of a type the loaders do not read, or another content type.",
    422: "The request is not valid: the message says which field and why.",
    429: "RAG_MAX_QUEUED_JOBS ingest jobs are already queued or running.",
    503: "The index cannot be served now (damaged, or not loaded yet: the message says "
    "why), or the service is shutting down.",
    504: "No answer within RAG_QUESTION_TIMEOUT_S.",
    507: "The write could not be made (disk full, I/O error); nothing was changed.",
}
NON_BLANK = r"\S"
# Numbers the service stores exactly (rag.validation.check_number).
NUMBER = {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the errors of its own (the app adds 400/401/413/422)."""
    return {c: {"model": ErrorBody, "description": DESCRIPTIONS[c]} for c in codes}


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the corrected document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _declare_errors(schema, settings)
            _apply_limits(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error_response(code: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": ERROR}}},
    }


def _declare_errors(schema: dict[str, Any], settings: Settings) -> None:
    comps = schema.setdefault("components", {})
    models = comps.setdefault("schemas", {})
    models.pop("HTTPValidationError", None)
    models.pop("ValidationError", None)
    models["ErrorBody"] = ErrorBody.model_json_schema()
    if not settings.read_requires_key:
        comps.get("securitySchemes", {}).pop(READ_SCHEME, None)
    for path, operations in schema["paths"].items():
        for op in operations.values():
            security = [
                r
                for r in op.pop("security", [])
                if settings.read_requires_key or READ_SCHEME not in r
            ]
            if security:
                op["security"] = security
            responses = op.setdefault("responses", {})
            codes = {400}
            if security:
                codes |= {401, 403}
            if path.startswith("/collections/{"):
                codes.add(404)
            if "requestBody" in op:
                codes |= {413, 422}
            if op.get("parameters"):
                codes.add(422)
            for code in codes:
                if code == 422 or str(code) not in responses:
                    responses[str(code)] = _error_response(code)
            for code, body in responses.items():  # the routers' own error declarations
                if code.isdigit() and int(code) >= 400 and "content" not in body:
                    responses[code] = _error_response(int(code))


def _scalar(with_null: bool) -> list[dict[str, Any]]:
    kinds: list[dict[str, Any]] = [{"type": "string"}, {"type": "boolean"}, NUMBER]
    return [*kinds, {"type": "null"}] if with_null else kinds


def _metadata_value(levels: int) -> dict[str, Any]:
    """A JSON value with at most ``levels`` more levels of arrays or objects inside it."""
    kinds = _scalar(with_null=True)
    if levels > 0:
        inner = _metadata_value(levels - 1)
        kinds += [
            {"type": "array", "items": inner},
            {"type": "object", "additionalProperties": inner},
        ]
    return {"anyOf": kinds}


def metadata_schema(max_depth: int) -> dict[str, Any]:
    """The metadata object as ``rag.validation.check_metadata`` accepts it: the object is
    level 1, so its values hold at most ``max_depth - 1`` levels of nesting."""
    return {
        "type": "object",
        "additionalProperties": _metadata_value(max_depth - 1),
        "description": f"Filterable metadata: a JSON object at most {max_depth} levels deep; "
        "numbers finite and within ±2^63.",
    }


def _nullable(inner: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"anyOf": [inner, {"type": "null"}]}
    if description:
        out["description"] = description
    return out


def _apply_limits(schema: dict[str, Any], s: Settings) -> None:
    comps = schema["components"]["schemas"]
    question = {
        "type": "string",
        "minLength": 1,
        "maxLength": s.max_question_chars,
        "pattern": NON_BLANK,
        "description": f"The question: not blank, at most {s.max_question_chars} characters.",
    }
    top_k = _nullable(
        {"type": "integer", "minimum": 1, "maximum": s.max_top_k},
        f"Passages to retrieve and read (1..{s.max_top_k}; default {s.top_k}).",
    )
    scalar = {"anyOf": _scalar(with_null=False)}
    filters = _nullable(
        {
            "type": "object",
            "maxProperties": s.max_filter_keys,
            "propertyNames": {"pattern": FILTER_KEY_PATTERN},
            "additionalProperties": {
                "anyOf": [
                    *scalar["anyOf"],
                    {"type": "array", "items": scalar, "maxItems": s.max_filter_values},
                ]
            },
        },
        'Only documents matching every key: "doc_id" or a metadata field; a list matches '
        f"any of its items. At most {s.max_filter_keys} keys and {s.max_filter_values} "
        "values a key.",
    )
    comps["Filters"] = filters
    ref = {"$ref": "#/components/schemas/Filters"}

    answers = {
        "type": "integer",
        "minimum": 1,
        "maximum": s.max_answers,
        "default": 1,
        "description": f"How many distinct answers to list, best first (1..{s.max_answers}).",
    }
    ask = comps["AskRequest"]["properties"]
    ask.update(question=question, top_k=top_k, filters=ref, answers=answers)
    batch = comps["AskBatchRequest"]["properties"]
    batch["questions"] = {
        "type": "array",
        "items": question,
        "minItems": 1,
        "maxItems": s.max_batch_questions,
    }
    batch.update(top_k=top_k, filters=ref, answers=answers)

    doc_id = {
        "type": "string",
        "minLength": 1,
        "maxLength": DOC_ID_MAX_CHARS,
        "pattern": DOC_ID_PATTERN,
    }
    title = {"type": "string", "maxLength": TITLE_MAX_CHARS}
    metadata = metadata_schema(s.max_metadata_depth)
    comps["DocumentIn"] = DocumentIn.model_json_schema()
    doc = comps["DocumentIn"]["properties"]
    doc["id"] = _nullable(doc_id, doc["id"].get("description"))
    doc["title"] = _nullable(title, doc["title"].get("description"))
    doc["text"] = {**doc["text"], "minLength": 1, "pattern": NON_BLANK}
    doc["metadata"] = _nullable(metadata)
    upload = schema["paths"]["/documents"]["post"]["requestBody"]["content"]
    upload["application/json"]["schema"] = {"$ref": "#/components/schemas/DocumentIn"}
    multipart = upload["multipart/form-data"]
    multipart["schema"]["properties"].update(id=doc_id, title=title, metadata=metadata)
    multipart["encoding"] = {"metadata": {"contentType": "application/json"}}

    text = {"type": "string", "maxLength": s.max_chat_message_chars}
    part = comps["ContentPart"]
    part["properties"]["text"] = _nullable(text)
    message = comps["ChatMessage"]
    message["properties"]["content"] = {
        "anyOf": [
            text,
            {
                "type": "array",
                "items": {"$ref": "#/components/schemas/ContentPart"},
                "maxItems": s.max_chat_parts,
            },
            {"type": "null"},
        ]
    }
    non_blank_text = {"type": "string", "pattern": NON_BLANK}
    user_with_text = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"const": "user"},
            "content": {
                "anyOf": [
                    non_blank_text,
                    {
                        "type": "array",
                        "contains": {
                            "type": "object",
                            "required": ["type", "text"],
                            "properties": {"type": {"const": "text"}, "text": non_blank_text},
                        },
                    },
                ]
            },
        },
    }
    chat = comps["ChatRequest"]["properties"]
    chat["messages"] = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ChatMessage"},
        "minItems": 1,
        "maxItems": s.max_chat_messages,
        "contains": user_with_text,
        "description": "The conversation; the question is the last user message with text "
        f"(its last {s.max_question_chars} characters).",
    }
    chat.update(top_k=top_k, filters=ref, answers=answers)

    # Where a submission's results are read: its job (202) and its documents.
    post = schema["paths"]["/documents"]["post"]["responses"]
    read_doc = {
        "operationRef": "#/paths/~1documents~1{doc_id}/get",
        "parameters": {"doc_id": "$response.body#/documents/0"},
        "description": "The first document submitted.",
    }
    post["201"]["links"] = {"document": read_doc}
    post["202"]["links"] = {
        "job": {
            "operationRef": "#/paths/~1jobs~1{job_id}/get",
            "parameters": {"job_id": "$response.body#/job/id"},
            "description": "The ingest job to poll.",
        },
    }

    span = schema["paths"]["/documents/{doc_id}/spans/{start}-{end}"]["get"]
    for p in span.get("parameters", []):
        if p["name"] in ("start", "end"):
            p["schema"] = {**p["schema"], "minimum": 0}
