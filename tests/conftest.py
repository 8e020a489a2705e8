"""Shared fixtures: a model-free embedder for unit tests, the real one for marked tests."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rag.ingest import Embedder, load_paths
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.store import Store
from service.testing import start_server

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
SEED_ID = "000_99490361bb818e87.txt"
# TestClient base URL: a loopback name, which the service serves by default (trusted hosts).
LOCAL = "http://localhost"


class FakeEmbedder(Embedder):
    """Hashed bag of words: deterministic, no model, same interface as Embedder."""

    DIM = 64

    def __init__(self, batch_size: int = 32, tag: str = "fake") -> None:
        super().__init__(model_path=Path("/nonexistent"), batch_size=batch_size)
        self.tag = tag
        self.calls = 0
        self.texts_embedded = 0

    def warm_up(self) -> None:
        return None

    @property
    def dim(self) -> int:
        return self.DIM

    @property
    def max_seq_length(self) -> int:
        return 256

    def manifest(self) -> dict[str, str]:
        return {"embedding_model": self.tag, "embedding_sha256": self.tag}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "big")
                out[i, h % self.DIM] += 1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out


# Runs the `rag` CLI in a child process with FakeEmbedder in place of the model.
FAKE_MODEL_CLI = (
    "import sys; from tests.conftest import FakeEmbedder; import rag.pipeline as p; "
    "from rag import cli; p.Embedder = lambda *a, **k: FakeEmbedder(); "
    "sys.exit(cli.main(sys.argv[1:]))"
)


def unit_settings(**overrides: object) -> Settings:
    """Settings for model-free tests: the sentence reader (with the fake embedder), since
    the default span reader runs a trained model."""
    return Settings(**{"reader": "sentence", **overrides})  # type: ignore[arg-type]


@pytest.fixture
def fake_store(tmp_path: Path) -> Store:
    """The store of ``fake_pipeline`` (store tests inspect what the pipeline writes)."""
    return Store(unit_settings(index_root=tmp_path / "idx").index_dir)


@pytest.fixture
def fake_pipeline(tmp_path: Path, fake_store: Store) -> Pipeline:
    """A pipeline over a fresh index in tmp_path, with the fake embedder."""
    settings = unit_settings(index_root=tmp_path / "idx", abstain_threshold=0.0)
    return Pipeline(settings, embedder=FakeEmbedder(), store=fake_store)


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    embedder = Embedder()
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def seed_index_root(tmp_path_factory: pytest.TempPathFactory, real_embedder: Embedder) -> Path:
    """An index of seeds/ built once per session with the real model."""
    root = tmp_path_factory.mktemp("seed-index")
    pipe = Pipeline(Settings(index_root=root), embedder=real_embedder)
    loaded = load_paths([SEEDS])
    assert not loaded.failures
    pipe.ingest(loaded.documents)
    return root


@pytest.fixture(scope="session")
def seed_pipeline(seed_index_root: Path, real_embedder: Embedder) -> Iterator[Pipeline]:
    """The default pipeline over the seed index, its answerable share fixed at the fit's:
    shared by many tests, it must not decide by what earlier tests asked (the default online
    share is tested on pipelines of its own)."""
    from rag.models import Abstention
    from rag.reader import PRIOR_FIT_FILE, load_abstention

    fit_prior = load_abstention(PRIOR_FIT_FILE, "span", Abstention()).fit_prior
    pipe = Pipeline(
        Settings(index_root=seed_index_root, span_answerable_prior=fit_prior or "off"),
        embedder=real_embedder,
    )
    yield pipe
    pipe.close()


@dataclass(frozen=True)
class LiveServer:
    """The real app under uvicorn on loopback, over a copy of the seed index."""

    url: str
    api_key: str
    index_root: Path


@pytest.fixture(scope="session")
def live_server(
    seed_index_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("live-index")
    shutil.copytree(seed_index_root, root, dirs_exist_ok=True)
    server = start_server(root, "test-key", root / "server.log")
    try:
        yield LiveServer(server.url, "test-key", root)
    finally:
        server.stop()
