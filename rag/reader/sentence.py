"""The sentence reader: extractive sentence scoring with typed narrowing, no model of its own.

It scores the sentences around the retrieved passages (taken from the original document,
so a sentence cut by a chunk boundary is read whole) and, for question types with a typed
answer (who, when, where, how many, how much, which), narrows the answer to a short span
inside the best sentence.

Sentence score = ``w * cos(question, sentence) + (1 - w) * overlap``, where ``overlap`` is the
share of the question's content words (lower-cased, crude plural stripping) that occur in the
sentence: the cosine catches paraphrase, the overlap rewards the exact terms that
extractive questions usually repeat from their answer sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rag.ingest import Embedder
from rag.models import Abstention, Document, Passage, Span
from rag.reader.base import Reader, feature_values
from rag.reader.sentences import Sentence, content_terms, narrow, sentences_around
from rag.settings import DATA_DIR

# The sentence reader's abstention when no fit file is there: never abstain on a positive
# score, and the clipped score as confidence.
UNFITTED = Abstention(threshold=0.0, features=("score", "narrowed"), objective="cited")


@dataclass(frozen=True, slots=True)
class SentenceKey:
    """A sentence's identity across the passages of one question."""

    doc_id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Plan:
    """The sentences to embed for one question, with their question-word overlaps."""

    question: str
    keys: list[SentenceKey]
    sentences: dict[SentenceKey, Sentence]
    overlaps: dict[SentenceKey, float]


class SentenceReader(Reader):
    """Extractive sentence scorer with typed narrowing (see module docstring)."""

    kind = "sentence"
    fit_file = DATA_DIR / "sentence_reader_fit.json"

    def __init__(
        self,
        embedder: Embedder,
        dense_weight: float = 0.5,
        max_sentences: int = 8,
        abstention: Abstention = UNFITTED,
    ) -> None:
        self.embedder = embedder
        self.dense_weight = dense_weight
        self.max_sentences = max_sentences
        self.abstention = abstention

    def warm_up(self) -> None:
        self.embedder.warm_up()

    def read_batch(
        self,
        questions: Sequence[str],
        passages: Sequence[Sequence[Passage]],
        documents: Mapping[str, Document],
    ) -> list[list[Span]]:
        plans = [self._plan(q, ps, documents) for q, ps in zip(questions, passages, strict=True)]
        # One encoder call for every question and every chosen sentence of the batch.
        texts: list[str] = []
        for plan in plans:
            if plan.keys:
                texts += [plan.question] + [plan.sentences[k].text for k in plan.keys]
        vectors = self.embedder.embed(texts) if texts else np.zeros((0, 0), dtype=np.float32)
        out: list[list[Span]] = []
        row = 0
        for plan in plans:
            if not plan.keys:
                out.append([])
                continue
            block = vectors[row : row + 1 + len(plan.keys)]
            row += 1 + len(plan.keys)
            cosines = np.asarray(block[1:] @ block[0], dtype=float)
            spans = []
            for key, cos in zip(plan.keys, cosines, strict=True):
                s = plan.sentences[key]
                overlap = plan.overlaps[key]
                score = self.dense_weight * float(cos) + (1 - self.dense_weight) * overlap
                rel = narrow(plan.question, s.text)
                a, b = (s.start + rel[0], s.start + rel[1]) if rel else (s.start, s.end)
                doc = documents[key.doc_id]
                spans.append(Span(key.doc_id, a, b, doc.text[a:b], score, s.start, s.end))
            spans.sort(key=lambda sp: -sp.score)
            out.append(spans)
        return out

    def _plan(
        self, question: str, passages: Sequence[Passage], documents: Mapping[str, Document]
    ) -> _Plan:
        """The sentences to embed for one question, with their question-word overlaps."""
        sentences: dict[SentenceKey, Sentence] = {}
        for p in passages:
            doc = documents.get(p.doc_id)
            if doc is None:
                continue
            for s in sentences_around(doc.text, p.start, p.end):
                sentences.setdefault(SentenceKey(p.doc_id, s.start, s.end), s)
        q_terms = content_terms(question)
        overlaps = {
            k: len(q_terms & content_terms(s.text)) / len(q_terms) if q_terms else 0.0
            for k, s in sentences.items()
        }
        # Encoding is the cost: only the sentences sharing most question words are embedded
        # (dict order keeps retrieval rank as the tie-break).
        keys = sorted(sentences, key=lambda k: -overlaps[k])[: self.max_sentences]
        return _Plan(question, keys, sentences, overlaps)

    def confidence(self, span: Span) -> float:
        """The fitted logistic of the score and narrowing, or the clipped score unfitted."""
        p = self.abstention.probability(feature_values(span))
        return min(1.0, max(0.0, span.score)) if p is None else p
