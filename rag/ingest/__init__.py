"""Documents in: loaders (files and uploads to ``Document``), chunking (token windows with
exact character offsets; PDFs with their page map), embedding (all-MiniLM-L6-v2, offline)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.faces import lazy_face

if TYPE_CHECKING:
    from rag.ingest.chunking import (
        TOKENIZER_NAME as TOKENIZER_NAME,
        Chunker as Chunker,
        TokenizerError as TokenizerError,
        cl100k as cl100k,
    )
    from rag.ingest.embedding import (
        Embedder as Embedder,
        default_model_path as default_model_path,
        embedding_text as embedding_text,
    )
    from rag.ingest.errors import LoadError as LoadError
    from rag.ingest.loaders import (
        SUPPORTED_SUFFIXES as SUPPORTED_SUFFIXES,
        LoadResult as LoadResult,
        LoadStream as LoadStream,
        html_to_text as html_to_text,
        load_bytes as load_bytes,
        load_paths as load_paths,
        plan_paths as plan_paths,
    )
    from rag.ingest.pdf import (
        PdfLimits as PdfLimits,
        PdfText as PdfText,
        assemble_pages as assemble_pages,
        read_pdf as read_pdf,
    )

_NAMES = {
    "TOKENIZER_NAME": "rag.ingest.chunking",
    "Chunker": "rag.ingest.chunking",
    "TokenizerError": "rag.ingest.chunking",
    "cl100k": "rag.ingest.chunking",
    "Embedder": "rag.ingest.embedding",
    "default_model_path": "rag.ingest.embedding",
    "embedding_text": "rag.ingest.embedding",
    "SUPPORTED_SUFFIXES": "rag.ingest.loaders",
    "LoadError": "rag.ingest.errors",
    "PdfLimits": "rag.ingest.pdf",
    "PdfText": "rag.ingest.pdf",
    "assemble_pages": "rag.ingest.pdf",
    "read_pdf": "rag.ingest.pdf",
    "LoadResult": "rag.ingest.loaders",
    "html_to_text": "rag.ingest.loaders",
    "load_bytes": "rag.ingest.loaders",
    "load_paths": "rag.ingest.loaders",
    "LoadStream": "rag.ingest.loaders",
    "plan_paths": "rag.ingest.loaders",
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
