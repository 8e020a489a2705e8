"""API keys: one dependency for writes, one for reads (open unless a setting says otherwise)."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.settings import Settings

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


class KeyChecker:
    """Compares a bearer token with the accepted keys in constant time."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    def valid(self, token: str) -> bool:
        given = token.encode()
        # compare_digest against every key: the time does not reveal which key was close.
        return any([hmac.compare_digest(given, k) for k in self._keys])


def _check(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    checker: KeyChecker = request.app.state.keys
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            401,
            "this needs an API key: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not checker.valid(credentials.credentials):
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})


def require_write_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_write_bearer)],
) -> None:
    """Document writes and deletes: always keyed."""
    _check(request, credentials)


def require_read_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_read_bearer)],
) -> None:
    """Questions and document reads: keyed only when ``read_requires_key`` is set."""
    settings: Settings = request.app.state.settings
    if settings.read_requires_key:
        _check(request, credentials)
