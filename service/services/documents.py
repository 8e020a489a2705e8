"""The documents service: uploads (JSON or a file), ingest now or as a job, reading,
listing and deleting documents, jobs, and cited spans.

It works on the ``QAService``'s pipeline and job worker and answers only while the index
is ready (``QAService.require_ready``); it adds no state of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, Protocol

from pydantic import ValidationError

from rag.ingest import LoadError, PdfLimits, load_bytes
from rag.models import Document, DocumentInfo, IngestReport, text_sha256
from rag.store import StoreBusy
from rag.validation import InvalidInput, check_doc_id, check_document, check_metadata, check_text
from service.jobs import Job
from service.schemas import TITLE_MAX_CHARS, DocumentIn, validation_message
from service.services.qa import QAService


class NotFound(LookupError):
    """A document, job or span the request names does not exist (HTTP 404)."""


class UnsupportedUpload(ValueError):
    """An upload of a type the loaders do not read (HTTP 415)."""


class BadDocument(ValueError):
    """A document the service will not store (HTTP 422), with the reason."""


class BadSpan(LookupError):
    """A span that is not inside its document (HTTP 404: no such span)."""


@dataclass(frozen=True, slots=True)
class SpanView:
    """A cited span with context on each side, for a frontend to show a citation."""

    doc_id: str
    title: str
    start: int
    end: int
    quote: str
    context_start: int
    context_end: int
    before: str
    after: str
    pages: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a submission did: ingested now (``report``) or queued (``job``)."""

    documents: list[Document]
    report: IngestReport | None = None
    job: Job | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """A page of the stored documents, by id; ``limit`` is the page size applied."""

    items: list[DocumentInfo]
    total: int
    limit: int
    offset: int


class UploadedFile(Protocol):
    """A file of a multipart form (Starlette's ``UploadFile``), already received."""

    filename: str | None
    file: BinaryIO


# A parsed multipart form: text fields and files by name.
UploadForm = Mapping[str, str | UploadedFile]
UploadKind = Literal["json", "form"]


