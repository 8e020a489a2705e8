"""Retrieval over long documents: SQuAD v1.1 dev as 48 whole articles beside its 2,067
paragraphs, answer-hit@k with the pipeline's retrieval (fused, then reranked when on).

    .venv/bin/python bench/long_docs.py [--questions 1000] [--chunk-tokens 160 ...]

Each article's paragraphs are joined in order with a blank line between them into one
document; every gold answer's offset moves by its paragraph's place in the article, so it
is exact by construction. Two hit measures per corpus: by string (a gold answer string is
in one of the first k passages: what ``rag eval`` reports) and by position (one of the
first k passages covers a gold answer's own characters in its own document: a long
document repeats names, so a string can be found where the answer is not). Settings
variants (chunk size, overlap, the title embedded with each chunk) are flags; each builds
its own index once, under index/. ``--documents-first 1,2,3`` also measures a document stage
over each question's first ``DEEP`` passages (``documents_first``; JSON keys ``deep_100``
and ``documents_first_<n>_<max|sum>``). Nothing is asserted; results go to ``--out`` as one
JSON file per variant.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SQUAD_V11  # noqa: E402
from rag.eval import Evaluator  # noqa: E402
from rag.gold import GoldAnswer, GoldQuestion, GoldSet, load_gold  # noqa: E402
from rag.models import Document, Passage  # noqa: E402
from rag.settings import Settings  # noqa: E402

KS = (1, 5, 10, 20)
# Document-first retrieval (--documents-first): how deep a ranking the documents are scored
# over, and the usual reciprocal-rank constant.
DEEP = 100
RRF_K = 60
SEPARATOR = "\n\n"


def whole_articles(gold: GoldSet) -> GoldSet:
    """The paragraphs of each article joined into one document, answers moved with them."""
    order: dict[str, list[Document]] = {}
    for d in gold.documents:
        order.setdefault(str(d.metadata.get("article", d.id)), []).append(d)
    documents: list[Document] = []
    where: dict[str, tuple[str, int]] = {}  # paragraph id -> (article doc id, offset)
    for article, paragraphs in order.items():
        offset, parts = 0, []
        for p in paragraphs:
            where[p.id] = (article, offset)
            parts.append(p.text)
            offset += len(p.text) + len(SEPARATOR)
        text = SEPARATOR.join(parts)
        documents.append(Document(article, text, paragraphs[0].title, {"article": article}))
    texts = {d.id: d.text for d in documents}
    questions = []
    for q in gold.questions:
        if q.doc_id is None:
            continue
        doc_id, shift = where[q.doc_id]
        answers = tuple(GoldAnswer(a.text, a.answer_start + shift) for a in q.answers)
        for a in answers:  # exact by construction; checked all the same
            assert texts[doc_id][a.answer_start : a.answer_start + len(a.text)] == a.text
        questions.append(GoldQuestion(q.id, q.question, answers, doc_id))
    return GoldSet(documents=documents, questions=questions)


def hits(
    questions: Sequence[GoldQuestion], ranked: Sequence[Sequence[Passage]]
) -> dict[str, dict[int, float]]:
    """answer-hit@k by string and by position (see the module docstring)."""
    by_string = {k: 0 for k in KS}
    by_position = {k: 0 for k in KS}
    for q, ps in zip(questions, ranked, strict=True):
        s = [any(a.text in p.text for a in q.answers) for p in ps]
        pos = [
            any(
                p.doc_id == q.doc_id
                and p.start <= a.answer_start
                and a.answer_start + len(a.text) <= p.end
                for a in q.answers
            )
            for p in ps
        ]
        for k in KS:
            by_string[k] += any(s[:k])
            by_position[k] += any(pos[:k])
    n = max(1, len(questions))
    return {
        "by_string": {k: round(v / n, 4) for k, v in by_string.items()},
        "by_position": {k: round(v / n, 4) for k, v in by_position.items()},
    }


def counts(text: str) -> tuple[int, ...]:
    """``--documents-first``'s comma-separated positive counts, checked before any index
    is built."""
    try:
        values = tuple(int(n) for n in text.split(",") if n.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated counts: {text!r}") from None
    if any(n < 1 for n in values):
        raise argparse.ArgumentTypeError(f"document counts must be >= 1: {text!r}")
    return values


def retrieve(pipe: Any, questions: Sequence[GoldQuestion], k: int) -> list[list[Passage]]:
    """Each question's first ``k`` passages, as the pipeline retrieves them."""
    ranked: list[list[Passage]] = []
    for i in range(0, len(questions), 128):
        block = questions[i : i + 128]
        ranked += pipe.retrieve_batch([q.question for q in block], top_k=k)
    return ranked


