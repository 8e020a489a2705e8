"""Helpers shared by the benchmark scripts (not part of the installed package)."""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
from pathlib import Path

from rag.eval import Evaluator, QuestionResult
from rag.gold import GoldQuestion, GoldSet, load_squad
from rag.ingest import LoadResult
from rag.pipeline import Pipeline
from rag.reader import context_sentence
from rag.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SQUAD_DEV = SHARED / "squad" / "dev-v1.1.json.gz"
SQUAD_V2_HALF = SHARED / "squad" / "dev-v2.0-half.json.gz"
# The project's own copy of SQuAD v1.1 dev (CC BY-SA 4.0, see eval/README.md).
SQUAD_V11 = Path(__file__).resolve().parents[1] / "eval" / "gold" / "squad-dev-v1.1.json.gz"


# The id suffix of a question read after a context sentence (``with_context``).
CONTEXT_ID_SUFFIX = "-pre"


def with_context(question: GoldQuestion, context: str) -> GoldQuestion:
    """``question`` after ``context`` (a sentence), answers and offsets unchanged."""
    return GoldQuestion(
        question.id + CONTEXT_ID_SUFFIX,
        f"{context} {question.question}",
        question.answers,
        question.doc_id,
    )


def siblings_of(gold: GoldSet) -> dict[str, list[str]]:
    """Per paragraph id, the texts of the other paragraphs of its article."""
    by_article: dict[str, list[tuple[str, str]]] = {}
    for d in gold.documents:
        by_article.setdefault(str(d.metadata.get("article", "")), []).append((d.id, d.text))
    return {
        pid: [t for other, t in paras if other != pid]
        for paras in by_article.values()
        for pid, _ in paras
    }


def context_copies(gold: GoldSet, share: float, seed: int) -> GoldSet:
    """A copy of ``gold`` (same corpus) whose questions are a ``share`` of its own, drawn with
    ``seed``, each after a sentence of another paragraph of its article
    (``rag.reader.context_sentence``): context the question's passage does not hold, as a
    news quiz's question carries. Answerable and unanswerable questions alike, so the form
    does not stand for either; a question whose own paragraph is withheld from the corpus
    draws from its article's paragraphs still there. Articles are read from SQuAD's
    paragraph ids (``<title>-<article>-<paragraph>``, ``rag.gold.load_squad``)."""
    rng = random.Random(seed)
    by_article: dict[str, list[tuple[str, str]]] = {}
    for d in gold.documents:
        by_article.setdefault(d.id.rsplit("-", 1)[0], []).append((d.id, d.text))
    made = []
    for q in gold.questions:
        if rng.random() >= share or not q.doc_id:
            continue
        siblings = [
            t for pid, t in by_article.get(q.doc_id.rsplit("-", 1)[0], []) if pid != q.doc_id
        ]
        context = context_sentence(siblings, rng)
        if context is not None:
            made.append(with_context(q, context))
    return dataclasses.replace(gold, questions=made)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def pipeline_fingerprint(settings: Settings) -> str:
    """A short hash of what decides a cached run's answers and features: the reader's
    weights config and answerability probe (when read), the span selection (its fit, or the rank
    weight), the reranker fit (when on), the span reader's decoding, arithmetic and markup
    reading, the verifier's and the selection's feature code and retrieval's (the fusion and
    the keyword engine)."""
    import hashlib

    import rag.reader
    from rag.reader import (
        CONFIG_FILE,
        PROBE_FILE,
        SELECTION_FIT_FILE,
        encoder_dtype,
        rank_weight,
    )
    from rag.reranking import FIT_FILE

    h = hashlib.sha256()
    package = Path(rag.reader.__file__).parent
    code = [package / name for name in ("span_model.py", "span.py", "verifier.py")]
    code += [package.parent / "retrieval.py", package.parent / "store" / "keyword.py"]
    code.append(package.parent / "text.py")  # what the reader reads as markup
    files = [Path(settings.reader_weights) / CONFIG_FILE, *code]
    if probed(settings):
        files += [Path(settings.reader_weights) / PROBE_FILE, package / "probe.py"]
        h.update(b"probe")
    if checked(settings):
        assert settings.span_checker is not None
        files.append(Path(settings.span_checker) / CONFIG_FILE)
        h.update(f"checker {settings.span_checker_candidates}".encode())
    if settings.rerank:
        files.append(FIT_FILE)
    for f in files:
        h.update(f.read_bytes() if f.exists() else b"-")
    weight = rank_weight(settings.span_rank_weight)
    h.update(f"{settings.top_k} {settings.rerank_depth} {settings.rerank} {weight}".encode())
    h.update(f"markup {settings.span_skip_markup}".encode())
    if settings.span_selection == "fitted":
        # The selection's code and fit decide the answers only when it chooses.
        fit = SELECTION_FIT_FILE.read_bytes() if SELECTION_FIT_FILE.exists() else b"-"
        h.update(b"selection " + fit + (package / "selection.py").read_bytes())
    # The reader's arithmetic (int8, or the encoder's dtype as this CPU resolves it).
    dtype = "int8" if settings.span_quantize else str(encoder_dtype(settings.span_dtype))
    h.update(f"{dtype} {settings.span_pad_multiple} {settings.span_batch_multiple}".encode())
    return h.hexdigest()[:8]


