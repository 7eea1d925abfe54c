"""The routing status table ``imagegate doctor`` prints: per deployment, the breaker, quota
headroom and learnt latency that ``AsyncImageGate.status()`` reports.

In a fresh CLI process this shows the configured quota and closed breakers (nothing has been
learnt yet); a long-running gate (the library in your process, or ``imagegate serve``) shows the
live state: a breaker opened by a 429 storm, the effective RPM after learning, the last
``x-ratelimit-remaining-requests`` Azure sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from imagegate.routing import DeploymentView

__all__ = ["COLUMNS", "status_table"]

COLUMNS = (
    "deployment",
    "breaker",
    "rpm (effective/configured)",
    "window used",
    "headroom",
    "azure remaining",
    "in flight",
    "latency",
)

_BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "red"}


def _breaker(v: DeploymentView) -> str:
    style = _BREAKER_STYLE.get(v.breaker, "white")
    text = f"[{style}]{v.breaker}[/]"
    if v.breaker != "closed" and v.breaker_reason:
        text += f" ({v.breaker_reason})"
    return text


def _rpm(v: DeploymentView) -> str:
    if v.configured_rpm is None or v.configured_rpm >= 1e9:
        return "unlimited"
    eff = v.effective_rpm if v.effective_rpm is not None else v.configured_rpm
    return f"{eff:g}/{v.configured_rpm:g}"


def _window(v: DeploymentView) -> str:
    if v.window_allowed is None or v.window_s is None:
        return "-"
    return f"{v.window_used}/{v.window_allowed} per {v.window_s:g}s"


def _remaining(v: DeploymentView) -> str:
    if v.reported_remaining is None or v.reported_age_s is None:
        return "-"
    return f"{v.reported_remaining} ({v.reported_age_s:.0f}s ago)"


def _latency(v: DeploymentView) -> str:
    if not v.latency_s:
        return "-"
    return ", ".join(f"{q}: {s:.1f}s" for q, s in sorted(v.latency_s.items()) if q != "*") or (
        f"{v.latency_s['*']:.1f}s"
    )


def status_table(views: Sequence[DeploymentView]) -> Table:
    table = Table(title="routing status")
    for column in COLUMNS:
        table.add_column(column)
    for v in views:
        table.add_row(
            v.name,
            _breaker(v),
            _rpm(v),
            _window(v),
            f"{v.headroom:.0%}",
            _remaining(v),
            str(v.in_flight),
            _latency(v),
        )
    return table
