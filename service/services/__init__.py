"""The service layer: what the routers call. Logic lives here, not in the routers.

This is its face; outside the package, import from ``service.services`` only.

- ``qa``: ``QAService``, lifecycle (index, job worker), readiness and questions;
- ``documents``: ``DocumentService``, uploads, ingest, jobs, documents and spans, on the
  QAService's pipeline and worker;
- ``chat``: ``ChatService``, a conversation's answer as a ``ChatReply`` (the OpenAI wire
  format of it is ``service.openai``);
- ``collections``: ``Collections``, the named indexes served side by side (each a
  ``Collection`` of the three services above), sharing one set of models.

Errors map to HTTP statuses in ``service.app``: NotFound and BadSpan 404, BadDocument 422,
UnsupportedUpload 415, NotReady 503, BadCollection 422, CollectionConflict 409.
"""

from __future__ import annotations

from service.services.chat import (
    ChatReply,
    ChatService,
    Message,
    is_followup,
    split_turns,
    stream_pieces,
)
from service.services.collections import (
    BadCollection,
    Collection,
    CollectionConflict,
    Collections,
)
from service.services.documents import (
    BadDocument,
    BadSpan,
    DocumentService,
    NotFound,
    Page,
    SpanView,
    Submitted,
    UnsupportedUpload,
    UploadedFile,
    UploadForm,
    UploadKind,
    upload_kind,
)
from service.services.qa import COMMITTED_JOB_KEY, NotReady, QAService

__all__ = [
    "COMMITTED_JOB_KEY",
    "BadCollection",
    "BadDocument",
    "BadSpan",
    "ChatReply",
    "ChatService",
    "Collection",
    "CollectionConflict",
    "Collections",
    "DocumentService",
    "Message",
    "NotFound",
    "NotReady",
    "Page",
    "QAService",
    "SpanView",
    "Submitted",
    "UnsupportedUpload",
    "UploadForm",
    "UploadKind",
    "UploadedFile",
    "is_followup",
    "split_turns",
    "stream_pieces",
    "upload_kind",
]
