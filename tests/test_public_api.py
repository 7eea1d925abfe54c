"""The public surface is exactly what ``imagegate.__all__`` names (httpx's test_exported_members)."""

from __future__ import annotations

import imagegate


def test_all_names_exist_and_are_sorted() -> None:
    for name in imagegate.__all__:
        assert hasattr(imagegate, name), name
    assert list(imagegate.__all__) == sorted(imagegate.__all__)


def test_no_private_leaks() -> None:
    public = {n for n in dir(imagegate) if not n.startswith("_")}
    # submodules are importable, not exported
    public -= {"annotations", "errors", "cli"}
    assert public <= set(imagegate.__all__), public - set(imagegate.__all__)
