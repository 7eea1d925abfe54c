"""The active health-probe loop: asks the scheduler which deployments are due, probes them with
a request that cannot generate (``policy.health``), and records the answers.

``probe`` is injected (the upstream client's ``probe`` in the gateway; a fake in tests) and
returns the HTTP status (None: no response), the upstream error ``code`` and whether it timed out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from imagegate.policy.health import ProbeResult
from imagegate.routing.scheduler import AttemptResult, Scheduler, Sleep

__all__ = ["ProbeAnswer", "probe_due", "run_prober"]

ProbeAnswer = tuple[int | None, str | None, bool]
ProbeFn = Callable[[str], Awaitable[ProbeAnswer]]


async def probe_due(scheduler: Scheduler, probe: ProbeFn) -> dict[str, ProbeResult]:
    """Probe every deployment that is due now, one after another; returns what was learnt."""
    learnt: dict[str, ProbeResult] = {}
    for name in await scheduler.due_probes():
        lease = await scheduler.begin_probe(name)
        if lease is None:
            continue
        try:
            status, code, timed_out = await probe(name)
        except BaseException:
            await scheduler.finish(lease, AttemptResult(status=None, cancelled=True))  # just release
            raise
        learnt[name] = await scheduler.finish_probe(lease, status, upstream_code=code, timed_out=timed_out)
    return learnt


async def run_prober(scheduler: Scheduler, probe: ProbeFn, *, sleep: Sleep, tick_s: float = 1.0) -> None:
    """Forever: probe what is due, then sleep ``tick_s``. Cancel the task to stop it."""
    while True:
        await probe_due(scheduler, probe)
        await sleep(tick_s)