def documents_first(
    ranked: Sequence[Passage], documents: int, how: str = "max", k: int = RRF_K
) -> list[Passage]:
    """Document-level, then passage-level retrieval over one question's deep ranking: each
    document scored from its passages there, the first ``documents`` kept, and their
    passages in the deep ranking's order. ``how``: "max", a document as good as its best passage
    (MaxP, Dai & Callan 2019); "sum", the reciprocal ranks of all its passages summed
    (1 / (k + rank), CombSUM of RRF: many good passages beat one lucky one, but a long
    document has more passages to sum)."""
    score: dict[str, float] = {}
    for rank, p in enumerate(ranked, start=1):
        if how == "max":
            score.setdefault(p.doc_id, -rank)
        else:
            score[p.doc_id] = score.get(p.doc_id, 0.0) + 1.0 / (k + rank)
    kept = set(sorted(score, key=lambda d: -score[d])[:documents])
    return [p for p in ranked if p.doc_id in kept]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=1000, help="0: all 10,570")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk-tokens", type=int, default=None)
    ap.add_argument("--chunk-overlap", type=int, default=None)
    ap.add_argument("--embed-title", action="store_true", help="RAG_EMBED_TITLE=true")
    ap.add_argument("--corpora", default="paragraphs,articles")
    ap.add_argument(
        "--documents-first",
        type=counts,
        default=(),
        help="comma-separated document counts: also measure document-level, then "
        "passage-level retrieval keeping that many documents (e.g. 1,2,3)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "long-docs")
    args = ap.parse_args()

    overrides: dict[str, Any] = {}
    if args.chunk_tokens is not None:
        overrides["chunk_tokens"] = args.chunk_tokens
    if args.chunk_overlap is not None:
        overrides["chunk_overlap"] = args.chunk_overlap
    if args.embed_title:
        overrides["embed_title"] = True
    settings = Settings(**overrides)
    paragraphs = load_gold(SQUAD_V11)
    if 0 < args.questions < len(paragraphs.questions):
        paragraphs.questions = random.Random(args.seed).sample(paragraphs.questions, args.questions)
    corpora = {"paragraphs": paragraphs, "articles": whole_articles(paragraphs)}
    result: dict[str, Any] = {
        "questions": len(paragraphs.questions),
        "settings": {
            "chunk_tokens": settings.chunk_tokens,
            "chunk_overlap": settings.chunk_overlap,
            "embed_title": settings.embed_title,
            "rerank": settings.rerank,
            "top_k": settings.top_k,
        },
    }
    for name in args.corpora.split(","):
        gold = corpora[name]
        pipe = Evaluator(settings, progress=True).pipeline_for(gold)
        firsts: tuple[int, ...] = args.documents_first
        ranked, deep = retrieve(pipe, gold.questions, max(KS)), []
        result[name] = {
            "documents": len(gold.documents),
            "chunks": pipe.stats().chunks,
            **hits(gold.questions, ranked),
        }
        if firsts:
            # Scored over DEEP passages (the reranker, when on, then reorders all of them):
            # the same deep ranking cut to k is the baseline they are measured beside.
            deep = retrieve(pipe, gold.questions, DEEP)
            result[name][f"deep_{DEEP}"] = hits(gold.questions, [r[: max(KS)] for r in deep])
        for n in firsts:
            for how in ("max", "sum"):
                kept = [documents_first(r, n, how)[: max(KS)] for r in deep]
                result[name][f"documents_first_{n}_{how}"] = hits(gold.questions, kept)
        pipe.close()
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"c{settings.chunk_tokens}-o{settings.chunk_overlap}" + (
        "-title" if settings.embed_title else ""
    )
    if args.documents_first:
        result["documents_first"] = {"deep": DEEP, "rrf_k": RRF_K}
    (args.out / f"{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