def upload_kind(content_type: str) -> UploadKind:
    """How a document upload with this Content-Type is read: a JSON document or a
    multipart form; UnsupportedUpload (415) for any other type."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        return "json"
    if kind == "multipart/form-data":
        return "form"
    raise UnsupportedUpload(
        f"content type {kind or '(none)'} is not accepted: send application/json "
        "or multipart/form-data with a .txt, .md, .html, .jsonl or .pdf file"
    )


class DocumentService:
    """Documents of the QA service's index; one per app, sharing the QAService's pipeline,
    job worker and readiness."""

    def __init__(self, qa: QAService) -> None:
        self.qa = qa
        self.settings = qa.settings

    # ---- uploads -----------------------------------------------------------------------
    def from_json(self, body: bytes) -> list[Document]:
        """The document of a JSON body (``DocumentIn``); without an id it is named by its
        content hash, without a title by its first line."""
        try:
            doc = DocumentIn.model_validate_json(body)
        except ValidationError as exc:
            raise BadDocument(validation_message(exc.errors())) from None
        doc_id = doc.id or f"sha256:{text_sha256(doc.text)[:16]}"
        title = doc.title if doc.title is not None else doc.text.strip().split("\n")[0][:200]
        return [Document(doc_id, doc.text, title, doc.metadata or {})]

    def from_form(self, form: UploadForm) -> list[Document]:
        """The documents of a multipart form: a ``file`` and optional ``id``, ``title`` and
        ``metadata`` (a JSON object) fields, checked before the file is read."""
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
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
                    metadata, "multipart field 'metadata'", self.settings.max_metadata_depth
                )
        except InvalidInput as exc:
            raise BadDocument(str(exc)) from None
        return self.parse_upload(
            upload.file.read(), upload.filename or "", fields["id"], fields["title"], metadata
        )

    def parse_upload(
        self,
        data: bytes,
        filename: str,
        doc_id: str | None,
        title: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> list[Document]:
        """Documents from an uploaded file; its name types it and names the document."""
        name = filename.replace("\\", "/").rsplit("/", 1)[-1]  # never a path, only a name
        suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        try:
            docs = load_bytes(
                data,
                suffix,
                doc_id or name,
                self.settings.max_upload_records,
                PdfLimits.from_settings(self.settings),
            )
        except LoadError as exc:
            if str(exc).startswith("unsupported file type"):
                raise UnsupportedUpload(f"{name}: {exc}") from None
            raise BadDocument(f"{name}: {exc}") from None
        if suffix == ".jsonl" and (doc_id or title or metadata):
            raise BadDocument("id, title and metadata come from the records of a JSONL upload")
        if suffix != ".jsonl":
            d = docs[0]
            docs = [
                Document(
                    d.id,
                    d.text,
                    title if title is not None else d.title,
                    {**d.metadata, **(metadata or {})},
                    d.page_starts,
                )
            ]
        return docs

    def submit(self, documents: list[Document]) -> Submitted:
        """Ingest small single documents now; queue the rest for the background worker."""
        qa = self.qa
        qa.require_ready()
        if not documents:
            raise BadDocument("the upload holds no document")
        limit = self.settings.max_upload_records
        if len(documents) > limit:
            raise BadDocument(f"{len(documents)} documents in one upload; the limit is {limit}")
        seen: set[str] = set()
        for d in documents:
            try:
                check_document(d.id, d.text, d.title, d.metadata, self.settings.max_metadata_depth)
            except InvalidInput as exc:
                raise BadDocument(f"document {d.id[:80]!r}: {exc}") from None
            if not d.text.strip():
                raise BadDocument(f"document {d.id!r} has no text")
            if d.id in seen:
                raise BadDocument(f"document id {d.id!r} appears twice in the upload")
            seen.add(d.id)
        small = (
            len(documents) == 1 and len(documents[0].text) <= self.settings.sync_ingest_max_chars
        )
        # A small document is ingested now unless a writer holds the index (a job here, or
        # `rag ingest` in another process): then it queues instead of waiting for it.
        if small:
            try:
                report = qa.pipeline.ingest(documents, commit_every=None, wait=False)
                return Submitted(documents, report=report)
            except StoreBusy:
                pass
        job = qa.worker.submit(documents, max_active=self.settings.max_queued_jobs)
        qa.metrics.jobs_active.set(qa.jobs.active())
        return Submitted(documents, job=job)

    # ---- jobs, documents, spans --------------------------------------------------------
    def job(self, job_id: str) -> Job:
        job = self.qa.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    def list_documents(self, limit: int, offset: int) -> Page:
        """A page of documents; ``limit`` is capped at ``max_page_size``."""
        self.qa.require_ready()
        limit = min(limit, self.settings.max_page_size)
        pipeline = self.qa.pipeline
        return Page(pipeline.documents(limit, offset), pipeline.counts()[0], limit, offset)

    def document(self, doc_id: str) -> tuple[Document, DocumentInfo]:
        self.qa.require_ready()
        found = self.qa.pipeline.document_with_info(doc_id)
        if found is None:
            raise NotFound(f"no document {doc_id!r}")
        return found

    def delete(self, doc_id: str) -> None:
        self.qa.require_ready()
        if not self.qa.pipeline.delete(doc_id):
            raise NotFound(f"no document {doc_id!r}")

    def span(self, doc_id: str, start: int, end: int, context: int | None) -> SpanView:
        self.qa.require_ready()
        doc = self.qa.pipeline.document(doc_id)
        if doc is None:
            raise NotFound(f"no document {doc_id!r}")
        n = len(doc.text)
        if not 0 <= start <= end <= n:
            raise BadSpan(f"span {start}-{end} is not inside document {doc_id!r} ({n} characters)")
        width = self.settings.span_context_chars if context is None else context
        lo, hi = max(0, start - width), min(n, end + width)
        t = doc.text
        return SpanView(
            doc_id,
            doc.title,
            start,
            end,
            t[start:end],
            lo,
            hi,
            t[lo:start],
            t[end:hi],
            doc.pages_of(start, end),
        )
