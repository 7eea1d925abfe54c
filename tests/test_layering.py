"""Dependencies point one way (DESIGN.md, house style §7.3). Walks every module's imports."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "imagegate"


def imports_of(path: Path) -> Iterator[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    package = ["imagegate", *path.relative_to(SRC).parent.parts]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1]
            yield ".".join([*base, node.module] if node.module else base)


def internal_imports(package: str) -> Iterator[tuple[str, str]]:
    for path in (SRC / package).rglob("*.py"):
        for name in imports_of(path):
            if name == "imagegate" or name.startswith("imagegate."):
                yield str(path.relative_to(SRC)), name


def test_policy_imports_only_the_core() -> None:
    allowed = (
        "imagegate.types",
        "imagegate.config",
        "imagegate.errors",
        "imagegate.catalog",
        "imagegate.policy",
    )
    bad = [(f, n) for f, n in internal_imports("policy") if not n.startswith(allowed)]
    assert not bad, bad


def test_pipeline_upstream_and_routing_never_import_adapters_or_server() -> None:
    forbidden = ("imagegate.stores", "imagegate.server", "imagegate.cli", "imagegate.api")
    bad = [
        (f, n)
        for pkg in ("pipeline", "upstream", "routing")
        for f, n in internal_imports(pkg)
        if n.startswith(forbidden)
    ]
    assert not bad, bad


def test_emulator_imports_nothing_from_imagegate() -> None:
    if not (SRC / "emulator").exists():
        return
    bad = [(f, n) for f, n in internal_imports("emulator") if not n.startswith("imagegate.emulator")]
    assert not bad, bad


def test_policies_do_no_io_and_no_asyncio() -> None:
    forbidden = {"asyncio", "anyio", "httpx", "time", "os", "socket", "logging"}
    bad = [
        (str(p.relative_to(SRC)), n)
        for p in (SRC / "policy").rglob("*.py")
        for n in imports_of(p)
        if n.split(".")[0] in forbidden
    ]
    assert not bad, bad
