"""rag: extractive question answering with exact, round-tripping citations.

The public API, for embedding the library::

    from rag import Pipeline, Settings, Document
    pipe = Pipeline(Settings(index_name="notes"))
    pipe.ingest([Document("a.txt", "The ferry was built by Anna Brask.")])
    answer = pipe.ask("Who built the ferry?")
    answer.text, answer.citations[0].quote        # quote == document.text[start:end]

Names load on first use, so ``import rag`` stays cheap (no torch, no FAISS until needed).
The stages live in packages with faces of their own: ``rag.ingest``, ``rag.store``,
``rag.reader``, ``rag.eval``; ``rag.retrieval`` and ``rag.pipeline`` are single modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.faces import lazy_face

if TYPE_CHECKING:
    from rag.gold import (
        GoldFormatError as GoldFormatError,
        GoldSet as GoldSet,
        load_gold as load_gold,
    )
    from rag.ingest import (
        LoadError as LoadError,
    )
    from rag.models import (
        Abstention as Abstention,
        Answer as Answer,
        Chunk as Chunk,
        Citation as Citation,
        Document as Document,
        DocumentInfo as DocumentInfo,
        IndexStats as IndexStats,
        IngestReport as IngestReport,
        Passage as Passage,
        Span as Span,
    )
    from rag.pipeline import (
        Pipeline as Pipeline,
        QuestionError as QuestionError,
    )
    from rag.settings import (
        Settings as Settings,
    )
    from rag.store import (
        StoreBusy as StoreBusy,
        StoreError as StoreError,
        StoreWriteFailed as StoreWriteFailed,
    )
    from rag.validation import (
        InvalidInput as InvalidInput,
    )

_NAMES = {
    **dict.fromkeys(["GoldFormatError", "GoldSet", "load_gold"], "rag.gold"),
    "LoadError": "rag.ingest",
    **dict.fromkeys(
        [
            "Abstention",
            "Answer",
            "Chunk",
            "Citation",
            "Document",
            "DocumentInfo",
            "IndexStats",
            "IngestReport",
            "Passage",
            "Span",
        ],
        "rag.models",
    ),
    **dict.fromkeys(["Pipeline", "QuestionError"], "rag.pipeline"),
    "Settings": "rag.settings",
    **dict.fromkeys(["StoreBusy", "StoreError", "StoreWriteFailed"], "rag.store"),
    "InvalidInput": "rag.validation",
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
