"""The package map holds: faces are used, nothing imports upward, the library never
imports the HTTP layer (read from the source with ``ast``; no model, no imports run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Packages with a face: outside the package, only ``rag.<name>`` itself may be imported.
PACKAGES = ("rag.ingest", "rag.store", "rag.reader", "rag.eval", "service.services")
# Each unit's layer: a module may import its own unit and units of lower layers only.
LAYERS = {
    "rag.faces": 0,
    "rag.text": 0,
    "rag.models": 0,
    "rag.validation": 1,
    "rag.settings": 1,
    "rag.gold": 1,
    "rag.ingest": 2,
    "rag.store": 2,
    "rag.reader": 3,
    "rag.retrieval": 3,
    "rag.reranking": 4,
    "rag.pipeline": 5,
    "rag.eval": 6,
    "rag.cli": 7,
    "rag": 7,  # the public API names everything below it
    "service": 8,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, at any depth (function bodies too)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            # ``from rag import chunking``-style imports of submodules.
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(line, m) for line, m in out if m.split(".")[0] in {"rag", "service"}]


def _unit(module: str) -> str:
    """The layered unit a module belongs to (its package, or the module itself)."""
    for unit in sorted(LAYERS, key=len, reverse=True):
        if module == unit or module.startswith(unit + "."):
            return unit
    raise KeyError(module)


SOURCES = sorted(p for top in ("rag", "service", "bench") for p in (ROOT / top).rglob("*.py"))


def _known(module: str) -> bool:
    """Whether ``module`` names a module or package of ours (not a name inside one)."""
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_use_faces_and_never_point_upward(path: Path) -> None:
    here = _module(path)
    problems = []
    for line, target in _imports(path):
        if not _known(target):
            continue
        for package in PACKAGES:
            inside = here == package or here.startswith(package + ".")
            if target.startswith(package + ".") and not inside:
                problems.append(f"line {line}: {target} is inside {package}; import the face")
        if here.startswith("bench"):
            continue  # benches may use any layer (through the faces)
        mine, theirs = _unit(here), _unit(target)
        if theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
            problems.append(
                f"line {line}: {here} (layer {LAYERS[mine]}) imports {target} "
                f"(layer {LAYERS[theirs]})"
            )
    assert not problems, "\n".join(problems)


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checks above are not vacuous: an internal import and an upward one are seen."""
    bad = tmp_path / "bad.py"
    bad.write_text("from rag.store.engine import Store\nimport service.app\n")
    found = {m for _, m in _imports(bad)}
    assert "rag.store.engine" in found and "service.app" in found
    assert _unit("rag.store.engine") == "rag.store" and LAYERS["service"] > LAYERS["rag.pipeline"]
    assert _known("rag.store.engine") and not _known("rag.store.Store")


def test_faces_name_only_what_exists() -> None:
    """Every public name of every face resolves (the lazy maps carry no stale entry)."""
    import importlib

    for face in ("rag", *PACKAGES):
        module = importlib.import_module(face)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{face}.{name}"
