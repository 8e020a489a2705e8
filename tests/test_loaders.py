"""Loaders: formats, ids, and failures reported by name while the rest still load."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from rag.ingest.loaders import (
    LoadError,
    LoadStream,
    html_to_text,
    iter_files,
    load_paths,
    parse_jsonl,
    plan_paths,
)


def test_txt_md_html_jsonl(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("Title line\nBody text.", encoding="utf-8")
    (tmp_path / "sub" / "b.md").write_text("# Heading\n\nSome *markdown*.", encoding="utf-8")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Page</title><style>p{}</style></head>"
        "<body><h1>Big</h1><p>Visible &amp; kept.</p><script>var x;</script></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "d.jsonl").write_text(
        '{"id": "j1", "text": "First.", "title": "T", "metadata": {"lang": "en"}}\n'
        '{"id": 2, "text": "Second."}\n',
        encoding="utf-8",
    )
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    result = load_paths([tmp_path])
    assert result.failures == {}
    docs = {d.id: d for d in result.documents}
    assert set(docs) == {"a.txt", "sub/b.md", "c.html", "j1", "2"}
    assert docs["a.txt"].title == "Title line"
    assert docs["sub/b.md"].title == "Heading"
    assert docs["c.html"].title == "Page"
    assert docs["c.html"].text == "Big\nVisible & kept."
    assert docs["j1"].metadata == {"lang": "en"}
    assert len(docs["a.txt"].sha256) == 64


def test_undecodable_file_is_reported_and_others_load(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa broken")
    result = load_paths([tmp_path])
    assert [d.id for d in result.documents] == ["good.txt"]
    assert list(result.failures) == [str(tmp_path / "bad.txt")]
    assert "UTF-8" in result.failures[str(tmp_path / "bad.txt")]


def test_missing_path_is_reported(tmp_path: Path) -> None:
    result = load_paths([tmp_path / "nope"])
    assert result.documents == []
    assert "no such file" in result.failures[str(tmp_path / "nope")]


def test_single_file_root_is_named_by_its_name(tmp_path: Path) -> None:
    f = tmp_path / "x.md"
    f.write_text("hello", encoding="utf-8")
    assert [d.id for d in load_paths([f]).documents] == ["x.md"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{bad json", "invalid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"text": "no id"}', "'id'"),
        ('{"id": "x"}', "'text'"),
        ('{"id": "x", "text": "t", "metadata": 3}', "'metadata'"),
        ('{"id": "x", "text": "t", "title": 3}', "'title'"),
    ],
)
def test_jsonl_errors_name_line_and_field(line: str, message: str) -> None:
    with pytest.raises(LoadError, match=message) as err:
        list(parse_jsonl(['{"id": "ok", "text": "fine"}', line], source="f.jsonl"))
    assert "f.jsonl:2" in str(err.value)


def test_duplicate_ids_across_files_are_failures(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": "same", "text": "one"}\n', encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"id": "same", "text": "two"}\n', encoding="utf-8")
    result = load_paths([tmp_path])
    assert [d.text for d in result.documents] == ["one"]
    assert "also comes from" in result.failures[str(tmp_path / "b.jsonl")]


def test_html_visible_text_skips_hidden_parts() -> None:
    text, title = html_to_text("<p>a</p><noscript>n</noscript><div>b  c</div>")
    assert text == "a\nb c"
    assert title == ""


def test_a_stream_reads_one_file_at_a_time_and_plans_its_bytes(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text(f"Document number {i}.")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe bad")
    sizes: list[int] = []
    stream = LoadStream([tmp_path], on_file=sizes.append)
    files, total = plan_paths([tmp_path])
    assert files == 4 and total == sum(p.stat().st_size for p in tmp_path.iterdir())
    docs = iter(stream)
    first = next(docs)
    assert first.id == "0.txt" and stream.bytes_read == (tmp_path / "0.txt").stat().st_size
    assert [d.id for d in docs] == ["1.txt", "2.txt"]
    assert stream.bytes_read == total == sum(sizes) and list(stream.failures) == [
        str(tmp_path / "bad.txt")
    ]


def _sorted_rule(root: Path) -> list[tuple[Path, str]]:
    """What the walk must give: every supported file under ``root`` outside hidden parts,
    ordered as sorting all the paths would (the walk no longer builds that list)."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if not any(part.startswith(".") for part in rel.parts) and path.suffix in {".txt", ".md"}:
            out.append((path, rel.as_posix()))
    return out


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(
            st.sampled_from(["a", "b", "a.txt", "B", ".h", "x.md", "y.bin", "a-b"]),
            min_size=1,
            max_size=4,
        ),
        max_size=12,
    )
)
def test_the_walk_gives_every_file_in_sorted_order(tmp_path: Path, trees: list[list[str]]) -> None:
    root = tmp_path / uuid.uuid4().hex
    root.mkdir()
    for parts in trees:
        folder = root.joinpath(*parts[:-1])
        if any(p.is_file() for p in [folder, *folder.parents] if p != root and root in p.parents):
            continue  # a file is already where this folder would go
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / parts[-1]
        if not target.exists():
            target.write_text("x")
    assert list(iter_files(root)) == _sorted_rule(root)


def test_the_walk_survives_deep_folders_and_link_loops(tmp_path: Path) -> None:
    deep = tmp_path
    for _ in range(1200):  # deeper than Python's recursion limit (mkdir(parents) recurses)
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.txt").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "top.txt").write_text("x")
    try:
        ids = [i for _, i in iter_files(tmp_path)]
        assert ids == ["/".join(["d"] * 1200 + ["bottom.txt"]), "top.txt"]
    finally:  # bottom up: shutil.rmtree (pytest's clean-up) recurses once per level too
        (deep / "bottom.txt").unlink()
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent
