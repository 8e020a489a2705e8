"""Documents: add (JSON or file upload), list, read, delete; jobs; cited spans."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.convertors import PathConvertor, register_url_convertor

from service.openapi import errors
from service.routers.deps import document_service
from service.schemas import (
    DocumentIn,
    DocumentOut,
    DocumentPage,
    IngestOut,
    JobOut,
    SpanOut,
    document_out,
)
from service.security import require_read_key, require_write_key
from service.services import DocumentService, Submitted, upload_kind


class DocIdConvertor(PathConvertor):
    """A document id in a path: like ``path``, except a tail that reads as a span
    (``…/spans/1-2``), which no id has, so that such a path is only the span route's."""

    regex = r"(?!.*/spans/[0-9]+-[0-9]+$).+"


register_url_convertor("docid", DocIdConvertor())
router = APIRouter(tags=["documents"])
# Paging parameters stay far inside SQLite's 64-bit integers (LIMIT/OFFSET are bound).
MAX_PAGE_PARAM = 2**53
Docs = Annotated[DocumentService, Depends(document_service)]

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


def _ingest_out(submitted: Submitted, prefix: str) -> IngestOut:
    ids = [d.id for d in submitted.documents]
    urls = [prefix + document_url(i) for i in ids]
    if submitted.report is not None:
        r = submitted.report
        return IngestOut(
            status="done",
            documents=ids,
            urls=urls,
            added=r.added,
            updated=r.updated,
            unchanged=r.unchanged,
        )
    job = None if submitted.job is None else JobOut.model_validate(submitted.job)
    return IngestOut(status="queued", documents=ids, urls=urls, job=job)


@router.post(
    "/documents",
    response_model=IngestOut,
    status_code=201,
    dependencies=[Depends(require_write_key)],
    summary="Add or replace documents (JSON, or a file upload)",
    openapi_extra=_UPLOAD_DOC,
    responses={
        202: {"model": IngestOut, "description": "queued: poll GET /jobs/{id}"},
        **errors(404, 409, 415, 429, 503, 507),
    },
)
async def add_document(request: Request, docs: Docs) -> Response:
    kind = upload_kind(request.headers.get("content-type", ""))
    if kind == "form":
        documents = await run_in_threadpool(docs.from_form, await request.form())
    else:
        documents = docs.from_json(await request.body())
    submitted = await run_in_threadpool(docs.submit, documents)
    name = request.path_params.get("collection")
    out = _ingest_out(submitted, "" if name is None else f"/collections/{quote(str(name))}")
    headers = {"Location": out.urls[0]} if len(out.urls) == 1 else None
    status = 201 if out.status == "done" else 202
    return JSONResponse(out.model_dump(mode="json"), status_code=status, headers=headers)


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
    docs: Docs,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_PARAM, description="Page size (at most RAG_MAX_PAGE_SIZE)")
    ] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_PARAM, description="Documents to skip")] = 0,
) -> DocumentPage:
    return DocumentPage.model_validate(docs.list_documents(limit, offset))


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    dependencies=[Depends(require_read_key)],
    summary="State and progress of a background ingest",
    responses=errors(404),
)
def get_job(job_id: str, docs: Docs) -> JobOut:
    return JobOut.model_validate(docs.job(job_id))


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
    docs: Docs,
    context: Annotated[int | None, Query(ge=0, le=5000, description="Characters each side")] = None,
) -> SpanOut:
    return SpanOut.model_validate(docs.span(doc_id, start, end, context))


@router.get(
    "/documents/{doc_id:docid}",
    response_model=DocumentOut,
    dependencies=[Depends(require_read_key)],
    summary="A document with its text and chunk count",
    responses=errors(404, 409, 503),
)
def get_document(doc_id: str, docs: Docs) -> DocumentOut:
    return document_out(*docs.document(doc_id))


@router.delete(
    "/documents/{doc_id:docid}",
    status_code=204,
    dependencies=[Depends(require_write_key)],
    summary="Delete a document and its vectors",
    responses=errors(404, 409, 503, 507),
)
def delete_document(doc_id: str, docs: Docs) -> Response:
    docs.delete(doc_id)
    return Response(status_code=204)
