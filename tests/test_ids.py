"""``imagegate.ids``: unique hex ids without a system call each, reseeded in forked children."""

from __future__ import annotations

import os
import re

import pytest

from imagegate.ids import new_hex_id


def test_ids_are_hex_of_the_asked_width() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_hex_id())
    assert re.fullmatch(r"[0-9a-f]{24}", new_hex_id(96))


def test_ids_do_not_repeat() -> None:
    ids = {new_hex_id(96) for _ in range(100_000)}
    assert len(ids) == 100_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_its_parents_sequence() -> None:
    """Without the reseed a worker forked from the gateway's parent would mint the very ids its
    siblings mint (the generator's state is copied by fork)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids and leave without running pytest's teardown
        try:
            os.write(write, " ".join(new_hex_id() for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    parent = [new_hex_id() for _ in range(4)]
    assert len(child) == 4
    assert not set(child) & set(parent)
