"""Mode connectivity: loss barriers along the straight segment and along a fitted Bezier curve.

The barrier of a path is the maximum of the loss along it minus the larger of its two end values
(Garipov et al. 2018; Draxler et al. 2018). On the straight segment between two minima it is
often high; along a curve with one bend, fitted to keep the loss low, it can be far lower:
minima of many landscapes are connected by low-loss valleys.

References: T. Garipov, P. Izmailov, D. Podoprikhin, D. Vetrov and A. G. Wilson, "Loss surfaces,
mode connectivity, and fast ensembling of DNNs", NeurIPS 2018; F. Draxler, K. Veschgini,
M. Salmhofer and F. A. Hamprecht, "Essentially no barriers in neural network energy landscape",
ICML 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes import Landscape, make
from landbench.rng import cpu_generator
from landbench.spec import Spec
from landbench.threads import choose_threads, using_threads


@dataclass(frozen=True)
class PathProfile:
    """The loss along one path at parameters ``t`` in [0, 1], and its barrier."""

    kind: str  # "linear" or "bezier"
    t: list[float]
    loss: list[float]
    barrier: float  # max(loss) - max(loss at the two ends)
    peak_t: float  # where the maximum is

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "barrier": self.barrier, "peak_t": self.peak_t, "t": self.t, "loss": self.loss}


@dataclass(frozen=True)
class Connectivity:
    """The straight segment and the fitted Bezier curve between ``a`` and ``b``."""

    a: torch.Tensor
    b: torch.Tensor
    linear: PathProfile
    bezier: PathProfile
    bend: torch.Tensor  # the control point theta of the Bezier curve
    fit_loss: float  # the fitted mean loss along the curve

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: both profiles, the fitted mean loss and how far the bend is from the midpoint."""
        return {
            "distance": float((self.b - self.a).norm()),
            "linear": self.linear.as_dict(),
            "bezier": self.bezier.as_dict(),
            "fit_loss": self.fit_loss,
            "bend_offset": float((self.bend - 0.5 * (self.a + self.b)).norm()),
        }


