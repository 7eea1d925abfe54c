"""Recent latency per (deployment, quality), decayed by time, for least-latency routing.

Image latency depends far more on quality and size than on the deployment (a ``low`` image takes a
few seconds, a ``high`` 1536×1024 one can take minutes), so estimates are kept per (deployment,
quality): comparing a deployment's ``high`` samples with another's ``low`` ones would be noise.

Estimator: an exponentially weighted mean and variance where a sample's weight grows with the time
since the previous one::

    alpha = 1 - (1 - alpha_min) · 2 ** (-dt / half_life_s)

so after a quiet hour one fresh sample dominates (old figures describe an old load), while a burst
of samples in one second still averages. ``p95 ≈ mean + 1.645 · stddev``: a normal approximation
that is cheap and adequate for ranking; a quantile sketch would do better for SLO reporting.
Unknown deployments read as ``prior_s`` so least-latency routing still explores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LatencyConfig", "LatencyEstimate", "estimate", "observe", "p95"]

DEFAULT_PRIOR_S = 15.0  # "~15 s each" for an Azure gpt-image request (azure-images-api.md §8.3)
DEFAULT_ALPHA_MIN = 0.2
DEFAULT_HALF_LIFE_S = 300.0
Z_95 = 1.645


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyConfig:
    prior_s: float = DEFAULT_PRIOR_S
    alpha_min: float = DEFAULT_ALPHA_MIN
    half_life_s: float = DEFAULT_HALF_LIFE_S

    def __post_init__(self) -> None:
        if not (self.prior_s > 0 and 0 < self.alpha_min <= 1 and self.half_life_s > 0):
            raise ValueError(
                f"prior_s={self.prior_s!r} must be > 0, alpha_min={self.alpha_min!r} in (0, 1], "
                f"half_life_s={self.half_life_s!r} > 0"
            )


@dataclass(frozen=True, slots=True)
class LatencyEstimate:
    mean_s: float = 0.0
    var_s2: float = 0.0
    samples: int = 0
    updated_at: float = -math.inf


def _alpha(cfg: LatencyConfig, est: LatencyEstimate, now: float) -> float:
    if est.samples == 0:
        return 1.0
    dt = max(0.0, now - est.updated_at)
    return 1.0 - (1.0 - cfg.alpha_min) * math.exp(-math.log(2.0) * dt / cfg.half_life_s)


def observe(cfg: LatencyConfig, est: LatencyEstimate, sample_s: float, now: float) -> LatencyEstimate:
    """Fold one measured latency (seconds, ≥ 0) in. Negative samples are clamped to 0."""
    x = max(0.0, sample_s)
    a = _alpha(cfg, est, now)
    diff = x - est.mean_s
    mean = est.mean_s + a * diff
    var = (1.0 - a) * (est.var_s2 + a * diff * diff)
    return LatencyEstimate(mean_s=mean, var_s2=var, samples=est.samples + 1, updated_at=now)


def estimate(cfg: LatencyConfig, est: LatencyEstimate | None) -> float:
    """Expected latency in seconds (the prior when nothing was observed)."""
    if est is None or est.samples == 0:
        return cfg.prior_s
    return est.mean_s


def p95(cfg: LatencyConfig, est: LatencyEstimate | None) -> float:
    """A p95-ish latency (normal approximation); twice the prior when unknown."""
    if est is None or est.samples == 0:
        return 2.0 * cfg.prior_s
    return est.mean_s + Z_95 * math.sqrt(max(0.0, est.var_s2))
