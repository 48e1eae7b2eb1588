"""Independent reference computations from theory that several test files use."""

from __future__ import annotations

import math

import scipy.special
import torch


def scalar_escape_step(u0: float, lr: float, gamma: float, quartic: float) -> int:
    """First t >= 1 at which u <- u + lr (gamma u - quartic u^3), from u0, in float64, has
    -gamma/2 u^2 + quartic/4 u^4 <= -gamma^2 / (8 quartic) (halfway from the saddle to f*)."""
    u, threshold = float(u0), -gamma * gamma / (8 * quartic)
    for t in range(1, 100_000):
        u = u + lr * (gamma * u - quartic * u**3)
        if -gamma / 2 * u * u + quartic / 4 * u**4 <= threshold:
            return t
    raise AssertionError("the scalar recursion did not escape")


def noise_escape_mean(lr: float, gamma: float, sigma: float, index: int, radius: float) -> float:
    """DESIGN.md: E[T] ~ [log(r sqrt(a^2-1) / (lr sigma)) - 1/2 (digamma(k/2) + log 2)] / log a, a = 1 + lr gamma."""
    a = 1 + lr * gamma
    return (
        math.log(radius * math.sqrt(a * a - 1) / (lr * sigma)) - 0.5 * (scipy.special.digamma(index / 2) + math.log(2))
    ) / math.log(a)


def dense_hessian(landscape, point: torch.Tensor) -> torch.Tensor:
    """The d x d Hessian of ``landscape.loss`` at one point, by autograd (the reference for the
    documented Hessians of critical points)."""
    return torch.autograd.functional.hessian(lambda z: landscape.loss(z[None])[0], point, vectorize=True)
