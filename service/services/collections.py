"""Collections: named indexes served side by side, each with its own documents, jobs and
questions, sharing one set of models.

A collection is an index folder under ``index_root`` (the CLI's ``--index <name>``), so an
index built by ``rag ingest --index notes`` is served as the collection ``notes``. The
default collection is ``index_name`` (today's unprefixed routes). Each collection has its
own ``QAService`` (store, job table, ingest worker, question batcher) and the document and
chat services over it; the pipelines share the default one's models (``Pipeline.for_index``).

Deleting a collection takes it out of the registry first (new requests get 404), stops its
services (requests that found it before get 503; questions waiting in its batcher too; a
running job has its grace to commit), then drops its index (``Pipeline.drop_index``:
under the index's locks, renamed to a hidden name and removed; a late write through it is
refused, never recreating the folder), so a half-deleted collection is never served and
never found at the next start. A name being created or deleted is taken (409) until that
is done; opening a collection happens outside the registry's lock, so a slow one (an index
another process is writing) never holds up the others.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.settings import INDEX_NAME_PATTERN, Settings
from rag.store import DB_FILE, DROPPED_PREFIX, StoreError
from service.metrics import Metrics
from service.services.chat import ChatService
from service.services.documents import DocumentService, NotFound
from service.services.qa import QAService

log = logging.getLogger("rag.service")
_NAME = re.compile(INDEX_NAME_PATTERN)
# Folders the CLI's rebuild makes beside an index (``<name>.rebuild``, ``<name>.old``):
# never collections, and no collection may take such a name (a rebuild would remove it).
REBUILD_SUFFIXES = (".rebuild", ".old")


def _servable(name: str) -> bool:
    """Whether ``name`` can be a collection: an index name, not a rebuild's folder."""
    return bool(_NAME.match(name)) and not name.endswith(REBUILD_SUFFIXES)


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
        self._pending: set[str] = set()  # names being created or deleted

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

    def name_for_model(self, model: str | None) -> str:
        """The collection a chat request's ``model`` names: ``<chat_model_id>:<name>``;
        any other value, or none, is the default collection."""
        prefix = f"{self.settings.chat_model_id}:"
        if model is not None and model.startswith(prefix):
            return model[len(prefix) :]
        return self.default_name

    @property
    def default(self) -> Collection:
        return self._by_name[self.default_name]

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Serve every index folder under the root besides the default (started already)."""
        for path in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            name = path.name
            if name.startswith(DROPPED_PREFIX):
                shutil.rmtree(path, ignore_errors=True)  # a delete cut short: finish it
                continue
            if name == self.default_name or not _servable(name):
                continue
            if (path / DB_FILE).is_file() and len(self._by_name) < self.settings.max_collections:
                try:
                    self._by_name[name] = self._open(name)
                except (StoreError, OSError) as exc:  # one bad folder never stops the rest
                    log.error("collection %s cannot be served: %s", name, exc)

    def _open(self, name: str) -> Collection:
        """The services of collection ``name``, its index opened and checked (a damaged
        one is served as not ready, with the reason, like the default)."""
        default = self.default.qa
        qa = QAService(
            default.settings.model_copy(update={"index_name": name}),
            Metrics(),  # per-collection gauges would collide with the default's
            default.pipeline.for_index(name),
        )
        qa.start()
        return self._wrap(qa)

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
        if not _servable(name):
            raise BadCollection(
                f"collection name {name[:80]!r}: 1 to 64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit, not ending in .rebuild or .old"
            )
        with self._lock:
            if name in self._by_name or name in self._pending:
                raise CollectionConflict(f"collection {name!r} exists")
            if len(self._by_name) + len(self._pending) >= self.settings.max_collections:
                raise CollectionConflict(
                    f"{len(self._by_name)} collections; the limit is "
                    f"{self.settings.max_collections} (RAG_MAX_COLLECTIONS)"
                )
            self._pending.add(name)
        try:
            collection = self._open(name)
            with self._lock:
                self._by_name[name] = collection
        finally:
            with self._lock:
                self._pending.discard(name)
        log.info("created collection %s", name)
        return collection

    def delete(self, name: str) -> None:
        """Remove the collection and its index; the default one cannot be deleted."""
        if name == self.default_name:
            raise CollectionConflict(f"{name!r} is the default collection: it cannot be deleted")
        with self._lock:
            collection = self.get(name)
            del self._by_name[name]
            self._pending.add(name)
        try:
            collection.qa.shutdown()
            try:
                collection.qa.pipeline.drop_index()
            except StoreError as exc:  # another process serves it: keep serving it here
                reopened = self._open(name)
                with self._lock:
                    self._by_name[name] = reopened
                raise CollectionConflict(f"collection {name!r} cannot be deleted: {exc}") from None
        finally:
            with self._lock:
                self._pending.discard(name)
        log.info("deleted collection %s", name)
