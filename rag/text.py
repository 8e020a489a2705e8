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

# Markup inside a document's text: HTML/XML tags and comments (a news page's links:
# '<a href="https://...">'), and bare web addresses. Neither is prose: no answer is read
# from it. A tag is at most MARKUP_MAX_CHARS long (longer angle-bracket runs are left as
# text), which also bounds how far outside a range a tag that crosses its edge can begin.
MARKUP_MAX_CHARS = 1000
_N = str(MARKUP_MAX_CHARS)
_MARKUP = re.compile(
    r"<(?:!--.{0," + _N + r"}?-->|/?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]{0," + _N + r"})?/?>)"
    r"|\b(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]",
    re.DOTALL,
)


def markup_ranges(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """The ``(start, end)`` character ranges of markup (``_MARKUP``) that overlap
    ``text[start:end]``, in ``text``'s coordinates, in order. Only a bounded stretch either
    side is scanned, so the cost follows the range, not the document."""
    end = len(text) if end is None else end
    lo = max(0, start - MARKUP_MAX_CHARS)
    hi = min(len(text), end + MARKUP_MAX_CHARS)
    return [
        (lo + m.start(), lo + m.end())
        for m in _MARKUP.finditer(text[lo:hi])
        if lo + m.start() < end and lo + m.end() > start
    ]


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
