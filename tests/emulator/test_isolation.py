"""The emulator imports nothing from the rest of imagegate (DESIGN.md: a shared schema bug must
not pass in both places)."""

from __future__ import annotations

import ast
from pathlib import Path

import imagegate.emulator

PACKAGE = Path(imagegate.emulator.__file__).parent


def test_emulator_imports_only_itself_from_imagegate() -> None:
    offenders = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 5
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["<relative>"]
            for name in names:
                if name == "<relative>" or (
                    name.startswith("imagegate") and not name.startswith("imagegate.emulator")
                ):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
