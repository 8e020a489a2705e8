"""`rag serve`: check the index, then run the app under uvicorn (the ``rag.serve`` entry
point the CLI looks up, so that the library does not import the HTTP layer)."""

from __future__ import annotations

import uvicorn

from rag.settings import Settings
from rag.store import Store
from service.app import create_app


def serve(settings: Settings) -> int:
    """Serve until stopped. A damaged index is told in one line (StoreError) before
    anything starts; the app itself would serve 503s with the reason."""
    store = Store.from_settings(settings)
    if store.exists() or any(store.path.glob("vectors.*.faiss")):
        store.create()
        store.check()
        store.close()
    # The app logs one JSON line per request itself: uvicorn's access log would repeat it.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
    )
    return 0
