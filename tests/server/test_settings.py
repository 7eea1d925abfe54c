"""Server settings from the environment: defaults, and errors naming the variable, the value and
what is allowed."""

from __future__ import annotations

import pytest

from imagegate.errors import ConfigError
from imagegate.server.settings import settings_from_environ
from imagegate.stores.writebehind import FLUSH_INTERVAL_S, MAX_BATCH, MAX_BUFFERED


def test_write_behind_defaults_and_overrides() -> None:
    default = settings_from_environ({})
    assert (default.ledger_flush_s, default.ledger_batch_rows, default.ledger_max_pending) == (
        FLUSH_INTERVAL_S,
        MAX_BATCH,
        MAX_BUFFERED,
    )
    tuned = settings_from_environ(
        {
            "IMAGEGATE_LEDGER_FLUSH_S": "0.5",
            "IMAGEGATE_LEDGER_BATCH": " 50 ",
            "IMAGEGATE_LEDGER_MAX_PENDING": "50",
        }
    )
    assert (tuned.ledger_flush_s, tuned.ledger_batch_rows, tuned.ledger_max_pending) == (0.5, 50, 50)


def test_the_shutdown_drain_comes_from_serve() -> None:
    assert settings_from_environ({}).ledger_drain_s == 5.0
    assert settings_from_environ({"IMAGEGATE_LEDGER_DRAIN_S": "0.2"}).ledger_drain_s == 0.2


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"IMAGEGATE_LEDGER_FLUSH_S": "0"},
            "IMAGEGATE_LEDGER_FLUSH_S='0' is not a number of seconds above 0",
        ),
        ({"IMAGEGATE_LEDGER_FLUSH_S": "nan"}, "IMAGEGATE_LEDGER_FLUSH_S='nan'"),
        ({"IMAGEGATE_LEDGER_FLUSH_S": "120"}, "at most 60"),
        (
            {"IMAGEGATE_LEDGER_BATCH": "1.5"},
            "IMAGEGATE_LEDGER_BATCH='1.5' is not a whole number from 1 to 100000",
        ),
        ({"IMAGEGATE_LEDGER_BATCH": "0"}, "IMAGEGATE_LEDGER_BATCH='0'"),
        (
            {"IMAGEGATE_LEDGER_BATCH": "100", "IMAGEGATE_LEDGER_MAX_PENDING": "10"},
            "IMAGEGATE_LEDGER_MAX_PENDING='10' is not a whole number from IMAGEGATE_LEDGER_BATCH (100)",
        ),
        ({"IMAGEGATE_URL_TTL_S": "-5"}, "IMAGEGATE_URL_TTL_S='-5' is not a positive number of seconds"),
        (
            {"IMAGEGATE_LEDGER_DRAIN_S": "0"},
            "IMAGEGATE_LEDGER_DRAIN_S='0' is not a number of seconds above 0",
        ),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_environ(environ)
    assert message in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_environ({"IMAGEGATE_LEDGER_BATCH": "x", "IMAGEGATE_PROBE_TICK_S": "-1"})
    text = str(info.value)
    assert "IMAGEGATE_LEDGER_BATCH='x'" in text and "IMAGEGATE_PROBE_TICK_S='-1'" in text