def probed(settings: Settings) -> bool:
    """Whether the pipeline reads with the answerability probe (``RAG_SPAN_PROBE``; the
    factory loads it only for the verifier)."""
    return settings.span_probe and settings.span_verifier


def checked(settings: Settings) -> bool:
    """Whether the pipeline reads with the answer checker (``RAG_SPAN_CHECKER``; the
    factory loads it only for the verifier)."""
    return settings.span_checker is not None and settings.span_verifier


def verifier_fits(
    settings: Settings, fit_file: Path | None, prior_fit_file: Path | None
) -> tuple[Path, Path]:
    """The verifier's fit files a bench uses: those given, else the shipped ones of the
    verifier ``settings`` read with (with the answer checker or the probe, their own)."""
    from rag.reader import verifier_fit_file

    on, probe = checked(settings), probed(settings)
    return (
        fit_file or verifier_fit_file(on, factorised=False, probed=probe),
        prior_fit_file or verifier_fit_file(on, factorised=True, probed=probe),
    )


def read_results(path: Path) -> list[QuestionResult]:
    """Results cached by ``collect_results``."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [QuestionResult(**{**r, "passages": []}) for r in rows]


def gold_digest(gold: GoldSet) -> str:
    """A short hash of what a gold set asks and over what: its questions (ids, texts,
    answers, documents) and its corpus (document ids and texts), so a cached run is never
    read for a set drawn otherwise (another sample size, withheld share or context copy)."""
    import hashlib

    h = hashlib.sha256()
    for q in gold.questions:
        answers = [(a.text, a.answer_start) for a in q.answers]
        h.update(json.dumps([q.id, q.question, answers, q.doc_id]).encode())
    for d in gold.documents:
        h.update(json.dumps([d.id, d.title]).encode())
        h.update(hashlib.sha256(d.text.encode()).digest())
    return h.hexdigest()[:8]


def results_path(name: str, gold: GoldSet, cache: Path, settings: Settings) -> Path:
    """Where ``collect_results`` caches a run: ``cache/<name>-<pipeline fingerprint>-<gold
    digest>.jsonl``."""
    return cache / f"{name}-{pipeline_fingerprint(settings)}-{gold_digest(gold)}.jsonl"


def collect_results(
    name: str, gold: GoldSet, cache: Path, settings: Settings
) -> list[QuestionResult]:
    """Every question of ``gold`` through the pipeline (open corpus), cached at
    ``results_path`` (without the passage list) so a re-run reads nothing again, and a
    changed reader, reranker, verifier or gold set reads afresh."""
    path = results_path(name, gold, cache, settings)
    if path.exists():
        return read_results(path)
    run = Evaluator(settings, progress=True).run(gold)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for r in run.results:
            row = dataclasses.asdict(r)
            row["passages"] = []
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return run.results


def gold_index(gold: GoldSet, name: str, **overrides: object) -> Pipeline:
    """A pipeline over an index of the gold set's documents, built once under index/."""
    settings = Settings(index_name=name, **overrides)  # type: ignore[arg-type]
    pipe = Pipeline(settings)
    report = pipe.ingest(gold.documents)
    print(
        f"index {name}: {len(report.added)} added, {len(report.unchanged)} unchanged, "
        f"{report.chunks_embedded} chunks embedded in {report.seconds:.1f}s"
    )
    return pipe


__all__ = [
    "SQUAD_DEV",
    "SQUAD_V2_HALF",
    "SQUAD_V11",
    "LoadResult",
    "checked",
    "collect_results",
    "gold_index",
    "load_squad",
    "percentile",
    "probed",
    "read_results",
    "verifier_fits",
]
