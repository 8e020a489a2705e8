"""Documents: add (JSON or file upload), list, read, delete; jobs; cited spans."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.datastructures import UploadFile

from rag.models import Document, text_sha256
from rag.validation import InvalidInput, check_doc_id, check_metadata, check_text
from service.openapi import errors
from service.routers.deps import qa_service
from service.schemas import (
    TITLE_MAX_CHARS,
    DocumentIn,
    DocumentOut,
    DocumentPage,
    DocumentSummary,
    IngestOut,
    JobOut,
    SpanOut,
    validation_message,
)
from service.security import require_read_key, require_write_key
from service.services import BadDocument, QAService, Submitted, UnsupportedUpload


class DocIdConvertor(PathConvertor):
    """A document id in a path: like ``path``, except a tail that reads as a span
    (``…/spans/1-2``), which no id has, so that such a path is only the span route's."""

    regex = r"(?!.*/spans/[0-9]+-[0-9]+$).+"


register_url_convertor("docid", DocIdConvertor())
router = APIRouter(tags=["documents"])
# Paging parameters stay far inside SQLite's 64-bit integers (LIMIT/OFFSET are bound).
MAX_PAGE_PARAM = 2**53
QA = Annotated[QAService, Depends(qa_service)]

_UPLOAD_DOC = {
    "requestBody": {
        "content": {
            "application/json": {"schema": DocumentIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "id": {"type": "string"},
                        "title": {"type": "string"},
                        "metadata": {"type": "string", "description": "a JSON object"},
                    },
                }
            },
        }
    }
}


def _job_out(submitted: Submitted) -> JobOut | None:
    job = submitted.job
    if job is None:
        return None
    return JobOut(
        id=job.id,
        state=job.state.value,
        created=job.created,
        started=job.started,
        finished=job.finished,
        documents=job.documents,
        chunks_total=job.chunks_total,
        chunks_done=job.chunks_done,
        added=job.added,
        updated=job.updated,
        unchanged=job.unchanged,
        error=job.error,
    )


async def _documents_from_request(request: Request, qa: QAService) -> list[Document]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = DocumentIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise BadDocument(validation_message(exc.errors())) from None
        doc_id = body.id or f"sha256:{text_sha256(body.text)[:16]}"
        title = body.title if body.title is not None else body.text.strip().split("\n")[0][:200]
        return [Document(doc_id, body.text, title, body.metadata or {})]
    if kind == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadDocument("multipart upload: send the document in a file field named 'file'")
        fields: dict[str, str | None] = {}
        for name in ("id", "title", "metadata"):
            value = form.get(name)
            if value is not None and not isinstance(value, str):
                raise BadDocument(f"multipart field {name!r} must be text")
            fields[name] = value
        metadata: Any = None
        if fields["metadata"]:
            try:
                metadata = json.loads(fields["metadata"])
            except (ValueError, RecursionError):  # bad JSON, a 5,000-digit number, deep nesting
                raise BadDocument("multipart field 'metadata' is not valid JSON") from None
            if not isinstance(metadata, dict):
                raise BadDocument("multipart field 'metadata' must be a JSON object")
        try:
            if fields["id"] is not None:
                check_doc_id(fields["id"], "multipart field 'id'")
            if fields["title"] is not None:
                check_text(fields["title"], "multipart field 'title'")
                if len(fields["title"]) > TITLE_MAX_CHARS:
                    raise InvalidInput(
                        f"multipart field 'title': over {TITLE_MAX_CHARS} characters"
                    )
            if metadata is not None:
                check_metadata(
                    metadata, "multipart field 'metadata'", qa.settings.max_metadata_depth
                )
        except InvalidInput as exc:
            raise BadDocument(str(exc)) from None
        data = await upload.read()
        return await run_in_threadpool(
            qa.parse_upload, data, upload.filename or "", fields["id"], fields["title"], metadata
        )
    raise UnsupportedUpload(
        f"content type {kind or '(none)'} is not accepted: send application/json "
        "or multipart/form-data with a .txt, .md, .html or .jsonl file"
    )


