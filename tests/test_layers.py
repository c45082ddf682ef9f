"""The layers import in one direction (the README's and ARCHITECTURE.md's promise, read from the code itself).

``eofusion/`` is pure domain code and imports nothing of ours; ``catalog/`` (the only SQL) imports ``eofusion``;
``plugins/`` (processes and service functions) import both; ``server/`` (the only HTTP) sits on them, ``deploy/``
beside it; the command line (``cli/``) is the top. Every import statement counts, lazy ones inside functions and
``TYPE_CHECKING`` blocks included: a wrong arrow is a wrong arrow wherever it is written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: Each layer and the layers of ours it may import.
ALLOWED: dict[str, frozenset[str]] = {
    "eofusion": frozenset(),
    "catalog": frozenset({"eofusion"}),
    "plugins": frozenset({"eofusion", "catalog"}),
    "server": frozenset({"eofusion", "catalog", "plugins"}),
    "deploy": frozenset({"eofusion", "catalog", "plugins"}),
    "cli": frozenset({"eofusion", "catalog", "plugins", "server", "deploy"}),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def wrong_arrows(root: Path) -> list[str]:
    """``file:line imports X`` for every import of a layer the file's layer may not import."""
    bad = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((root / layer).rglob("*.py")):
            for line, top in imports_of(path):
                if top in ALLOWED and top != layer and top not in allowed:
                    bad.append(f"{path.relative_to(root)}:{line} imports {top}")
    return bad


def test_every_layer_imports_only_the_layers_below_it() -> None:
    assert wrong_arrows(ROOT) == []


@pytest.mark.parametrize(("layer", "imported"), [("eofusion", "catalog"), ("catalog", "server"),
                                                  ("plugins", "server"), ("eofusion", "cli")])
def test_a_wrong_arrow_is_found(tmp_path: Path, layer: str, imported: str) -> None:
    for name in ALLOWED:
        (tmp_path / name).mkdir()
    (tmp_path / layer / "module.py").write_text(f"def f():\n    from {imported}.x import y\n    return y\n")
    assert wrong_arrows(tmp_path) == [f"{layer}/module.py:2 imports {imported}"]
