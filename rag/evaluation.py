"""Gold Q&A sets and the official SQuAD answer metrics.

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

from rag.models import Document

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


class GoldFormatError(ValueError):
    """A gold file that cannot be read; the message names the line and field."""


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        yield from fh


def load_squad(path: Path) -> GoldSet:
    """SQuAD v1.1/v2.0 JSON (optionally gzipped): one document per paragraph."""
    data = json.loads("".join(_open_text(path)))
    gold = GoldSet()
    for a_i, article in enumerate(data["data"]):
        title = article.get("title", "")
        for p_i, para in enumerate(article["paragraphs"]):
            doc_id = f"{title or 'article'}-{a_i:03d}-{p_i:03d}"
            gold.documents.append(
                Document(doc_id, para["context"], title.replace("_", " "), {"article": title})
            )
            for qa in para["qas"]:
                answers = (
                    ()
                    if qa.get("is_impossible")
                    else tuple(GoldAnswer(a["text"], a.get("answer_start")) for a in qa["answers"])
                )
                gold.questions.append(GoldQuestion(qa["id"], qa["question"], answers, doc_id))
    return gold


def load_jsonl(path: Path) -> GoldSet:
    """JSONL gold: ``question``, ``answers`` (texts or ``{text, answer_start}``), ``doc_id``."""
    gold = GoldSet()
    for lineno, line in enumerate(_open_text(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldFormatError(f"{where}: invalid JSON ({exc.msg})") from exc
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str):
            raise GoldFormatError(f"{where}: field 'question' must be a string")
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
