from __future__ import annotations

import pytest

from imagegate.errors import (
    ConfigError,
    ContentFiltered,
    ImageGateError,
    InvalidRequest,
    RateLimited,
    UpstreamFailed,
    UpstreamNotSent,
    UpstreamTimeout,
)


def test_invalid_request_names_field_value_and_allowed() -> None:
    err = InvalidRequest.for_field("size", "999x999", "one of 1024x1024, 1536x1024, 1024x1536, auto")
    assert "size" in str(err)
    assert "'999x999'" in str(err)
    assert "1536x1024" in str(err)
    assert err.http_status == 400
    assert err.details() == {"param": "size"}


def test_config_error_lists_every_problem() -> None:
    err = ConfigError(
        ["deployments[0].rpm: must be > 0", "deployments[1].endpoint: missing"], source="x.yaml"
    )
    text = str(err)
    assert "2 configuration problem(s) in x.yaml" in text
    assert "rpm" in text and "endpoint" in text


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (RateLimited("slow down", retry_after_s=3), 429),
        (ContentFiltered("no", categories=["violence"]), 400),
        (UpstreamNotSent("refused"), 503),
        (UpstreamTimeout("late"), 504),
    ],
)
def test_statuses(exc: ImageGateError, status: int) -> None:
    assert exc.http_status == status


def test_timeout_is_a_sent_failure() -> None:
    assert issubclass(UpstreamTimeout, UpstreamFailed)
    assert not issubclass(UpstreamNotSent, UpstreamFailed)
