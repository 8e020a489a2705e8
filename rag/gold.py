"""Gold Q&A sets: SQuAD v1.1/v2.0 JSON, JSONL, and BEIR folders.

Malformed input raises GoldFormatError naming the file, the line or JSON path, and the field.

``normalize_answer``, ``exact_match`` and ``f1`` follow the official SQuAD v1.1/v2.0
evaluation script: lower-case, strip punctuation, the articles a/an/the and extra white
space; the best score over the gold answers counts. An empty gold list (an unanswerable
question) scores 1 only for an empty prediction.
"""

from __future__ import annotations

import gzip
import json
import re
import string
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.models import Document


@dataclass(frozen=True, slots=True)
class GoldAnswer:
    text: str
    answer_start: int | None = None


@dataclass(frozen=True, slots=True)
class GoldQuestion:
    """One gold question; no answers means it is unanswerable."""

    id: str
    question: str
    answers: tuple[GoldAnswer, ...]
    doc_id: str | None = None

    @property
    def is_impossible(self) -> bool:
        return not self.answers

    @property
    def answer_texts(self) -> list[str]:
        return [a.text for a in self.answers]


@dataclass
class GoldSet:
    """Questions, and the documents they are asked against (SQuAD contexts) if any."""

    questions: list[GoldQuestion] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    # BEIR relevance judgements: query id -> {doc id: grade}. Empty for answer gold sets.
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def retrieval_only(self) -> bool:
        return bool(self.qrels)


class GoldFormatError(ValueError):
    """A gold file that cannot be read; the message names the line and field."""


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        yield from fh


def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise GoldFormatError(f"{where}: missing field '{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        raise GoldFormatError(f"{where}: field '{key}' has the wrong type")
    return value


def load_squad(path: Path) -> GoldSet:
    """SQuAD v1.1/v2.0 JSON (optionally gzipped): one document per paragraph."""
    try:
        data = json.loads("".join(_open_text(path)))
    except json.JSONDecodeError as exc:
        raise GoldFormatError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    gold = GoldSet()
    for a_i, article in enumerate(_need(data, "data", list, str(path))):
        where_a = f"{path}: data[{a_i}]"
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p_i, para in enumerate(_need(article, "paragraphs", list, where_a)):
            where_p = f"{where_a}.paragraphs[{p_i}]"
            context = _need(para, "context", str, where_p)
            doc_id = f"{title or 'article'}-{a_i:03d}-{p_i:03d}"
            gold.documents.append(
                Document(doc_id, context, str(title).replace("_", " "), {"article": title})
            )
            for q_i, qa in enumerate(_need(para, "qas", list, where_p)):
                where_q = f"{where_p}.qas[{q_i}]"
                question = _need(qa, "question", str, where_q)
                answers: list[GoldAnswer] = []
                if not qa.get("is_impossible"):
                    for n, a in enumerate(_need(qa, "answers", list, where_q)):
                        text = _need(a, "text", str, f"{where_q}.answers[{n}]")
                        answers.append(GoldAnswer(text, a.get("answer_start")))
                    if not answers:
                        raise GoldFormatError(f"{where_q}: answerable but 'answers' is empty")
                qid = str(qa.get("id", f"{a_i}-{p_i}-{q_i}"))
                gold.questions.append(GoldQuestion(qid, question, tuple(answers), doc_id))
    return gold


def load_beir(folder: Path, split: str = "test") -> GoldSet:
    """A BEIR folder: ``corpus.jsonl[.gz]``, ``queries.jsonl``, ``qrels/<split>.tsv``.

    Only queries with qrels are kept. A document's stored text is its title, a new line and
    its text (the BEIR convention of embedding both).
    """

    def first(*names: str) -> Path:
        for name in names:
            if (folder / name).is_file():
                return folder / name
        raise GoldFormatError(f"{folder}: missing {names[0]}")

    gold = GoldSet()
    qrels_path = first(f"qrels/{split}.tsv")
    for lineno, line in enumerate(_open_text(qrels_path), start=1):
        parts = line.rstrip("\n").split("\t")
        if lineno == 1 and parts[0] == "query-id":
            continue
        if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
            raise GoldFormatError(f"{qrels_path}:{lineno}: want 'query-id corpus-id score'")
        gold.qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    for where, rec in _records(first("corpus.jsonl", "corpus.jsonl.gz")):
        doc_id = str(_need(rec, "_id", (str, int), where))
        text, title = _need(rec, "text", str, where), rec.get("title") or ""
        body = f"{title}\n{text}" if title else text
        gold.documents.append(Document(doc_id, body, str(title)))
    for where, rec in _records(first("queries.jsonl", "queries.jsonl.gz")):
        qid = str(_need(rec, "_id", (str, int), where))
        if qid in gold.qrels:
            gold.questions.append(GoldQuestion(qid, _need(rec, "text", str, where), ()))
    return gold


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``file:line``, record) for each non-blank line of a JSONL file."""
    for lineno, line in enumerate(_open_text(path), start=1):
        rec = _jsonl_record(line, f"{path}:{lineno}")
        if rec is not None:
            yield f"{path}:{lineno}", rec


def _jsonl_record(line: str, where: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise GoldFormatError(f"{where}: invalid JSON ({exc.msg})") from exc
    if not isinstance(rec, dict):
        raise GoldFormatError(f"{where}: a record must be a JSON object")
    return rec


def load_gold(path: Path) -> GoldSet:
    """Any supported gold input: a BEIR folder, SQuAD JSON, or JSONL (each maybe gzipped)."""
    if path.is_dir():
        return load_beir(path)
    if not path.is_file():
        raise GoldFormatError(f"{path}: no such file or folder")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".jsonl"):
        return load_jsonl(path)
    if name.endswith(".json"):
        return load_squad(path)
    raise GoldFormatError(f"{path}: want SQuAD .json, .jsonl or a BEIR folder")


def load_jsonl(path: Path) -> GoldSet:
    """JSONL gold: ``question``, ``answers`` (texts or ``{text, answer_start}``), ``doc_id``."""
    gold = GoldSet()
    for lineno, line in enumerate(_open_text(path), start=1):
        where = f"{path}:{lineno}"
        rec = _jsonl_record(line, where)
        if rec is None:
            continue
        if not isinstance(rec.get("question"), str) or not rec["question"].strip():
            raise GoldFormatError(f"{where}: field 'question' must be a non-empty string")
        raw = rec.get("answers", [])
        if not isinstance(raw, list):
            raise GoldFormatError(f"{where}: field 'answers' must be a list")
        answers = []
        for a in raw:
            if isinstance(a, str):
                answers.append(GoldAnswer(a))
            elif isinstance(a, dict) and isinstance(a.get("text"), str):
                answers.append(GoldAnswer(a["text"], a.get("answer_start")))
            else:
                raise GoldFormatError(f"{where}: field 'answers' items must be text or objects")
        gold.questions.append(
            GoldQuestion(
                str(rec.get("id", lineno)), rec["question"], tuple(answers), rec.get("doc_id")
            )
        )
    return gold


# ---- SQuAD answer scoring ---------------------------------------------------------------

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Official SQuAD normalisation."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _em(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """Best EM over the gold answers; unanswerable (no golds) wants an empty prediction."""
    if not golds:
        return float(not normalize_answer(prediction))
    return max(_em(prediction, g) for g in golds)


def f1(prediction: str, golds: Sequence[str]) -> float:
    """Best token F1 over the gold answers; unanswerable (no golds) wants an empty one."""
    if not golds:
        return float(not normalize_answer(prediction))
    return max(_f1(prediction, g) for g in golds)
