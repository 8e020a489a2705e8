"""Every parser and regex that user text reaches is linear: 1 MB of hostile input costs about
what 1 MB of ordinary input costs.

No absolute time is asserted. Each function runs on an ordinary input and on hostile ones
of the same size, side by side in one child process (CPU time, best of a few runs); the test
fails when a hostile input costs more than ``MAX_RATIO`` times the ordinary one, or when the
child has not finished within ``HARD_CAP_S`` (a quadratic scan of 1 MB takes hours; before
the fixes, 40,000 dots took minutes in the sentence splitter).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from typing import Any

import pytest

SIZE = 1_000_000
# Hostile inputs may cost a few times the ordinary one (more matches, more tokens); a
# superlinear scan of 1 MB costs thousands of times more.
MAX_RATIO = 25.0
HARD_CAP_S = 240.0
# The ordinary input's cost is the best of a few runs; a hostile one runs once (noise can
# only raise its ratio, and the margin above is wide).
BASE_RUNS = 3

ORDINARY_TEXT = "The Eiffel Tower was completed in 1889. It stands in Paris, France! Who built it? "
HOSTILE_TEXT = {
    "dots": ".",
    "dot space": ". ",
    "bangs": "!",
    "ellipses": "…",
    "dot quote": '."',
    "initials": "A. ",
    "letters": "a",
    "digits": "7",
    "spaces": " ",
    "newlines": "\n",
    "capitals": "A",
    "emoji": "\U0001f600",
    "cjk": "中",
    "mixed punctuation": ".!?”’)] ",
}
ORDINARY_HTML = "<div><p>The Eiffel Tower was <b>completed</b> in 1889 &amp; stands.</p></div>\n"
HOSTILE_HTML = {
    "unclosed a": "<a ",
    "bogus comment": "<![foo[",
    "open comment": "<!--",
    "lone lt": "<",
    "attribute": "<a b=",
    "open quote": "<a b='",
    "entities": "&",
    "char refs": "&#",
    "cdata": "<![CDATA[",
    "processing": "<?x",
    "paragraphs": "<p>x",
    "list items": "<li>",
    "scripts": "<script>",
}
# Markup inside plain text (rag.text): the HTML cases, and runs that its own patterns start on.
HOSTILE_MARKUP = {
    **HOSTILE_HTML,
    "comment close": "-->",
    "addresses": "https://",
    "www": "www.",
    "attribute runs": "<a b=c d=e ",
    "long attribute": "<a b=" + "x" * 2000,
}


def _fill(unit: str) -> str:
    return (unit * (SIZE // len(unit) + 1))[:SIZE]


def _cost(fn: Callable[[str], Any], text: str, runs: int = 1) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.process_time()
        fn(text)
        best = min(best, time.process_time() - t0)
    return best


def _functions() -> dict[str, Callable[[str], Any]]:
    from rag.ingest import Chunker
    from rag.ingest.loaders import LoadError, html_to_text
    from rag.models import Document
    from rag.reader.sentences import content_terms, narrow, split_sentences
    from rag.retrieval import keyword_words
    from rag.text import markup_ranges
    from service.services import is_followup, stream_pieces

    chunker = Chunker()

    def html(markup: str) -> object:
        try:
            return html_to_text(markup)
        except LoadError:  # refused (too deep) is an answer too, as long as it is quick
            return None

    return {
        "split_sentences": split_sentences,
        "content_terms": content_terms,
        "narrow": lambda t: narrow("How many people came, and when?", t),
        "chunk": lambda t: chunker.chunk(Document("x", t)),
        "keyword_words": keyword_words,
        "is_followup": lambda t: is_followup(t, 6),
        "stream_pieces": lambda t: stream_pieces(t, 24),
        "html_to_text": html,
        "markup_ranges": markup_ranges,
    }


def _measure(name: str, ordinary: str, hostile: dict[str, str], out: Any) -> None:
    fn = _functions()[name]
    fn(ordinary[:1000])  # warm up (tokenizer files, regex compilation)
    base = _cost(fn, _fill(ordinary), BASE_RUNS)
    ratios = {k: _cost(fn, _fill(unit)) / max(base, 1e-4) for k, unit in hostile.items()}
    out.put({"base_s": base, "ratios": ratios})


CASES = [
    (name, ORDINARY_TEXT, HOSTILE_TEXT)
    for name in [
        "split_sentences",
        "content_terms",
        "narrow",
        "chunk",
        "keyword_words",
        "is_followup",
        "stream_pieces",
    ]
] + [
    ("html_to_text", ORDINARY_HTML, HOSTILE_HTML),
    ("markup_ranges", ORDINARY_HTML, HOSTILE_MARKUP),
]


@pytest.mark.parametrize(("name", "ordinary", "hostile"), CASES, ids=[c[0] for c in CASES])
def test_hostile_inputs_cost_what_ordinary_ones_do(
    name: str, ordinary: str, hostile: dict[str, str]
) -> None:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_measure, args=(name, ordinary, hostile, out))
    child.start()
    child.join(HARD_CAP_S)
    if child.is_alive():
        child.kill()
        pytest.fail(f"{name}: not done with 1 MB inputs after {HARD_CAP_S:.0f} s (superlinear)")
    assert child.exitcode == 0, f"{name}: the measuring process failed"
    result = out.get(timeout=10)
    ratios = result["ratios"]
    print(
        name,
        f"ordinary 1 MB: {result['base_s']:.3f} s CPU;",
        {k: round(r, 2) for k, r in ratios.items()},
    )
    slow = {k: round(r, 1) for k, r in ratios.items() if r > MAX_RATIO}
    assert not slow, f"{name}: hostile inputs cost this many times an ordinary 1 MB: {slow}"


def test_deep_html_is_refused_quickly_not_read_in_part() -> None:
    from rag.ingest.loaders import LoadError, html_to_text

    with pytest.raises(LoadError, match="nested deeper"):
        html_to_text("<div>" * 200_000 + "text")
    assert html_to_text("<p>a <![foo[ b</p> c") == ("a c", "")
