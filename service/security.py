"""API keys: one dependency for writes, one for reads (open unless a setting says otherwise),
one for managing collections; keys of ``api_key_scopes`` reach only their collections.

The collection a request acts on is its path's (``/collections/{collection}/...``), else
the default one; the chat route names it in its body (``model``) and checks it itself
(``authorize``). A valid key outside its scope is a 403 that names the collection."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.settings import KeyScope, Settings

log = logging.getLogger("rag.service")
KEY_FILE = ".api-key"
# Two schemes of the same kind, so that the OpenAPI document can say which operations need
# a key in this configuration (reads only when RAG_READ_REQUIRES_KEY is set).
WRITE_SCHEME, READ_SCHEME = "WriteKey", "ReadKey"
_write_bearer = HTTPBearer(
    auto_error=False,
    scheme_name=WRITE_SCHEME,
    description="`Authorization: Bearer <key>`: document writes and deletes.",
)
_read_bearer = HTTPBearer(
    auto_error=False,
    scheme_name=READ_SCHEME,
    description="`Authorization: Bearer <key>`: reads, when RAG_READ_REQUIRES_KEY is set.",
)


def resolve_api_keys(settings: Settings) -> list[str]:
    """The configured keys, or the one in ``<index_root>/.api-key`` (created once, 0600).

    A fresh install thus has writes locked behind a key only the operator can read, instead
    of being open by default.
    """
    if settings.api_keys:
        return list(settings.api_keys)
    path = Path(settings.index_root) / KEY_FILE
    if not path.is_file() and _create_key_file(path):
        log.info("created an API key for document writes in %s", path)
    key = path.read_text().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to get a new key, or set RAG_API_KEYS")
    log.info("document writes need the API key in %s (or set RAG_API_KEYS)", path)
    return [key]


def _create_key_file(path: Path) -> bool:
    """Create ``path`` holding a new random key, atomically: the key is written and fsynced
    under a temporary name, then linked into place, so a reader never sees the file empty
    or half-written, and of two processes starting together exactly one creates it (the
    other reads the winner's key). True when this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process linked its key first
        except FileExistsError:
            return False
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True
    finally:
        tmp.unlink(missing_ok=True)


# What a full key (RAG_API_KEYS, the key file) may do: everything.
FULL_ACCESS = None


class KeyChecker:
    """Compares a bearer token with the accepted keys in constant time, and says which
    collections the key it matches may read and write."""

    def __init__(self, keys: list[str], scopes: dict[str, KeyScope] | None = None) -> None:
        self._keys: list[tuple[bytes, KeyScope | None]] = [(k.encode(), FULL_ACCESS) for k in keys]
        self._keys += [(k.encode(), scope) for k, scope in (scopes or {}).items()]

    def match(self, token: str) -> tuple[bool, KeyScope | None]:
        """(valid, its scope: None for a full key)."""
        given = token.encode()
        found: tuple[bool, KeyScope | None] = (False, FULL_ACCESS)
        # compare_digest against every key: the time does not reveal which key was close.
        for key, scope in self._keys:
            if hmac.compare_digest(given, key):
                found = (True, scope)
        return found

    def valid(self, token: str) -> bool:
        return self.match(token)[0]


def request_collection(request: Request) -> str:
    """The collection a request acts on: its path's, else the default one."""
    name = request.path_params.get("collection")
    settings: Settings = request.app.state.settings
    return str(name) if name is not None else settings.index_name


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            401,
            "this needs an API key: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credentials.credentials


def _check(request: Request, credentials: HTTPAuthorizationCredentials | None) -> KeyScope | None:
    """The valid key's scope (None: full access); 401 without a valid key."""
    checker: KeyChecker = request.app.state.keys
    valid, scope = checker.match(_token(credentials))
    if not valid:
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return scope


def _in_scope(scope: KeyScope | None, collection: str, write: bool) -> None:
    if scope is not None and not scope.allows(collection, write):
        verb = "write to" if write else "read"
        raise HTTPException(403, f"this API key may not {verb} collection {collection!r}")


def require_write_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_write_bearer)],
) -> None:
    """Document writes and deletes: always keyed, within the key's collections."""
    _in_scope(_check(request, credentials), request_collection(request), write=True)


def require_read_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_read_bearer)],
) -> None:
    """Questions and document reads: keyed only when ``read_requires_key`` is set, then
    within the key's collections."""
    settings: Settings = request.app.state.settings
    if settings.read_requires_key:
        _in_scope(_check(request, credentials), request_collection(request), write=False)


def require_any_read_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_read_bearer)],
) -> None:
    """Routes that choose their collection from the body (the chat) or list collections:
    a valid key when reads need one; the route checks the collection (``authorize``)."""
    settings: Settings = request.app.state.settings
    if settings.read_requires_key:
        _check(request, credentials)


def require_admin_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_write_bearer)],
) -> None:
    """Creating and deleting collections: a full key (a scoped one gets 403)."""
    if _check(request, credentials) is not FULL_ACCESS:
        raise HTTPException(
            403, "this API key is limited to some collections: it cannot create or delete them"
        )


def readable(request: Request, collection: str) -> bool:
    """Whether this request may read ``collection`` (always, when reads need no key)."""
    settings: Settings = request.app.state.settings
    if not settings.read_requires_key:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    checker: KeyChecker = request.app.state.keys
    valid, scope = checker.match(token.strip()) if scheme.lower() == "bearer" else (False, None)
    return valid and (scope is None or scope.allows(collection, write=False))


def authorize(request: Request, collection: str) -> None:
    """403 unless this request may read ``collection`` (the chat's model names it)."""
    if not readable(request, collection):
        raise HTTPException(403, f"this API key may not read collection {collection!r}")
