"""Sentences and typed short answers: the text primitives both readers stand on.

``split_sentences`` cuts a text into sentences with their offsets (linear on any input);
``sentence_bounds`` gives the whole sentences around a span, the context an answer is cited
with; ``narrow`` finds the short typed answer (a name, date, number, place) inside a
sentence for the question types that have one.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

from rag.text import STOPWORDS

# ---- sentences -------------------------------------------------------------------------
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr gen gov sen rep col lt sgt capt inc ltd co corp vs etc "
    "no jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k e.g i.e a.m p.m".split()
)
# Linear on any input: a match may only start where a run of sentence punctuation starts
# (the lookbehind), and the runs are possessive, so 40,000 dots in a row are scanned once
# instead of once per dot.
_BOUNDARY = re.compile(
    r"(?<![.!?…])([.!?…]++[\"'”’)\]]*+)(\s++)(?=[\"'“‘(\[]?[A-Z0-9\u00C0-\u024F])|\n+"
)
_WORD = re.compile(r"\w+", re.UNICODE)
# A word echoes a question word when one is a prefix of the other and both have this many
# letters ("Korean" / "Korea"); shorter prefixes match unrelated words.
PREFIX_ECHO_LETTERS = 4


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of a document: ``text == document.text[start:end]``."""

    start: int
    end: int
    text: str


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of ``text`` with their offsets, white space trimmed off both ends."""
    cuts = [0]
    for m in _BOUNDARY.finditer(text):
        if m.group(1):
            before = text[max(0, m.start() - 12) : m.start()].split()
            prev = before[-1].lower().rstrip(".") if before else ""
            if prev in _ABBREVIATIONS or (len(prev) == 1 and prev.isalpha()):
                continue
            cuts.append(m.end(1))
        else:
            cuts.append(m.end())
    cuts.append(len(text))
    out: list[Sentence] = []
    for a, b in itertools.pairwise(cuts):
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append(Sentence(a, b, text[a:b]))
    return out


def content_terms(text: str) -> set[str]:
    """Lower-cased content words with a crude plural strip: the unit of lexical overlap."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS}


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


# ---- typed short spans -----------------------------------------------------------------
_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan\\.|Feb\\.|Mar\\.|Apr\\.|Aug\\.|Sept?\\.|Oct\\.|Nov\\.|Dec\\."
)
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    "eighty|ninety|hundred|hundreds|thousand|thousands|dozen|dozens|million|millions"
)
_SCALE = r"(?:\s+(?:hundred|thousand|million|billion|trillion))?"
NUMBER = re.compile(
    r"(?:(?:about|around|nearly|almost|some|over|more than|up to|at least)\s+)?"
    r"(?:[$€£¥]\s?)?\d[\d,]*(?:\.\d+)?" + _SCALE + r"(?:\s?(?:%|percent|per cent))?"
    r"|\b(?:" + _NUMBER_WORDS + r")(?:[\s-]+(?:" + _NUMBER_WORDS + r"))*\b",
    re.IGNORECASE,
)
DATE = re.compile(
    r"\b(?:(?:\d{1,2}\s+)?(?:" + _MONTHS + r")(?:\s+\d{1,2}(?:st|nd|rd|th)?)?(?:,?\s+\d{4})?"
    r"|(?:early|mid|late)[\s-]\d{4}s?|\d{4}s?|(?:Monday|Tuesday|Wednesday|Thursday|Friday|"
    r"Saturday|Sunday)|yesterday|today|tomorrow|(?:last|next|this)\s+(?:week|month|year))\b"
)
_NAME_WORD = r"[A-Z\u00C0-\u024F][\w'’.\-]*"
NAME = re.compile(
    _NAME_WORD + r"(?:\s+(?:(?:of|de|da|van|von|bin|al|the|and)\s+)?" + _NAME_WORD + r")*"
)
_NOT_NAMES = frozenset(
    "the a an he she it they we i this that these those in on at but and or if when while "
    "after before as for from with by his her their its our mr mrs ms dr".split()
)


def question_type(question: str) -> str | None:
    """The answer type a question asks for, when it has a typed short answer."""
    q = question.lower()
    if "how many" in q or "how much" in q:
        return "number"
    words = _WORD.findall(q)
    if not words:
        return None
    if {"who", "whom", "whose"} & set(words):
        return "name"
    if "when" in words or re.search(r"\bwhat (year|date|month|day|time)\b", q):
        return "date"
    if "where" in words:
        return "place"
    if "which" in words:
        return "name"
    return None


