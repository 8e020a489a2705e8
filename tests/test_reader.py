"""Sentence splitting, typed narrowing, span merging and the composer (no model)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from rag.models import Abstention, Document, Passage, Span
from rag.reader import (
    SentenceReader,
    compose_answer,
    narrow,
    question_type,
    split_sentences,
)
from tests.conftest import FakeEmbedder


def test_split_sentences_offsets_and_abbreviations() -> None:
    text = "Mr. Smith went to Washington. He met Dr. Jones at 5 p.m. today!  Then?\nNew line"
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "Mr. Smith went to Washington.",
        "He met Dr. Jones at 5 p.m. today!",
        "Then?",
        "New line",
    ]
    for s in sentences:
        assert text[s.start : s.end] == s.text


@given(st.text(max_size=300))
def test_split_sentences_round_trip_property(text: str) -> None:
    for s in split_sentences(text):
        assert text[s.start : s.end] == s.text and s.text.strip() == s.text and s.text


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who said it?", "name"),
        ("Whose idea was it?", "name"),
        ("When did it happen?", "date"),
        ("What year was it built?", "date"),
        ("Where is it?", "place"),
        ("How many people came?", "number"),
        ("How much did it cost?", "number"),
        ("Which company won?", "name"),
        ("Why did it fail?", None),
        ("What is it?", None),
    ],
)
def test_question_types(question: str, kind: str | None) -> None:
    assert question_type(question) == kind


@pytest.mark.parametrize(
    ("question", "sentence", "expected"),
    [
        (
            "Who said the workers would be welcomed?",
            "Deputy Prime Minister Marat Khusnullin said the workers would be welcomed.",
            "Deputy Prime Minister Marat Khusnullin",
        ),
        ("How many sappers will be sent?", "Kim will send 1,000 sappers to Kursk.", "1,000"),
        (
            "When did the incursion start?",
            "The incursion started in August 2024 in Kursk.",
            "August 2024",
        ),
        (
            "How much did it cost?",
            "The bridge cost about $3.5 million to build.",
            "about $3.5 million",
        ),
    ],
)
def test_narrow_finds_typed_span(question: str, sentence: str, expected: str) -> None:
    span = narrow(question, sentence)
    assert span is not None
    assert sentence[span[0] : span[1]] == expected


def test_narrow_skips_candidates_that_repeat_the_question() -> None:
    sentence = "Shoigu met Kim Jong Un in Pyongyang."
    span = narrow("Who met Kim Jong Un in Pyongyang?", sentence)
    assert span is not None and sentence[span[0] : span[1]] == "Shoigu"


def test_narrow_returns_none_without_a_candidate() -> None:
    assert narrow("How many were there?", "There were a lot of them.") is None
    assert narrow("Why did it fail?", "It failed because of rain.") is None


DOC = Document(
    "d",
    "Cats purr. The Eiffel Tower is in Paris. It was finished in 1889. Dogs bark.",
    title="T",
)


def _passage(start: int, end: int, pid: int) -> Passage:
    return Passage(pid, "d", "T", start, end, DOC.text[start:end], 1.0)


def test_overlapping_passages_give_each_sentence_once() -> None:
    reader = SentenceReader(FakeEmbedder())
    # Two overlapping chunks that both hold the Eiffel sentence; one cuts into it.
    spans = reader.read(
        "In what year was it finished?",
        [_passage(0, 45, 1), _passage(20, len(DOC.text), 2)],
        {"d": DOC},
    )
    keys = [(s.context_start, s.context_end) for s in spans]
    assert len(keys) == len(set(keys))
    best = spans[0]
    assert best.text == "1889" and DOC.text[best.start : best.end] == "1889"
    assert DOC.text[best.context_start : best.context_end] == "It was finished in 1889."


def test_sentences_cut_by_chunk_edges_are_read_whole() -> None:
    reader = SentenceReader(FakeEmbedder())
    spans = reader.read("Where is the Eiffel Tower?", [_passage(15, 30, 1)], {"d": DOC})
    assert spans[0].context_start == DOC.text.index("The Eiffel")  # test oracle only


def _reader(threshold: float, calibration: tuple[float, ...] | None = None) -> SentenceReader:
    """A sentence reader whose abstention is ``threshold`` (and ``calibration``)."""
    abstention = Abstention(threshold, calibration, ("score", "narrowed"), "cited")
    return SentenceReader(FakeEmbedder(), abstention=abstention)


def test_compose_answer_cites_round_trip_and_abstains_below_threshold() -> None:
    span = Span("d", 60, 64, "1889", 0.7, 42, 66)
    answer = compose_answer("When?", [span], {"d": DOC}, [_passage(0, 10, 1)], _reader(0.5))
    assert answer.answered and answer.text == "1889"
    (c,) = answer.citations
    assert DOC.text[c.start : c.end] == c.quote and c.start <= answer.start < answer.end <= c.end  # type: ignore[operator]
    low = compose_answer("When?", [span], {"d": DOC}, [_passage(0, 10, 1)], _reader(0.9))
    assert not low.answered and "threshold" in (low.no_answer_reason or "")
    assert low.citations == []
    assert low.withheld == "1889"  # for error analysis only
    none = compose_answer("When?", [], {"d": DOC}, [], _reader(0.0))
    assert not none.answered and none.withheld is None


def test_a_withheld_span_is_never_part_of_a_reply() -> None:
    from service.schemas import AnswerOut

    span = Span("d", 60, 64, "1889", 0.7, 42, 66)
    low = compose_answer("When?", [span], {"d": DOC}, [_passage(0, 10, 1)], _reader(0.9))
    reply = AnswerOut.model_validate(low).model_dump_json()
    assert low.withheld == "1889" and "1889" not in reply


def test_confidence_is_the_fitted_logistic() -> None:
    import math

    narrowed = Span("d", 60, 64, "1889", 0.7, 42, 66)
    whole = Span("d", 42, 66, DOC.text[42:66], 0.7, 42, 66)
    fitted = _reader(0.0, (5.0, 2.0, -4.0))
    assert fitted.confidence(narrowed) == pytest.approx(1 / (1 + math.exp(-1.5)))
    assert fitted.confidence(whole) == pytest.approx(1 / (1 + math.exp(0.5)))
    assert _reader(0.0).confidence(whole) == pytest.approx(0.7)


def test_n_best_answers_are_distinct_cited_and_above_the_threshold() -> None:
    """Up to n answers, best first: a span inside a better one is not offered again, one
    the reader would not answer with alone is not offered at all, each cites its sentence."""
    text = DOC.text
    paris = text.index("Paris")
    spans = [
        Span("d", paris, paris + 5, "Paris", 0.9, 11, 39),  # best
        Span("d", paris + 1, paris + 5, "aris", 0.8, 11, 39),  # inside the best: skipped
        Span("d", 60, 64, "1889", 0.7, 40, 66),  # distinct
        Span("d", 0, 4, "Cats", 0.6, 0, 10),  # distinct
        Span("d", 67, 71, "Dogs", 0.2, 67, 77),  # below the threshold
    ]
    passages = [_passage(0, len(text), 1)]
    answer = compose_answer("Where?", spans, {"d": DOC}, passages, _reader(0.5), n=10)
    assert [c.text for c in answer.answers] == ["Paris", "1889", "Cats"]
    assert (answer.text, answer.start, answer.citations) == (
        "Paris",
        paris,
        answer.answers[0].citations,
    )
    for c in answer.answers:
        assert text[c.start : c.end] == c.text
        (cite,) = c.citations
        assert (
            text[cite.start : cite.end] == cite.quote and cite.start <= c.start < c.end <= cite.end
        )
    assert [
        c.text
        for c in compose_answer("Where?", spans, {"d": DOC}, passages, _reader(0.5), n=2).answers
    ] == ["Paris", "1889"]
    one = compose_answer("Where?", spans, {"d": DOC}, passages, _reader(0.5))
    assert [c.text for c in one.answers] == ["Paris"]
    assert compose_answer("Where?", spans, {"d": DOC}, passages, _reader(0.95), n=3).answers == []
