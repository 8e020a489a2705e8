"""The README keeps its promises: the two set-up commands first, every setting listed."""

from __future__ import annotations

import re

from rag.settings import Settings, settings_markdown
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    assert first_block.group(1).split("\n")[:2] == ["make serve", "make test"]


def test_every_setting_is_documented() -> None:
    missing = [n for n in Settings.model_fields if f"`RAG_{n.upper()}`" not in README]
    assert not missing, f"settings missing from README: {missing}"


def test_settings_table_is_current() -> None:
    table = README.split("<!-- settings:start -->\n")[1].split("\n<!-- settings:end -->")[0]
    assert table == settings_markdown(), (
        "README settings table is stale: regenerate it from rag.settings.settings_markdown()"
    )
