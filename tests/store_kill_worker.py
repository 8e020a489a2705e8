"""Ingests new versions of the same documents forever; killed by test_store to test atomicity.

Prints ``committed N`` after each ingest of generation N returns.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rag.models import Document
from rag.pipeline import Pipeline
from tests.conftest import FakeEmbedder, unit_settings

N_DOCS = 40


def documents(generation: int) -> list[Document]:
    return [
        Document(
            f"doc-{i}",
            " ".join(f"Generation {generation} document {i} sentence {s}." for s in range(60)),
            metadata={"generation": generation},
        )
        for i in range(N_DOCS)
    ]


def main() -> None:
    root = Path(sys.argv[1])
    pipe = Pipeline(unit_settings(index_root=root), embedder=FakeEmbedder())
    generation = int(pipe.manifest().get("test_generation", "0")) if pipe.exists() else 0
    while True:
        generation += 1
        pipe.ingest(documents(generation))
        pipe.stamp({"test_generation": str(generation)})
        print(f"committed {generation}", flush=True)


if __name__ == "__main__":
    main()
