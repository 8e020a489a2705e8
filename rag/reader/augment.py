"""Synthetic unanswerable questions: an answerable question rewritten so that its own
paragraph no longer answers it, for teaching the span reader "no answer".

SQuAD v2.0's unanswerable questions were written by people to look like answerable ones
about the same paragraph; its authors sorted them by how (Rajpurkar et al. 2018, table 3):
an entity, number or date swapped for another (21 %), an antonym (20 %), a negation (9 %),
mutual exclusion (15 %), an impossible condition (4 %), other (24 %). The rules here make the
first three kinds from SQuAD v1.1 train questions, whose answers we know, checking against
the paragraph so that the rewrite is unanswerable in it as far as text can tell:

- **entity swap**: a capitalised phrase of the question that the answer's sentence names is
  replaced by another capitalised phrase of the paragraph that the answer's sentence does not
  name (so the rewrite still shares the paragraph's words, as the adversarial ones do);
- **number swap**: a number of the question that the answer's sentence holds is replaced by a
  nearby one the paragraph never mentions;
- **antonym**: a word of a small list (first/last, largest/smallest, ...) is replaced by its
  opposite when the paragraph never uses the opposite;
- **negation**: the question's first auxiliary verb negated ("did" -> "didn't").

The rewrites are noisy (an entity swap can name someone the paragraph also answers for); the
reader sees each beside its answerable original, so what it learns is the difference.

News quizzes ask with context their evidence passage does not hold ("The US observed the
first anniversary of the January 6 Capitol insurrection this week. About how many people
have been arrested ...?"), and a reader trained on SQuAD, whose questions were written from
their paragraph, reads unmatched context as "not answered here". ``context_sentence`` draws
such a context for a SQuAD question: a sentence of another paragraph of its article (on its
topic, not in its passage), to stand before the question, answerable or not.

Used by ``bench/reader_synthetic_data.py`` and ``bench/reader_preamble_data.py``; no model
and no I/O here.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.reader.sentences import sentence_bounds, split_sentences

# A context sentence of this many words at least and at most: a clause, not a heading or a
# paragraph-long list.
CONTEXT_MIN_WORDS = 6
CONTEXT_MAX_WORDS = 40

# Opposites, both ways; single lower-case words, replaced keeping the first letter's case.
ANTONYMS: dict[str, str] = {}
for _a, _b in [
    ("first", "last"),
    ("largest", "smallest"),
    ("larger", "smaller"),
    ("biggest", "smallest"),
    ("most", "least"),
    ("more", "less"),
    ("highest", "lowest"),
    ("higher", "lower"),
    ("before", "after"),
    ("earliest", "latest"),
    ("earlier", "later"),
    ("increase", "decrease"),
    ("increased", "decreased"),
    ("north", "south"),
    ("northern", "southern"),
    ("east", "west"),
    ("eastern", "western"),
    ("maximum", "minimum"),
    ("oldest", "youngest"),
    ("older", "younger"),
    ("longest", "shortest"),
    ("longer", "shorter"),
    ("best", "worst"),
    ("major", "minor"),
    ("private", "public"),
    ("inside", "outside"),
    ("won", "lost"),
    ("win", "lose"),
    ("ancient", "modern"),
    ("above", "below"),
    ("start", "end"),
    ("began", "ended"),
    ("success", "failure"),
    ("successful", "unsuccessful"),
    ("positive", "negative"),
    ("male", "female"),
    ("rich", "poor"),
    ("allowed", "forbidden"),
    ("accepted", "rejected"),
    ("internal", "external"),
    ("upper", "lower"),
    ("heaviest", "lightest"),
    ("fastest", "slowest"),
    ("widest", "narrowest"),
    ("deepest", "shallowest"),
    ("cheapest", "most expensive"),
]:
    ANTONYMS[_a] = _b
    ANTONYMS.setdefault(_b, _a)

# Auxiliary verbs and their negated contractions ("did" -> "didn't": the rewrite stays a
# question in the original's word order).
NEGATED = {
    "is": "isn't",
    "are": "aren't",
    "was": "wasn't",
    "were": "weren't",
    "did": "didn't",
    "does": "doesn't",
    "do": "don't",
    "can": "can't",
    "could": "couldn't",
    "has": "hasn't",
    "have": "haven't",
    "had": "hadn't",
    "will": "won't",
    "would": "wouldn't",
    "should": "shouldn't",
}
KINDS = ("entity", "number", "antonym", "negation")

# A capitalised phrase: capitalised words, possibly joined by "of", "the", "and", "de" ...
_CAPITAL = r"[A-Z](?:\.|[\w'\-]*)"
_ENTITY = re.compile(
    rf"\b{_CAPITAL}(?:[ \t]+(?:(?:of|the|and|de|van|von|da|del|la|le|for)[ \t]+)*{_CAPITAL})*"
)
_SENTENCE_START = re.compile(r"(?:^|[.!?][\"')\]]*\s+)[\"'(\[]*$")
MONTHS = frozenset(
    "January February March April May June July August September October November December".split()
)
_NUMBER = re.compile(r"\b\d{1,4}(?:,\d{3})*(?:\.\d+)?\b")
_WORD = re.compile(r"[A-Za-z]+")
# Question words and others that start questions capitalised without naming anything.
_NOT_ENTITIES = frozenset(
    "What Which Who Whom Whose When Where Why How In On At By For From To Of The A An "
    "During After Before Since Along About Under Over Is Are Was Were Did Does Do Can "
    "Could Has Have Had Will Would Should According Besides Other Along Apart".split()
)


@dataclass(frozen=True, slots=True)
class Rewrite:
    """An unanswerable rewrite of a question, and which rule made it."""

    kind: str
    question: str


def _entities(text: str) -> list[tuple[int, int, str]]:
    """Capitalised phrases of ``text`` with their ranges. Leading question words are dropped,
    and so is a sentence's first word unless ``text`` capitalises it inside a sentence too
    (else it may be a common word capitalised by its place: "It", "However", "Warm")."""
    named = {
        m.group(0)
        for m in re.finditer(r"\b[A-Z][\w'\-]*", text)
        if not _SENTENCE_START.search(text[: m.start()])
    }
    out = []
    for m in _ENTITY.finditer(text):
        words = list(re.finditer(r"\S+", m.group(0)))
        while words and words[0].group(0) in _NOT_ENTITIES:
            words.pop(0)
        if (
            words
            and _SENTENCE_START.search(text[: m.start() + words[0].start()])
            and words[0].group(0) not in named
        ):
            words.pop(0)
        if not words:
            continue
        start = m.start() + words[0].start()
        phrase = text[start : m.end()]
        if phrase[:1].isupper() and len(phrase) > 1:
            out.append((start, start + len(phrase), phrase))
    return out


def _same_kind(a: str, b: str) -> bool:
    """Both month names or neither (a date is swapped for a date, a name for a name)."""
    return (a in MONTHS) == (b in MONTHS)


def swap_entity(question: str, context: str, sentence: str, rng: random.Random) -> str | None:
    """The question with one of its entities that the answer's sentence names replaced by a
    paragraph entity that the sentence does not name; None when there is none."""
    mine = [(a, b, p) for a, b, p in _entities(question) if p in sentence]
    pool = sorted(
        {
            p
            for _, _, p in _entities(context)
            if p not in sentence and p not in question and len(p.split()) <= 4
        }
    )
    if not mine or not pool:
        return None
    a, b, phrase = rng.choice(mine)
    others = [p for p in pool if phrase not in p and p not in phrase and _same_kind(p, phrase)]
    if not others:
        return None
    return question[:a] + rng.choice(others) + question[b:]


def swap_number(question: str, context: str, sentence: str, rng: random.Random) -> str | None:
    """The question with a number the answer's sentence holds replaced by a nearby one that
    the paragraph never mentions; None when there is none."""
    found = [m for m in _NUMBER.finditer(question) if m.group(0) in sentence]
    if not found:
        return None
    m = rng.choice(found)
    raw = m.group(0).replace(",", "")
    if "." in raw:
        return None
    value = int(raw)
    for _ in range(20):
        delta = rng.choice([-1, 1]) * rng.randint(1, max(2, min(10, value // 10 or 2)))
        new = value + delta
        if new >= 0 and str(new) not in context:
            return question[: m.start()] + str(new) + question[m.end() :]
    return None


def swap_antonym(question: str, context: str, rng: random.Random) -> str | None:
    """The question with a word replaced by its opposite, when the paragraph never uses the
    opposite (so it cannot say what the rewrite asks); None when no word qualifies."""
    lowered = context.lower()
    words = [
        m
        for m in _WORD.finditer(question)
        if m.group(0).lower() in ANTONYMS
        and not re.search(rf"\b{re.escape(ANTONYMS[m.group(0).lower()])}\b", lowered)
    ]
    if not words:
        return None
    m = rng.choice(words)
    new = ANTONYMS[m.group(0).lower()]
    if m.group(0)[0].isupper():
        new = new[0].upper() + new[1:]
    return question[: m.start()] + new + question[m.end() :]


def negate(question: str) -> str | None:
    """The question's first auxiliary verb negated ("did" -> "didn't"), when it has one and
    no negation yet."""
    words = question.split()
    if any(w.lower() in {"not", "never", "no"} or "n't" in w.lower() for w in words):
        return None
    for i, w in enumerate(words[:-1]):
        if w.lower() in NEGATED:
            neg = NEGATED[w.lower()]
            words[i] = neg[0].upper() + neg[1:] if w[0].isupper() else neg
            return " ".join(words)
    return None


def unanswerable_rewrites(
    question: str, context: str, answer_start: int, answer_end: int, rng: random.Random
) -> list[Rewrite]:
    """Every rule's rewrite of an answerable question (answer at
    ``context[answer_start:answer_end]``) that applies, in ``KINDS`` order."""
    a, b = sentence_bounds(context, answer_start, answer_end)
    sentence = context[a:b]
    made = {
        "entity": swap_entity(question, context, sentence, rng),
        "number": swap_number(question, context, sentence, rng),
        "antonym": swap_antonym(question, context, rng),
        "negation": negate(question),
    }
    return [Rewrite(k, q) for k in KINDS if (q := made[k]) is not None and q != question]


def context_sentences(text: str) -> list[str]:
    """The sentences of ``text`` that can stand as a question's context: a clause's length
    (``CONTEXT_MIN_WORDS`` to ``CONTEXT_MAX_WORDS`` words) ending in "." or "!"."""
    return [
        s.text
        for s in split_sentences(text)
        if CONTEXT_MIN_WORDS <= len(s.text.split()) <= CONTEXT_MAX_WORDS and s.text[-1:] in ".!"
    ]


def context_sentence(siblings: Sequence[str], rng: random.Random) -> str | None:
    """A context sentence of one of ``siblings`` (the other paragraphs of a question's
    article), drawn with ``rng``; None when none has one."""
    choices = [c for text in siblings for c in context_sentences(text)]
    return rng.choice(choices) if choices else None
