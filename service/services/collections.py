"""Collections: named indexes served side by side, each with its own documents, jobs and
questions, sharing one set of models.

A collection is an index folder under ``index_root`` (the CLI's ``--index <name>``), so an
index built by ``rag ingest --index notes`` is served as the collection ``notes``. The
default collection is ``index_name`` (today's unprefixed routes). Each collection has its
own ``QAService`` (store, job table, ingest worker, question batcher) and the document and
chat services over it; the pipelines share the default one's models (``Pipeline.for_index``).

Deleting a collection takes it out of the registry first (new requests get 404), stops its
services (questions waiting in its batcher get 503, a running job its grace to commit),
then renames its folder to a hidden name and removes it, so a half-deleted collection is
never served and never found at the next start.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.settings import INDEX_NAME_PATTERN, Settings
from rag.store import DB_FILE
from service.metrics import Metrics
from service.services.chat import ChatService
from service.services.documents import DocumentService, NotFound
from service.services.qa import QAService

log = logging.getLogger("rag.service")
_NAME = re.compile(INDEX_NAME_PATTERN)
# Folders of collections being deleted (hidden: never a collection name).
TRASH_PREFIX = ".deleting-"


class BadCollection(ValueError):
    """A collection name the service refuses (HTTP 422), with the reason."""


class CollectionConflict(RuntimeError):
    """A collection that exists already, the default one deleted, or too many (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class Collection:
    """One served collection: its name and the services over its index."""

    name: str
    qa: QAService
    documents: DocumentService
    chat: ChatService


class Collections:
    """The collections this app serves, by name; the default one is always there."""

    def __init__(self, settings: Settings, default: QAService) -> None:
        self.settings = settings
        self.default_name = settings.index_name
        self.root = Path(settings.index_root)
        self._lock = threading.Lock()
        self._by_name: dict[str, Collection] = {self.default_name: self._wrap(default)}

    def _wrap(self, qa: QAService) -> Collection:
        name = qa.settings.index_name
        # The default collection answers as the bare model id, as before collections.
        model = self.settings.chat_model_id if name == self.default_name else self.model_id(name)
        chat = ChatService(qa, qa.settings, model_id=model)
        return Collection(name, qa, DocumentService(qa), chat)

    def model_id(self, name: str) -> str:
        """The chat model id of collection ``name``: ``<chat_model_id>:<name>``, which
        frontends list as a model (the bare ``chat_model_id`` is the default collection)."""
        return f"{self.settings.chat_model_id}:{name}"

    def for_model(self, model: str | None) -> Collection:
        """The collection a chat request's ``model`` names: ``<chat_model_id>:<name>``
        (404 if there is none); any other value, or none, is the default collection."""
        prefix = f"{self.settings.chat_model_id}:"
        if model is not None and model.startswith(prefix):
            return self.get(model[len(prefix) :])
        return self.default

    @property
    def default(self) -> Collection:
        return self._by_name[self.default_name]

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Serve every index folder under the root besides the default (started already)."""
        for path in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            name = path.name
            if name.startswith(TRASH_PREFIX):
                shutil.rmtree(path, ignore_errors=True)  # a delete cut short: finish it
                continue
            if name == self.default_name or not _NAME.match(name):
                continue
            if (path / DB_FILE).is_file() and len(self._by_name) < self.settings.max_collections:
                self._open(name)

    def _open(self, name: str) -> Collection:
        default = self.default.qa
        qa = QAService(
            default.settings.model_copy(update={"index_name": name}),
            Metrics(),  # per-collection gauges would collide with the default's
            default.pipeline.for_index(name),
        )
        qa.start()
        collection = self._wrap(qa)
        self._by_name[name] = collection
        return collection

    def shutdown(self) -> None:
        """Stop every collection but the default (the app stops that one)."""
        with self._lock:
            others = [c for n, c in self._by_name.items() if n != self.default_name]
        for c in others:
            c.qa.shutdown()

    # ---- the registry ------------------------------------------------------------------
    def get(self, name: str) -> Collection:
        """The collection ``name``; NotFound (404) if there is none."""
        found = self._by_name.get(name)
        if found is None:
            raise NotFound(f"no collection {name!r}")
        return found

    def __iter__(self) -> Iterator[Collection]:
        with self._lock:
            return iter(sorted(self._by_name.values(), key=lambda c: c.name))

    def create(self, name: str) -> Collection:
        """A new collection (its index folder made now; an index folder already there, one
        built by ``rag ingest --index <name>`` after start-up, is served as it is); 409 if
        it is served already."""
        if not _NAME.match(name):
            raise BadCollection(
                f"collection name {name[:80]!r}: 1 to 64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        with self._lock:
            if name in self._by_name:
                raise CollectionConflict(f"collection {name!r} exists")
            if len(self._by_name) >= self.settings.max_collections:
                raise CollectionConflict(
                    f"{len(self._by_name)} collections; the limit is "
                    f"{self.settings.max_collections} (RAG_MAX_COLLECTIONS)"
                )
            collection = self._open(name)
        log.info("created collection %s", name)
        return collection

    def delete(self, name: str) -> None:
        """Remove the collection and its index; the default one cannot be deleted."""
        if name == self.default_name:
            raise CollectionConflict(f"{name!r} is the default collection: it cannot be deleted")
        with self._lock:
            collection = self.get(name)
            del self._by_name[name]
        collection.qa.shutdown()
        folder = self.root / name
        trash = self.root / f"{TRASH_PREFIX}{name}-{secrets.token_hex(4)}"
        if folder.exists():
            folder.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        log.info("deleted collection %s", name)
