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
from rag.reader.base import Reader, ReaderConfigError, feature_values
from rag.reader.probe import AnswerabilityProbe, load_probe
from rag.reader.selection import Selection, selection_rows
from rag.reader.sentences import sentence_bounds
from rag.reader.span_format import VERIFIER_FIT_FILE, WindowConfig
from rag.reader.span_model import (
    CLS_INDEX,
    SpanModel,
    Window,
    collate,
    decode,
    encode_windows,
    encoder_dtype,
    load_reader,
    load_tokenizer,
    quantize_encoder,
)
from rag.reader.verifier import span_features
from rag.text import blank_markup, markup_ranges

# The span reader's abstention when no fit file is there: answer when the best span beats
# "no answer", with sigmoid(margin) as confidence.
UNFITTED = Abstention(threshold=0.0, features=("score",), objective="f1")


@dataclass(frozen=True, slots=True)
class _Reading:
    """A candidate span's best reading: its margin over the window's "no answer", that
    window's no-answer score, where (the window, its start and end tokens), and the
    answerability probe's logit there (None without a probe)."""

    score: float
    null: float
    window: int
    start_token: int
    end_token: int
    probe: float | None = None


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

    Candidates are ranked by the fitted ``selection`` (``rag.reader.selection``) when
    given, else by ``score - rank_weight * log(read rank)``: the no-answer score differs
    from window to window, so margins of different passages compare badly (on news quizzes
    every window leans to "no answer"), and the retrieval rank of the passage a span was
    read from, the other passages' agreement and the answer's shape are evidence the
    margin lacks (``bench/span_selection.py``).

    With ``skip_markup`` it reads markup in the text (``rag.text.markup_ranges``: HTML tags,
    comments, web addresses) as blanks of the same length, and offers no span that holds any.

    With ``probe`` it reads the answerability probe saved with its weights
    (``rag.reader.probe``) off the same states, and offers each candidate's logit as the
    "probe" feature.
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
        checker: Path | None = None,
        checker_candidates: int = 4,
        selection: Selection | None = None,
        skip_markup: bool = True,
        probe: bool = False,
    ) -> None:
        if not rank_weight >= 0.0:
            raise ValueError(f"rank_weight must be >= 0, got {rank_weight}")
        if checker_candidates < 1:
            raise ValueError(f"checker_candidates must be >= 1, got {checker_candidates}")
        if pad_multiple < 1 or batch_multiple < 1:
            raise ValueError(
                f"pad_multiple and batch_multiple must be >= 1, got {pad_multiple}, "
                f"{batch_multiple}"
            )
        self.dtype = encoder_dtype(dtype)
        self.pad_multiple = pad_multiple
        self.batch_multiple = batch_multiple
        self.folder = folder
        self.checker = checker
        self.checker_candidates = checker_candidates
        self.rank_weight = rank_weight
        self.selection = selection
        self.skip_markup = skip_markup
        self.probe = probe
        self.abstention = abstention
        self.fit_file = fit_file
        self.margin_chars = margin_chars
        self.max_answer_tokens = max_answer_tokens
        self.batch_size = batch_size
        self.quantize = quantize
        self._model: SpanModel | None = None
        self._checker: SpanModel | None = None
        self._probe: AnswerabilityProbe | None = None
        self._tokenizer: Any = None
        self._window = WindowConfig()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        model, config = load_reader(self.folder)
        window = WindowConfig.of(config.get("config", {}))
        if self.probe:
            try:
                self._probe = load_probe(self.folder)
            except ValueError as e:
                raise ReaderConfigError(str(e)) from e
            if self._probe is None:
                raise ReaderConfigError(f"no answerability probe in {self.folder}")
            if self._probe.width != model.qa.in_features:
                raise ReaderConfigError(
                    f"the answerability probe in {self.folder} reads {self._probe.width}-wide "
                    f"states, the reader's are {model.qa.in_features}-wide"
                )
        if self.checker is not None:
            checker, checker_config = load_reader(self.checker)
            if WindowConfig.of(checker_config.get("config", {})) != window:
                raise ReaderConfigError(
                    f"the answer checker {self.checker} reads other windows than the reader"
                )
            self._checker = self._arithmetic(checker)
        self._window = window
        self._tokenizer = load_tokenizer()
        # Last: a reader whose warm-up failed is not taken for a loaded one.
        self._model = self._arithmetic(model)

    def _arithmetic(self, model: SpanModel) -> SpanModel:
        """``model`` with its encoder in the configured arithmetic (int8, or the dtype)."""
        if self.quantize:
            model.encoder = quantize_encoder(model.encoder)
        elif self.dtype != torch.float32:
            model.encoder.to(self.dtype)
        return model

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
        # Markup (tags, web addresses) is read as blanks: offsets stay the document's, and
        # no answer holds markup (a candidate across a blanked tag is dropped).
        markup = [
            markup_ranges(documents[r.doc_id].text, r.start, r.end) if self.skip_markup else []
            for r in regions
        ]
        windows = encode_windows(
            self._tokenizer,
            [questions[r.question] for r in regions],
            [
                blank_markup(documents[r.doc_id].text, r.start, r.end, m)
                for r, m in zip(regions, markup, strict=True)
            ],
            self._window,
        )
        # Per question: each absolute span's best reading (its margin, and where).
        best: list[dict[tuple[str, int, int], _Reading]] = [{} for _ in questions]
        for i in range(0, len(windows), self.batch_size):
            block = windows[i : i + self.batch_size]
            s, e, probe = self._read(block)
            for c in decode(block, s, e, self.max_answer_tokens, top_n=10):
                r = regions[c.sample]
                key = (r.doc_id, r.start + c.start, r.start + c.end)
                if any(a < key[2] and key[1] < b for a, b in markup[c.sample]):
                    continue
                score = c.score - c.null_score
                found = best[r.question]
                if score > (found[key].score if key in found else -math.inf):
                    p = None
                    if probe is not None:
                        base, starts, ends = probe
                        w = c.window
                        p = float(base[w] + starts[w, c.start_token] + ends[w, c.end_token])
                    found[key] = _Reading(
                        score, c.null_score, i + c.window, c.start_token, c.end_token, p
                    )
        ranked = [self._ranked(found, passages[qi]) for qi, found in enumerate(best)]
        spans_of: list[list[Span]] = []
        features_of: list[list[dict[str, float]]] = []
        for qi, items in enumerate(ranked):
            spans = []
            for (doc_id, a, b), reading in items:
                doc = documents[doc_id]
                ca, cb = sentence_bounds(doc.text, a, b)
                spans.append(Span(doc_id, a, b, doc.text[a:b], reading.score, ca, cb))
            nulls = [reading.null for _, reading in items]
            features = span_features(questions[qi], spans, nulls, passages[qi], documents)
            if self._probe is not None:
                for f, (_, reading) in zip(features, items, strict=True):
                    assert reading.probe is not None
                    f["probe"] = reading.probe
            if self.selection is not None and spans:
                order = self._selected(spans, features, passages[qi])
                ranked[qi] = [items[i] for i in order]
                spans = [spans[i] for i in order]
                features = [features[i] for i in order]
            spans_of.append(spans)
            features_of.append(features)
        checks = self._check(windows, ranked) if self._checker is not None else None
        out: list[list[Span]] = []
        for qi, items in enumerate(ranked):
            spans, features = spans_of[qi], features_of[qi]
            if checks is None:
                out.append([replace(s, features=f) for s, f in zip(spans, features, strict=True)])
                continue
            # The features of every candidate (the spans' mass and gaps are over all of
            # them); those the checker did not read are not offered.
            out.append(
                [
                    replace(s, features={**f, "check": checks[qi, key]})
                    for s, f, (key, _) in zip(spans, features, items, strict=True)
                    if (qi, key) in checks
                ]
            )
        return out

    def _selected(
        self,
        spans: Sequence[Span],
        features: Sequence[Mapping[str, float]],
        passages: Sequence[Passage],
    ) -> list[int]:
        """The order (indices into ``spans``) the fitted selection puts one question's
        candidates in, best first (ties keep the margin order)."""
        assert self.selection is not None
        rows = selection_rows(
            [s.text for s in spans],
            features,
            [read_rank(s.doc_id, s.start, s.end, passages, self.margin_chars) for s in spans],
        )
        scores = self.selection.scores(rows)
        return sorted(range(len(spans)), key=lambda i: -scores[i])

    def _inputs(self, block: Sequence[Window]) -> dict[str, torch.Tensor]:
        """``block`` collated and padded to the shape multiples (filler windows: copies of
        the last, whose outputs are dropped)."""
        fill = [block[-1]] * (-len(block) % self.batch_multiple)
        return collate([*block, *fill], self._tokenizer.pad_token_id, self.pad_multiple)

    def _logits(self, model: SpanModel, block: Sequence[Window]) -> tuple[Any, Any]:
        """``model``'s start and end logits over ``block``."""
        s, e = model(**self._inputs(block))
        return s[: len(block)], e[: len(block)]

    def _read(self, block: Sequence[Window]) -> tuple[Any, Any, Any]:
        """The reader's start and end logits over ``block``, and with a probe its parts per
        window (``AnswerabilityProbe.windows``), else None."""
        assert self._model is not None
        if self._probe is None:
            s, e = self._logits(self._model, block)
            return s, e, None
        inputs = self._inputs(block)
        s, e, hidden = self._model.read(**inputs)
        n = len(block)
        parts = self._probe.windows(
            hidden[:n], inputs["token_type_ids"][:n], inputs["attention_mask"][:n]
        )
        return s[:n], e[:n], parts

    def _check(
        self,
        windows: Sequence[Window],
        ranked: Sequence[Sequence[tuple[tuple[str, int, int], _Reading]]],
    ) -> dict[tuple[int, tuple[str, int, int]], float]:
        """The answer checker's margin of each candidate whose window it reads: the windows
        of each question's best ``checker_candidates`` candidates (most candidates share a
        few windows), as (question, span) -> its start + end logit in its window minus the
        checker's "no answer" ([CLS]) there."""
        assert self._checker is not None
        chosen = sorted(
            {reading.window for items in ranked for _, reading in items[: self.checker_candidates]}
        )
        at = {w: n for n, w in enumerate(chosen)}
        starts, ends = [], []
        for i in range(0, len(chosen), self.batch_size):
            s, e = self._logits(
                self._checker, [windows[w] for w in chosen[i : i + self.batch_size]]
            )
            starts.append(s.float())
            ends.append(e.float())
        if not chosen:
            return {}
        # Windows of one batch are padded alike; across batches to the longest.
        width = max(t.shape[1] for t in starts)
        cs = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in starts])
        ce = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in ends])
        cs_, ce_ = cs.numpy(), ce.numpy()
        out: dict[tuple[int, tuple[str, int, int]], float] = {}
        for qi, items in enumerate(ranked):
            for key, r in items:
                n = at.get(r.window)
                if n is not None:
                    null = cs_[n, CLS_INDEX] + ce_[n, CLS_INDEX]
                    out[qi, key] = float(cs_[n, r.start_token] + ce_[n, r.end_token] - null)
        return out

    def _ranked(
        self, found: Mapping[tuple[str, int, int], _Reading], passages: Sequence[Passage]
    ) -> list[tuple[tuple[str, int, int], _Reading]]:
        """One question's candidates, best first by ``margin - rank_weight * log(read
        rank)``; by margin alone when a fitted selection orders them (its features are
        computed in margin order, where a span's gap does not depend on the rule)."""
        w = 0.0 if self.selection is not None else self.rank_weight
        margin = self.margin_chars

        def selection(item: tuple[tuple[str, int, int], _Reading]) -> float:
            (doc_id, a, b), reading = item
            if w == 0.0:
                return reading.score
            return reading.score - w * math.log(read_rank(doc_id, a, b, passages, margin))

        return sorted(found.items(), key=selection, reverse=True)

    def confidence(self, span: Span) -> float:
        """Platt scaling of the margin when fitted, else sigmoid(margin)."""
        p = self.abstention.probability(feature_values(span))
        return 1.0 / (1.0 + math.exp(-span.score)) if p is None else p
