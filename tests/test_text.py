"""rag.text: markup found and blanked without moving a character."""

from __future__ import annotations

from hypothesis import given, strategies as st

from rag.text import MARKUP_MAX_CHARS, blank_markup, markup_ranges

LINKED = (
    'The fire is in southern Oregon and <a href="https://www.cnn.com/2021/07/23/us/index.html">'
    "has burned nearly 400,000 acres</a>, the third largest in the state."
)


def test_tags_comments_and_web_addresses_are_markup_and_prose_is_not() -> None:
    text = (
        LINKED + " See https://example.org/a?b=1. <!-- note --> <br/> Resolution 43/53: a < b > c."
    )
    found = [text[a:b] for a, b in markup_ranges(text)]
    assert found == [
        '<a href="https://www.cnn.com/2021/07/23/us/index.html">',
        "</a>",
        "https://example.org/a?b=1",  # the sentence's full stop is not the address's
        "<!-- note -->",
        "<br/>",
    ]


def test_prose_in_angle_brackets_is_not_markup() -> None:
    for prose in (
        "if x <y then we go on, and y> 3",
        "the book <War and Peace> and the show <Friends>",
        "<a lot of fun>",
        "a < b > c",
        "<p\nclass=x>",  # a tag does not span lines
    ):
        assert markup_ranges(prose) == [], prose
    upper = "<P>x</p> <IMG SRC=x.png>"
    assert [upper[a:b] for a, b in markup_ranges(upper)] == ["<P>", "</p>", "<IMG SRC=x.png>"]


def test_blanked_text_keeps_every_offset() -> None:
    blank = blank_markup(LINKED)
    assert len(blank) == len(LINKED)
    assert " ".join(blank.split()) == (
        "The fire is in southern Oregon and has burned nearly 400,000 acres , the third "
        "largest in the state."
    )
    i = LINKED.index("400,000")
    assert blank[i : i + 7] == "400,000"


def test_a_range_that_cuts_a_tag_blanks_its_part_of_it() -> None:
    a = LINKED.index("cnn.com")
    b = LINKED.index("has burned") + 3
    assert blank_markup(LINKED, a, b) == " " * (b - a - 3) + "has"
    assert markup_ranges(LINKED, a, b) == [(LINKED.index("<a"), LINKED.index("has burned"))]


_PIECES = st.lists(
    st.sampled_from(
        [
            "word",
            " ",
            ".",
            "<a href='x'>",
            "</a>",
            "<!-- c -->",
            "https://x.org/p",
            "a < b",
            "/",
            "\n",
        ]
    ),
    max_size=40,
)


@given(_PIECES, st.data())
def test_blanking_any_range_changes_only_markup_and_keeps_the_length(
    pieces: list[str], data: st.DataObject
) -> None:
    text = "".join(pieces)
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    blank = blank_markup(text, start, end)
    assert len(blank) == end - start
    inside = {i for a, b in markup_ranges(text) for i in range(a, b)}
    for i in range(start, end):
        assert blank[i - start] == (" " if i in inside else text[i])
    # A range's markup is the whole text's, clipped to what overlaps it.
    assert markup_ranges(text, start, end) == [
        (a, b) for a, b in markup_ranges(text) if a < end and b > start
    ]


def test_an_overlong_angle_bracket_run_is_left_as_text() -> None:
    text = "<a " + "x" * (MARKUP_MAX_CHARS + 10) + ">"
    assert markup_ranges(text) == []