@router.post(
    "/documents",
    response_model=IngestOut,
    status_code=201,
    dependencies=[Depends(require_write_key)],
    summary="Add or replace documents (JSON, or a file upload)",
    openapi_extra=_UPLOAD_DOC,
    responses={
        202: {"model": IngestOut, "description": "queued: poll GET /jobs/{id}"},
        **errors(409, 415, 429, 503, 507),
    },
)
async def add_document(request: Request, qa: QA) -> Response:
    documents = await _documents_from_request(request, qa)
    submitted = await run_in_threadpool(qa.submit, documents)
    ids = [d.id for d in submitted.documents]
    urls = [document_url(i) for i in ids]
    headers = {"Location": urls[0]} if len(urls) == 1 else None
    if submitted.report is not None:
        r = submitted.report
        out = IngestOut(
            status="done",
            documents=ids,
            urls=urls,
            added=r.added,
            updated=r.updated,
            unchanged=r.unchanged,
        )
        return JSONResponse(out.model_dump(mode="json"), status_code=201, headers=headers)
    out = IngestOut(status="queued", documents=ids, urls=urls, job=_job_out(submitted))
    return JSONResponse(out.model_dump(mode="json"), status_code=202, headers=headers)


def document_url(doc_id: str) -> str:
    """The path of a document: its id percent-encoded, slashes kept (ids may hold them)."""
    return "/documents/" + quote(doc_id, safe="/")


@router.get(
    "/documents",
    response_model=DocumentPage,
    dependencies=[Depends(require_read_key)],
    summary="List documents (paged, by id)",
    responses=errors(409, 503),
)
def list_documents(
    qa: QA,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_PARAM, description="Page size (at most RAG_MAX_PAGE_SIZE)")
    ] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_PARAM, description="Documents to skip")] = 0,
) -> DocumentPage:
    limit = min(limit, qa.settings.max_page_size)
    items, total = qa.list_documents(limit, offset)
    return DocumentPage(
        items=[
            DocumentSummary(
                id=i.id, title=i.title, sha256=i.sha256, metadata=i.metadata, chunks=i.n_chunks
            )
            for i in items
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    dependencies=[Depends(require_read_key)],
    summary="State and progress of a background ingest",
    responses=errors(404),
)
def get_job(job_id: str, qa: QA) -> JobOut:
    out = _job_out(Submitted([], job=qa.job(job_id)))
    assert out is not None
    return out


# Document ids may hold '/', so the id is a path parameter; the span route comes first.
@router.get(
    "/documents/{doc_id:path}/spans/{start:int}-{end:int}",
    response_model=SpanOut,
    dependencies=[Depends(require_read_key)],
    summary="A cited span with context, for showing a citation",
    responses=errors(404, 409, 503),
)
def get_span(
    doc_id: str,
    start: int,
    end: int,
    qa: QA,
    context: Annotated[int | None, Query(ge=0, le=5000, description="Characters each side")] = None,
) -> SpanOut:
    return SpanOut.model_validate(qa.span(doc_id, start, end, context), from_attributes=True)


@router.get(
    "/documents/{doc_id:docid}",
    response_model=DocumentOut,
    dependencies=[Depends(require_read_key)],
    summary="A document with its text and chunk count",
    responses=errors(404, 409, 503),
)
def get_document(doc_id: str, qa: QA) -> DocumentOut:
    doc, info = qa.document(doc_id)
    return DocumentOut(
        id=doc.id,
        title=doc.title,
        sha256=info.sha256,
        metadata=doc.metadata,
        chunks=info.n_chunks,
        text=doc.text,
    )


@router.delete(
    "/documents/{doc_id:docid}",
    status_code=204,
    dependencies=[Depends(require_write_key)],
    summary="Delete a document and its vectors",
    responses=errors(404, 409, 503, 507),
)
def delete_document(doc_id: str, qa: QA) -> Response:
    qa.delete(doc_id)
    return Response(status_code=204)
