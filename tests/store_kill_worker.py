"""Ingests new versions of the same documents forever; killed by test_store to test atomicity.

Prints ``committed N`` after each ingest of generation N returns. With ``merge`` as the
second argument, step N adds one document ``doc-N`` and, every third step, deletes
``doc-(N-2)``, under merge factor 2: most steps set off segment merges, which the kill
lands in. With ``keyword before`` / ``keyword after``, the first ingest's process kills
itself right before / after the keyword engine commits (the database has committed).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable
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


def merge_step_docs(step: int) -> Document:
    return Document(f"doc-{step}", f"Step {step} adds this document. " * 20)


def deleted_at(step: int) -> str | None:
    """The document step ``step`` deletes in merge mode."""
    return f"doc-{step - 2}" if step % 3 == 0 else None


def kill_around_keyword_commit(moment: str) -> None:
    """Make the keyword engine's update SIGKILL this process before or after it runs."""
    from rag.store.keyword import KeywordIndex

    update = KeywordIndex.update

    def dying(self: KeywordIndex, changes: Iterable[tuple[int, str | None]]) -> None:
        if moment == "after":
            update(self, changes)
        os.kill(os.getpid(), signal.SIGKILL)

    KeywordIndex.update = dying  # type: ignore[method-assign]


def main() -> None:
    root = Path(sys.argv[1])
    merge = sys.argv[2:] == ["merge"]
    if sys.argv[2:3] == ["keyword"]:
        kill_around_keyword_commit(sys.argv[3])
    settings = unit_settings(index_root=root, segment_merge_factor=2 if merge else 10)
    pipe = Pipeline(settings, embedder=FakeEmbedder())
    generation = int(pipe.manifest().get("test_generation", "0")) if pipe.exists() else 0
    while True:
        generation += 1
        if merge:
            pipe.ingest([merge_step_docs(generation)])
            gone = deleted_at(generation)
            if gone is not None:
                pipe.delete(gone)
        else:
            pipe.ingest(documents(generation))
        pipe.stamp({"test_generation": str(generation)})
        print(f"committed {generation}", flush=True)


if __name__ == "__main__":
    main()
