"""The span reader: the trained ``SpanModel`` behind the ``Reader`` interface.

It reads the document text around each retrieved passage (a margin either side, merged),
so an answer that crosses a chunk boundary is read whole; every span maps back to document
coordinates through the tokenizer's offsets, and is cited by its whole sentences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from rag.models import Abstention, Document, Passage, Span
from rag.reader.base import Reader, feature_values
from rag.reader.sentences import sentence_bounds
from rag.reader.span_format import VERIFIER_FIT_FILE, WindowConfig
from rag.reader.span_model import (
    SpanModel,
    collate,
    decode,
    encode_windows,
    encoder_dtype,
    load_reader,
    load_tokenizer,
    quantize_encoder,
)
from rag.reader.verifier import span_features

# The span reader's abstention when no fit file is there: answer when the best span beats
# "no answer", with sigmoid(margin) as confidence.
UNFITTED = Abstention(threshold=0.0, features=("score",), objective="f1")


@dataclass(frozen=True, slots=True)
class Region:
    """A character range of a document that the reader reads (for one question)."""

    doc_id: str
    start: int
    end: int
    question: int = 0


def read_regions(
    passages: Sequence[Passage], documents: Mapping[str, Document], margin: int
) -> list[Region]:
    """Ranges of the *documents* around the passages, ``margin`` characters wider on each
    side and merged where they overlap, so that an answer that crosses a chunk boundary is
    inside one range."""
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for p in passages:
        doc = documents.get(p.doc_id)
        if doc is None:
            continue
        by_doc.setdefault(p.doc_id, []).append(
            (max(0, p.start - margin), min(len(doc.text), p.end + margin))
        )
    out: list[Region] = []
    for doc_id, ranges in by_doc.items():
        ranges.sort()
        merged = [list(ranges[0])]
        for a, b in ranges[1:]:
            if a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out += [Region(doc_id, a, b) for a, b in merged]
    return out


def read_rank(doc_id: str, start: int, end: int, passages: Sequence[Passage], margin: int) -> int:
    """The rank (1-based) of the retrieved passage that put ``[start, end)`` of ``doc_id``
    in front of the reader: the best-ranked passage the span overlaps, else the best one
    whose read margin it lies in; ``len(passages) + 1`` when none (not read from these)."""
    near = len(passages) + 1
    for i, p in enumerate(passages, 1):
        if p.doc_id != doc_id:
            continue
        if p.start < end and start < p.end:
            return i
        if p.start - margin < end and start < p.end + margin:
            near = min(near, i)
    return near


class SpanReader(Reader):
    """The trained span reader behind the ``Reader`` interface.

    Reads the document text around each retrieved passage (``margin_chars`` either side,
    merged), all questions and windows of a batch in one encoder pass per ``batch_size``
    windows. A span's score is its start + end logit minus the no-answer (``[CLS]``) score
    of its window: positive when the model prefers the span to "no answer here".

    Candidates are ranked by ``score - rank_weight * log(read rank)``: the no-answer score
    differs from window to window, so margins of different passages compare badly (on news
    quizzes every window leans to "no answer"), and the retrieval rank of the passage a
    span was read from is the evidence the reader lacks (``bench/span_selection.py``).
    """

    kind = "span"

    def __init__(
        self,
        folder: Path,
        margin_chars: int = 200,
        max_answer_tokens: int = 30,
        batch_size: int = 16,
        quantize: bool = False,
        abstention: Abstention = UNFITTED,
        fit_file: Path = VERIFIER_FIT_FILE,
        rank_weight: float = 0.0,
        dtype: str = "float32",
        pad_multiple: int = 1,
        batch_multiple: int = 1,
    ) -> None:
        if not rank_weight >= 0.0:
            raise ValueError(f"rank_weight must be >= 0, got {rank_weight}")
        if pad_multiple < 1 or batch_multiple < 1:
            raise ValueError(
                f"pad_multiple and batch_multiple must be >= 1, got {pad_multiple}, "
                f"{batch_multiple}"
            )
        self.dtype = encoder_dtype(dtype)
        self.pad_multiple = pad_multiple
        self.batch_multiple = batch_multiple
        self.folder = folder
        self.rank_weight = rank_weight
        self.abstention = abstention
        self.fit_file = fit_file
        self.margin_chars = margin_chars
        self.max_answer_tokens = max_answer_tokens
        self.batch_size = batch_size
        self.quantize = quantize
        self._model: SpanModel | None = None
        self._tokenizer: Any = None
        self._window = WindowConfig()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        model, config = load_reader(self.folder)
        if self.quantize:
            model.encoder = quantize_encoder(model.encoder)
        elif self.dtype != torch.float32:
            model.encoder.to(self.dtype)
        self._model = model
        self._window = WindowConfig.of(config.get("config", {}))
        self._tokenizer = load_tokenizer()

    @torch.inference_mode()
    def read_batch(
        self,
        questions: Sequence[str],
        passages: Sequence[Sequence[Passage]],
        documents: Mapping[str, Document],
    ) -> list[list[Span]]:
        self.warm_up()
        assert self._model is not None
        regions: list[Region] = []
        for qi, ps in enumerate(passages):
            for r in read_regions(ps, documents, self.margin_chars):
                regions.append(Region(r.doc_id, r.start, r.end, qi))
        if not regions:
            return [[] for _ in questions]
        windows = encode_windows(
            self._tokenizer,
            [questions[r.question] for r in regions],
            [documents[r.doc_id].text[r.start : r.end] for r in regions],
            self._window,
        )
        # Per question: each absolute span's best (margin, window's no-answer score).
        best: list[dict[tuple[str, int, int], tuple[float, float]]] = [{} for _ in questions]
        for i in range(0, len(windows), self.batch_size):
            block = windows[i : i + self.batch_size]
            # Whole multiples of batch_multiple windows (copies of the last, their outputs
            # dropped): with the padded lengths, a few shapes for every question.
            fill = [block[-1]] * (-len(block) % self.batch_multiple)
            inputs = collate([*block, *fill], self._tokenizer.pad_token_id, self.pad_multiple)
            s, e = (t[: len(block)] for t in self._model(**inputs))
            for c in decode(block, s, e, self.max_answer_tokens, top_n=10):
                r = regions[c.sample]
                key = (r.doc_id, r.start + c.start, r.start + c.end)
                score = c.score - c.null_score
                found = best[r.question]
                if score > found.get(key, (-math.inf, 0.0))[0]:
                    found[key] = (score, c.null_score)
        out: list[list[Span]] = []
        for qi, found in enumerate(best):
            spans, nulls = [], []
            for (doc_id, a, b), (score, null) in self._ranked(found, passages[qi]):
                doc = documents[doc_id]
                ca, cb = sentence_bounds(doc.text, a, b)
                spans.append(Span(doc_id, a, b, doc.text[a:b], score, ca, cb))
                nulls.append(null)
            features = span_features(questions[qi], spans, nulls, passages[qi], documents)
            out.append([replace(s, features=f) for s, f in zip(spans, features, strict=True)])
        return out

    def _ranked(
        self, found: Mapping[tuple[str, int, int], tuple[float, float]], passages: Sequence[Passage]
    ) -> list[tuple[tuple[str, int, int], tuple[float, float]]]:
        """One question's candidates (span -> (margin, no-answer score)), best first by
        ``margin - rank_weight * log(read rank)``."""
        w, margin = self.rank_weight, self.margin_chars

        def selection(item: tuple[tuple[str, int, int], tuple[float, float]]) -> float:
            (doc_id, a, b), (score, _) = item
            if w == 0.0:
                return score
            return score - w * math.log(read_rank(doc_id, a, b, passages, margin))

        return sorted(found.items(), key=selection, reverse=True)

    def confidence(self, span: Span) -> float:
        """Platt scaling of the margin when fitted, else sigmoid(margin)."""
        p = self.abstention.probability(feature_values(span))
        return 1.0 / (1.0 + math.exp(-span.score)) if p is None else p
