"""Word-level text helpers shared by retrieval and the readers.

Kept apart from ``rag.retrieval`` so that the readers (and reader training, which runs on
machines without FAISS) do not import the retrieval stack.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Function words dropped from BM25 queries and from the readers' overlap scores: they cost
# posting-list reads and add no signal (their IDF is near zero anyway). The usual short
# English list.
STOPWORDS = frozenset(
    "a an and are as at be but by did do does for from had has have he her his how i if in "
    "into is it its of on or she that the their them they this to was were what when where "
    "which who whom whose why will with you".split()
)

# Markup inside a document's text: HTML tags (on one line, of an HTML element's name, and
# with at least one attribute when they carry more than the name: '<a href="https://...">',
# '</a>', '<br/>' are markup, '<War and Peace>' and '<a lot of fun>' are prose), HTML
# comments, and bare web addresses. None of it is prose: no answer is read from it. Each
# part of a tag, a comment and an address is at most MARKUP_MAX_CHARS long (longer runs are
# left as text), so every match is at most _REACH long, which bounds how far outside a
# range one can begin.
MARKUP_MAX_CHARS = 1000
HTML_ELEMENTS = frozenset(
    "a abbr address area article aside audio b base bdi bdo blockquote body br button canvas "
    "caption center cite code col colgroup data dd del details dfn dialog div dl dt em embed "
    "fieldset figcaption figure font footer form h1 h2 h3 h4 h5 h6 head header hr html i "
    "iframe img input ins kbd label legend li link main map mark meta meter nav noscript "
    "object ol optgroup option output p param picture pre progress q rp rt ruby s samp "
    "script section select small source span strong style sub summary sup svg table tbody td "
    "template textarea tfoot th thead time title tr track u ul var video wbr".split()
)
_N = str(MARKUP_MAX_CHARS)
# Up to the first "=" (no "=" before it: one way to split), then the rest of the tag.
_TAG = re.compile(
    r"</?([A-Za-z][A-Za-z0-9]{0,15})(?:[ \t][^<>\n=]{0," + _N + r"}=[^<>\n]{0," + _N + r"})?"
    r"[ \t]{0,8}/?>"
)
_ADDRESS = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']{1," + _N + "}")
# Not the address's: the punctuation of the sentence it ends.
_ADDRESS_TAIL = ".,;:!?)"
_COMMENT_OPEN, _COMMENT_CLOSE = "<!--", "-->"
_REACH = 2 * MARKUP_MAX_CHARS + 32


def _comments(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """HTML comments of ``text[lo:hi]`` at most MARKUP_MAX_CHARS long; linear: a start
    whose nearest close is too far is skipped up to where a close could be near enough."""
    out = []
    i = text.find(_COMMENT_OPEN, lo, hi)
    while i != -1:
        j = text.find(_COMMENT_CLOSE, i + len(_COMMENT_OPEN), hi)
        if j == -1:
            break
        end = j + len(_COMMENT_CLOSE)
        if end - i <= MARKUP_MAX_CHARS:
            out.append((i, end))
            i = text.find(_COMMENT_OPEN, end, hi)
        else:
            i = text.find(_COMMENT_OPEN, max(i + 1, end - MARKUP_MAX_CHARS), hi)
    return out


def markup_ranges(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """The ``(start, end)`` character ranges of markup (tags, comments, web addresses, see
    above) that overlap ``text[start:end]``, in ``text``'s coordinates, in order, merged
    where they overlap or touch. Only a bounded stretch either side is scanned, so the cost
    follows the range, not the document."""
    end = len(text) if end is None else end
    lo, hi = max(0, start - _REACH), min(len(text), end + _REACH)
    window = text[lo:hi]
    found = [
        (lo + m.start(), lo + m.end())
        for m in _TAG.finditer(window)
        if m.group(1).lower() in HTML_ELEMENTS
    ]
    for m in _ADDRESS.finditer(window):
        address = m.group().rstrip(_ADDRESS_TAIL)
        found.append((lo + m.start(), lo + m.start() + len(address)))
    found += _comments(text, lo, hi)
    merged: list[tuple[int, int]] = []
    for a, b in sorted(found):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return [(a, b) for a, b in merged if a < end and b > start]


def blank_markup(
    text: str,
    start: int = 0,
    end: int | None = None,
    ranges: Sequence[tuple[int, int]] | None = None,
) -> str:
    """``text[start:end]`` with every character of markup turned into a space: the same
    length, so every offset into it still points at the same character of ``text``, and a
    tokenizer that skips whitespace reads only the prose. ``ranges``: the range's
    ``markup_ranges`` when the caller has them already."""
    end = len(text) if end is None else end
    ranges = markup_ranges(text, start, end) if ranges is None else ranges
    parts = []
    at = start
    for a, b in ranges:
        a, b = max(a, start), min(b, end)
        parts += [text[at:a], " " * (b - a)]
        at = b
    parts.append(text[at:end])
    return "".join(parts)
