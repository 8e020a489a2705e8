"""`rag serve`: check the index, then run the app under uvicorn (the ``rag.serve`` entry
point the CLI looks up, so that the library does not import the HTTP layer)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import uvicorn

from rag.pipeline import Pipeline
from rag.settings import Settings
from service.app import create_app
from service.memory import cap_arenas, cap_mmap_threshold

log = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    """Serve until stopped. A damaged index is told in one line (StoreError) before
    anything starts; the app itself would serve 503s with the reason."""
    # One pipeline for the check and the app: the segments loaded (and checksummed) by the
    # check are the ones the app serves, read once, held once. The models load meanwhile
    # (the check's reads and checksums release the GIL): start-up pays the longer of the
    # two, not their sum.
    # Before any thread answering questions exists, so that each does not get an arena.
    if settings.heap_arenas and not cap_arenas(settings.heap_arenas):
        log.warning("RAG_HEAP_ARENAS not applied: the C library is not glibc")
    if settings.heap_mmap_threshold_kb and not cap_mmap_threshold(
        settings.heap_mmap_threshold_kb * 1024
    ):
        log.warning("RAG_HEAP_MMAP_THRESHOLD_KB not applied: the C library is not glibc")
    pipeline = Pipeline(settings)
    loading = _in_background(pipeline.warm_up)
    pipeline.check_index()
    loading()
    # The app logs one JSON line per request itself: uvicorn's access log would repeat it.
    uvicorn.run(
        create_app(settings, pipeline=pipeline),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
    )
    return 0


def _in_background(work: Callable[[], None]) -> Callable[[], None]:
    """Start ``work`` on a daemon thread (a failed check exits without waiting for it);
    the function returned waits for it and raises what it raised."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised by the caller's join
            failed.append(exc)

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()

    def join() -> None:
        thread.join()
        if failed:
            raise failed[0]

    return join
