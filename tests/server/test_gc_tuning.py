"""Start-up objects frozen out of full collections, a higher young threshold; later garbage
still collected."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imagegate.server.gc_tuning import YOUNG_THRESHOLD

# In a subprocess: freezing is for the life of the process, and this one runs the whole suite.
_SCRIPT = """
import gc, sys
from imagegate.server.gc_tuning import tune_collector
startup = [{"i": i} for i in range(50_000)]  # long-lived, GC-tracked, like a started app's
frozen = tune_collector({"IMAGEGATE_GC_TUNING": sys.argv[1]})
old = len(gc.get_objects(generation=2))  # what a full collection would walk
class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a  # a garbage cycle made after start-up
del a, b
print(frozen, gc.get_freeze_count(), old, gc.collect(), gc.get_threshold()[0])
"""


def _run(setting: str) -> tuple[int, int, int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, setting], check=True, capture_output=True, text=True
    ).stdout.split()
    frozen, count, old, collected, young = (int(v) for v in out)
    return frozen, count, old, collected, young


def test_startup_objects_leave_the_old_generation() -> None:
    frozen, count, old, collected, young = _run("1")
    assert frozen == count >= 50_000
    assert young == YOUNG_THRESHOLD
    assert old < 1_000  # the 50k start-up objects are not walked by full collections
    assert collected >= 2  # a cycle made later is still found and freed


@pytest.mark.parametrize("setting", ["0", "off", "false", "NO"])
def test_turned_off_by_the_environment(setting: str) -> None:
    frozen, count, old, collected, young = _run(setting)
    assert (frozen, count, young) == (0, 0, 700)  # CPython's own threshold
    assert old >= 50_000
    assert collected >= 2