def bezier(a: torch.Tensor, bend: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points ``(1 - t)^2 a + 2 t (1 - t) bend + t^2 b`` of the quadratic Bezier curve, one row per t."""
    t = t[:, None]
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * bend + t * t * b


def _on_landscape(landscape: Landscape, points: torch.Tensor) -> torch.Tensor:
    """Path points mapped onto the feasible set (retracted onto the sphere; as they are elsewhere)."""
    if not landscape.constrained:
        return points
    placed = landscape.retract(points)
    if not bool(torch.isfinite(placed).all()):
        raise SpecError(
            "connectivity: the path passes through a point where the landscape's projection is undefined "
            "(the centre of the sphere: antipodal end points); choose end points that are not antipodal"
        )
    return placed


def _profile(
    landscape: Landscape, path: Callable[[torch.Tensor], torch.Tensor], t: torch.Tensor, kind: str
) -> PathProfile:
    """The loss at ``path(t)``, and the barrier: the highest sample, refined between its neighbours
    by a bounded scalar maximisation (a sampled maximum alone underestimates the barrier)."""
    import scipy.optimize  # here: every command imports this module, scipy.optimize costs 0.4 s

    with torch.no_grad():
        loss = landscape.loss(_on_landscape(landscape, path(t))).double().cpu()

        def along(s: float) -> float:
            point = path(torch.tensor([s], dtype=t.dtype, device=t.device))
            return -float(landscape.loss(_on_landscape(landscape, point))[0])

        peak = int(loss.argmax())
        grid = t.double().cpu()
        low, high = float(grid[max(peak - 1, 0)]), float(grid[min(peak + 1, len(grid) - 1)])
        refined = scipy.optimize.minimize_scalar(along, bounds=(low, high), method="bounded", options={"xatol": 1e-10})
    top, top_t = (
        (-refined.fun, float(refined.x)) if -refined.fun > float(loss[peak]) else (float(loss[peak]), float(grid[peak]))
    )
    ends = max(float(loss[0]), float(loss[-1]))
    return PathProfile(kind, grid.tolist(), loss.tolist(), top - ends, top_t)


def _as_point(landscape: Landscape, point: torch.Tensor | Sequence[float], name: str) -> torch.Tensor:
    point = torch.as_tensor(point, dtype=landscape.dtype).to(landscape.device).reshape(-1)
    if point.numel() != landscape.dim:
        raise SpecError(f"connectivity: {name} has {point.numel()} coordinates, the landscape has dim={landscape.dim}")
    if not bool(torch.isfinite(point).all()):
        raise SpecError(f"connectivity: {name} has non-finite coordinates")
    return point


def fit_bezier(
    landscape: Landscape, a: torch.Tensor, b: torch.Tensor, *, steps: int = 500, samples: int = 32, seed: int = 0
) -> tuple[torch.Tensor, float]:
    """The bend theta minimising the mean loss along ``bezier(a, theta, b, t)``, t uniform on [0, 1].

    The mean is taken over ``samples`` fixed stratified parameters ``t_i = (i + 1/2)/samples``; its
    gradient in theta is ``mean_i 2 t_i (1 - t_i) grad f(phi(t_i))`` (closed-form gradients of the
    landscape; on a constrained landscape, through the retraction by autograd). Adam (lr = 1% of
    |b - a|) starts from the midpoint plus a seeded perturbation of 1% of |b - a|: between
    antipodal points of a symmetric landscape the straight segment is a stationary point of this
    objective, and the perturbation lets the fit leave it. Returns theta and the final mean loss
    (Garipov et al. 2018 fit theta the same way, with random t).
    """
    span = float((b - a).norm())
    scale = span if span > 0 else 1.0
    noise = torch.randn(landscape.dim, generator=cpu_generator(seed, "bezier"), dtype=torch.float64)
    start = 0.5 * (a + b) + (0.01 * scale * noise / noise.norm()).to(device=a.device, dtype=a.dtype)
    bend = torch.nn.Parameter(start.clone())
    optimizer = torch.optim.Adam([bend], lr=0.01 * scale)
    t = (torch.arange(samples, dtype=a.dtype, device=a.device) + 0.5) / samples
    weight = (2 * t * (1 - t))[:, None]
    for _ in range(steps):
        bend.grad = _mean_loss_gradient(landscape, a, bend.detach(), b, t, weight)
        optimizer.step()
    with torch.no_grad():
        fit_loss = float(landscape.loss(_on_landscape(landscape, bezier(a, bend.detach(), b, t))).double().mean())
    return bend.detach(), fit_loss


def _mean_loss_gradient(
    landscape: Landscape, a: torch.Tensor, bend: torch.Tensor, b: torch.Tensor, t: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """The gradient in the bend of the mean loss along the curve. Unconstrained: closed form,
    ``mean_i 2 t_i (1 - t_i) grad f(phi(t_i))``. Constrained: through the retraction by autograd (the
    retraction's Jacobian, ``sqrt(N)/|p| P`` on the sphere, is part of the objective's gradient)."""
    if not landscape.constrained:
        with torch.no_grad():
            return (weight * landscape.loss_and_grad(bezier(a, bend, b, t))[1]).mean(0)
    with torch.enable_grad():
        bend = bend.clone().requires_grad_(True)
        mean = landscape.loss(landscape.retract(bezier(a, bend, b, t))).mean()
        (grad,) = torch.autograd.grad(mean, bend)
    return grad


def connectivity(
    landscape: Landscape | str | Mapping[str, Any] | Spec,
    a: torch.Tensor | Sequence[float],
    b: torch.Tensor | Sequence[float],
    *,
    points: int = 101,
    steps: int = 500,
    samples: int = 32,
    seed: int = 0,
) -> Connectivity:
    """Loss barriers between ``a`` and ``b``: along the straight segment, and along a quadratic
    Bezier curve with one bend fitted by :func:`fit_bezier`, each profiled at ``points`` evenly
    spaced parameters (``points`` odd includes the midpoint).

    Barrier = max of the loss along the path - max(f(a), f(b)). On ``f = (|x|^2 - 1)^2``, antipodal
    minima have linear barrier 1 (the path crosses the origin) and a curve barrier near 0 (the curve
    bends along the ring). On a constrained landscape (the sphere) every path point is retracted
    onto the feasible set.
    """
    landscape = landscape if isinstance(landscape, Landscape) else make(landscape)
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise SpecError(f"connectivity: points must be an integer >= 3, got {points!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise SpecError(f"connectivity: steps must be an integer >= 0, got {steps!r}")
    start, end = _as_point(landscape, a, "a"), _as_point(landscape, b, "b")
    t = torch.linspace(0.0, 1.0, points, dtype=landscape.dtype, device=landscape.device)
    # (points x dim) tensors: one thread below 2^20 elements, as for the engine's batches (landbench.threads)
    with using_threads(choose_threads(max(points, samples) * landscape.dim)):
        linear = _profile(landscape, lambda s: torch.lerp(start, end, s[:, None]), t, "linear")
        bend, fit_loss = fit_bezier(landscape, start, end, steps=steps, samples=samples, seed=seed)
        curve = _profile(landscape, lambda s: bezier(start, bend, end, s), t, "bezier")
    if not (math.isfinite(linear.barrier) and math.isfinite(curve.barrier)):
        raise SpecError("connectivity: the loss along a path is not finite (do the points lie in the landscape?)")
    return Connectivity(start, end, linear, curve, bend, fit_loss)
