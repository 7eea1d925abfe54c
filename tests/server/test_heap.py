"""The heap thresholds: image-sized buffers are reused instead of faulted in afresh."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from imagegate.server.heap import keep_large_blocks

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's (this libc has none)"
)

# Rounds of what the gateway does under load: 24 buffers of ~2 MB alive at once (a burst of images
# in flight), all freed, again. Each buffer is written (b"x" * n touches every page), and the
# minor page faults of the later rounds are counted: pages the kernel had to fault in and zero.
_BURSTS = """
import resource, sys
from imagegate.server.heap import keep_large_blocks
tuned = keep_large_blocks({"IMAGEGATE_MALLOC_TUNING": sys.argv[1]})
def burst():
    held = [b"x" * (2_000_000 + 4096 * i) for i in range(24)]
    del held
burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    burst()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(setting: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _BURSTS, setting], check=True, capture_output=True, text=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@glibc_only
def test_tuned_heap_reuses_image_sized_buffers() -> None:
    tuned, tuned_faults = _faults("1")
    untuned, default_faults = _faults("0")
    assert (tuned, untuned) == (True, False)
    pages_per_round = 24 * 2_000_000 // 4096
    # glibc's defaults fault most pages of every round back in; fixed thresholds keep them.
    assert default_faults > 5 * pages_per_round
    assert tuned_faults < default_faults / 10


@pytest.mark.parametrize("setting", ["0", "off", "false", "NO"])
def test_turned_off_by_the_environment(setting: str) -> None:
    assert keep_large_blocks({"IMAGEGATE_MALLOC_TUNING": setting}) is False
