"""Routing driver: per-deployment state and the scheduler that plans, admits and records attempts.

The decisions are in ``imagegate.policy`` (pure); this package holds state and waits.
"""

from __future__ import annotations

from imagegate.routing.scheduler import AttemptResult, DeploymentView, Lease, Scheduler
from imagegate.routing.state import DeploymentState, InMemoryStateStore, StateStore

__all__ = [
    "AttemptResult",
    "DeploymentState",
    "DeploymentView",
    "InMemoryStateStore",
    "Lease",
    "Scheduler",
    "StateStore",
]