def _candidates(kind: str, sentence: str) -> list[tuple[int, int]]:
    pattern = {"number": NUMBER, "date": DATE, "name": NAME, "place": NAME}[kind]
    out = []
    for m in pattern.finditer(sentence):
        a, b = m.start(), m.end()
        text = m.group(0)
        if kind in {"name", "place"}:
            words = text.split()
            while words and words[0].lower().strip(".") in _NOT_NAMES:
                a += sentence[a:].index(words[0]) + len(words[0])
                while a < b and sentence[a].isspace():
                    a += 1
                words = words[1:]
            if not words:
                continue
        text = sentence[a:b].rstrip(".,;:")
        b = a + len(text)
        if b > a:
            out.append((a, b))
    return out


def _echoes(word: str, q_terms: set[str]) -> bool:
    """Whether ``word`` repeats a question term (same stem, or one a 4+ letter prefix of the
    other: "Korean" echoes "Korea")."""
    w = _stem(word.lower())
    if w in q_terms:
        return True
    return any(
        min(len(w), len(q)) >= PREFIX_ECHO_LETTERS and (w.startswith(q) or q.startswith(w))
        for q in q_terms
    )


def _trim_echoes(sentence: str, a: int, b: int, q_terms: set[str]) -> tuple[int, int, int]:
    """Drop question words from both ends of ``[a, b)``: (start, end, echoes left inside)."""
    words = [(a + m.start(), a + m.end()) for m in _WORD.finditer(sentence[a:b])]
    # One-letter pieces ("s" of "Russia's") neither answer nor echo anything.
    words = [w for w in words if w[1] - w[0] > 1 or sentence[w[0]].isdigit()]
    n = len(words)
    while words and _echoes(sentence[words[0][0] : words[0][1]], q_terms):
        words.pop(0)
    front_trimmed = len(words) < n
    n = len(words)
    while words and _echoes(sentence[words[-1][0] : words[-1][1]], q_terms):
        words.pop()
    if not words:
        return a, a, 0
    start = words[0][0] if front_trimmed else a
    end = words[-1][1] if len(words) < n else b
    inside = sum(_echoes(sentence[x:y], q_terms) for x, y in words)
    return start, end, inside


def narrow(question: str, sentence: str) -> tuple[int, int] | None:
    """The short typed span of ``sentence`` answering ``question``, relative offsets, or None.

    Question words are trimmed off the ends of each candidate of the asked type, and a
    candidate that is nothing but question words is dropped ("North Korean" does not answer
    "Who leads North Korea?"). Of the rest, the one with fewest question words inside, then
    the one nearest to the question's words in the sentence, wins (answers sit beside the
    words the question repeats).
    """
    kind = question_type(question)
    if kind is None:
        return None
    q_terms = content_terms(question)
    cands: list[tuple[int, int, int]] = []
    for a, b in _candidates(kind, sentence):
        start, end, inside = _trim_echoes(sentence, a, b, q_terms)
        if end > start:
            cands.append((start, end, inside))
    if not cands:
        return None
    anchors = [m.start() for m in _WORD.finditer(sentence) if _echoes(m.group(0), q_terms)]

    def rank(span: tuple[int, int, int]) -> tuple[int, int]:
        a, b, inside = span
        if not anchors:
            return inside, a
        return inside, min(0 if a <= x < b else min(abs(x - a), abs(x - b)) for x in anchors)

    best = min(cands, key=rank)
    return best[0], best[1]


@lru_cache(maxsize=1024)
def _document_sentences(text: str) -> tuple[Sentence, ...]:
    return tuple(split_sentences(text))


def sentences_around(text: str, start: int, end: int) -> list[Sentence]:
    """Whole sentences of ``text`` that overlap ``[start, end)`` (cached per text)."""
    sentences = _document_sentences(text)
    lo = bisect.bisect_right([s.end for s in sentences], start)
    out = []
    for s in sentences[lo:]:
        if s.start >= end:
            break
        out.append(s)
    return out


def sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The range of the whole sentences of ``text`` that ``[start, end)`` touches: the
    context a span reader's answer is cited with."""
    a, b = start, end
    for s in sentences_around(text, start, end):
        a, b = min(a, s.start), max(b, s.end)
    return a, b
