"""Synthetic unanswerable rewrites (rag.reader.augment): each rule changes what the question
asks in a way its paragraph cannot answer, and leaves the question alone where it can't."""

from __future__ import annotations

import random

from hypothesis import given, strategies as st

from rag.reader.augment import (
    CONTEXT_MAX_WORDS,
    CONTEXT_MIN_WORDS,
    KINDS,
    context_sentence,
    context_sentences,
    negate,
    swap_antonym,
    swap_entity,
    swap_number,
    unanswerable_rewrites,
)

CONTEXT = (
    "The Eiffel Tower was completed in 1889 by Gustave Eiffel's company. It was the tallest "
    "structure in Paris until 1930. Visitors from Lyon and Marseille climb it every day. "
    "However, critics in Paris called it an eyesore."
)
QUESTION = "When was the Eiffel Tower completed?"
ANSWER = (CONTEXT.index("1889"), CONTEXT.index("1889") + 4)


def test_entity_swap_names_a_paragraph_entity_outside_the_answer_sentence() -> None:
    sentence = CONTEXT[: CONTEXT.index(". It") + 1]
    seen = set()
    for seed in range(30):
        out = swap_entity(QUESTION, CONTEXT, sentence, random.Random(seed))
        assert out is not None and out != QUESTION
        swapped = out.removeprefix("When was the ").removesuffix(" completed?")
        assert swapped in CONTEXT and swapped not in sentence
        seen.add(swapped)
    # Sentence-initial common words ("It", "However", "Visitors") are never taken for names.
    assert seen <= {"Paris", "Lyon and Marseille", "Lyon", "Marseille"}
    assert "Paris" in seen


def test_entity_swap_needs_an_entity_the_answer_sentence_names() -> None:
    sentence = CONTEXT[: CONTEXT.index(". It") + 1]
    assert swap_entity("When was it completed?", CONTEXT, sentence, random.Random(0)) is None


def test_number_swap_picks_a_number_the_paragraph_never_mentions() -> None:
    q = "What was completed in 1889?"
    sentence = CONTEXT[: CONTEXT.index(". It") + 1]
    for seed in range(30):
        out = swap_number(q, CONTEXT, sentence, random.Random(seed))
        assert out is not None
        year = out.removeprefix("What was completed in ").removesuffix("?")
        assert year.isdigit() and year != "1889" and year not in CONTEXT


def test_antonym_only_when_the_paragraph_never_uses_the_opposite() -> None:
    q = "What was the tallest structure in Paris?"
    assert swap_antonym(q, CONTEXT, random.Random(0)) is None  # no opposite of "tallest" listed
    q = "What was the first structure in Paris?"
    assert swap_antonym(q, CONTEXT, random.Random(0)) == "What was the last structure in Paris?"
    assert swap_antonym(q, CONTEXT + " The last one fell.", random.Random(0)) is None
    assert swap_antonym("First, what fell?", "Nothing.", random.Random(0)) == "Last, what fell?"


def test_negation_contracts_the_first_auxiliary_once() -> None:
    assert negate("Which artist did Beyonce marry?") == "Which artist didn't Beyonce marry?"
    assert negate("Was it built in 1889?") == "Wasn't it built in 1889?"
    assert negate("Which artist didn't Beyonce marry?") is None
    assert negate("Who never came back?") is None
    assert negate("Who came back?") is None


def test_rewrites_of_the_example_come_in_kind_order() -> None:
    made = unanswerable_rewrites(QUESTION, CONTEXT, *ANSWER, random.Random(0))
    assert [r.kind for r in made] == ["entity", "negation"]
    assert all(r.question != QUESTION for r in made)


@given(st.text(max_size=80), st.text(max_size=300), st.integers(0, 300), st.integers(0, 40))
def test_rewrites_never_fail_and_always_change_the_question(
    question: str, context: str, start: int, length: int
) -> None:
    start = min(start, len(context))
    end = min(len(context), start + length)
    for r in unanswerable_rewrites(question, context, start, end, random.Random(0)):
        assert r.kind in KINDS
        assert r.question != question


SIBLING = (
    "Paris hosted the Exposition Universelle that year. Tickets were cheap. The fair drew "
    "more than thirty-two million visitors from across Europe and beyond!"
)


def test_context_sentences_are_clauses_of_the_text() -> None:
    found = context_sentences(SIBLING)
    # "Tickets were cheap." is too short to stand as context.
    assert found == [
        "Paris hosted the Exposition Universelle that year.",
        "The fair drew more than thirty-two million visitors from across Europe and beyond!",
    ]


def test_context_sentence_draws_from_the_siblings_only() -> None:
    rng = random.Random(3)
    drawn = {context_sentence([SIBLING, CONTEXT], rng) for _ in range(60)}
    assert drawn <= set(context_sentences(SIBLING)) | set(context_sentences(CONTEXT))
    assert len(drawn) > 2
    assert context_sentence([], rng) is None
    assert context_sentence(["Too short. Also short."], rng) is None


@given(
    st.lists(
        st.lists(st.sampled_from(["alpha", "beta", "Gamma", "delta,", "1889"]), max_size=50),
        max_size=6,
    ),
    st.sampled_from([".", "!", "?", ""]),
    st.integers(0, 2**16),
)
def test_context_sentence_is_a_clause_of_a_sibling(
    sentences: list[list[str]], end: str, seed: int
) -> None:
    siblings = [" ".join(words) + end for words in sentences]
    got = context_sentence(siblings, random.Random(seed))
    if got is None:
        assert not any(context_sentences(t) for t in siblings)
        return
    assert any(got in t for t in siblings)
    assert CONTEXT_MIN_WORDS <= len(got.split()) <= CONTEXT_MAX_WORDS
    assert got[-1] in ".!"
    assert context_sentence(siblings, random.Random(seed)) == got
