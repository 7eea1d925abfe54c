"""The public surface is exactly what ``imagegate.__all__`` names (httpx's test_exported_members)."""

from __future__ import annotations

import types

import imagegate


def test_all_names_exist_and_are_sorted() -> None:
    for name in imagegate.__all__:
        assert hasattr(imagegate, name), name
    assert list(imagegate.__all__) == sorted(imagegate.__all__)


def test_no_private_leaks() -> None:
    # submodules (imported by other tests in any order) are importable, not exported
    public = {
        n
        for n in dir(imagegate)
        if not n.startswith("_") and not isinstance(getattr(imagegate, n), types.ModuleType)
    }
    public -= {"annotations"}
    assert public <= set(imagegate.__all__), public - set(imagegate.__all__)
