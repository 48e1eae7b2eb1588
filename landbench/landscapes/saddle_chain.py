"""A chain of d strict saddles that gradient descent visits one after another, each stay longer.

After S. S. Du, C. Jin, J. D. Lee, M. I. Jordan, A. Singh and B. Poczos, "Gradient descent can take
exponential time to escape saddle points", NeurIPS 2017. Their construction glues quadratic pieces
with splines; this one is a smooth closed form with the same mechanism.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from landbench.landscapes.base import (
    DIM,
    CriticalPoint,
    FamilyField,
    Footprint,
    Known,
    Landscape,
    smoothstep,
    uniform_sphere,
)
from landbench.outcomes import is_diverged
from landbench.spec import Param

#: How many of the chain's saddles ``known`` lists (the others: :meth:`SaddleChain.saddle_point`).
LISTED_SADDLES = 8


class SaddleChain(Landscape):
    r"""``f(x) = sum_i [L/2 x_i^2 + s(x_{i-1}) A(x_i)]``, ``A(u) = -(gamma + L)/2 u^2 + quartic/4 u^4``, ``s(x_0) = 1``.

    ``s(u)`` is a smooth switch: 0 for ``|u| <= m/4``, 1 for ``|u| >= 3m/4``, a quintic smoothstep
    in ``u^2`` between, with ``m = sqrt(gamma/quartic)``. So coordinate i has curvature ``L``
    (stiff, stable) until its predecessor has left 0, and then the double well
    ``-gamma/2 u^2 + quartic/4 u^4`` (unstable at 0, minima at ``+-m``).

    * Saddle i (i = 1..d) at ``x_j = +-m`` for j < i and 0 for j >= i, value ``-(i-1) gamma^2/(4 quartic)``,
      index 1: Hessian eigenvalues ``2 gamma`` (i-1 times), ``-gamma`` (x_i), ``L`` (d-i times).
    * Global minima at ``x_j = +-m`` for all j: ``f* = -d gamma^2/(4 quartic)``, Hessian ``2 gamma I``.
    * Gradient descent with step ``lr`` started near saddle 1: while it waits at saddle i, the
      coordinate that must grow next, x_{i+1}, shrinks by ``|1 - lr L|`` per step; the stay at saddle
      i+1 is then longer by ``ln(1/|1 - lr L|)/ln(1 + lr gamma)`` times the time elapsed so far, so
      the stays grow geometrically, each ``1 + ln(1/|1 - lr L|)/ln(1 + lr gamma)`` times the last
      (Du et al.'s exponential time).
    * Underflow (Du et al. warn of it): that coordinate decays below the smallest normal float
      within a few hundred steps (float32) or a few thousand (float64). In the subnormal range the
      arithmetic no longer follows the real dynamics: GD's increments ``lr * gradient`` lose
      precision, and below ``2^-150 / (lr gamma)`` (float32; ``2^-1075 / (lr gamma)`` in float64)
      they round to zero and the run is stranded for good: an artifact of the arithmetic, not of
      the landscape. ``chain_underflow`` in the records names the saddle whose coordinate is
      subnormal at the end of a run (a run flagged there may still escape later, and slower than
      in real arithmetic, if the coordinate is above that level).

    Escape from saddle i is the first step at which the loss is at most halfway from saddle i's
    value down to saddle i+1's (to f* for the last); records list these steps as ``chain_escapes``.
    """

    family = "saddle_chain"
    outcome_fields = (
        FamilyField(
            "chain_escapes",
            "the step each saddle of the chain was left (null: not left, or the run diverged); summary: the median "
            "number of saddles passed (a diverged run passed none)",
            lambda records: summarize_chain(records),
            lambda summary: f"saddles passed {summary['median_passed']:g}/{summary['saddles']}",
        ),
        FamilyField(
            "chain_underflow",
            "the saddle where a run is stranded because its unstable coordinate is subnormal (null: none); "
            "summary: how many runs are, of how many",
            lambda records: {
                "stranded": sum(r.get("chain_underflow") is not None for r in records),
                "runs": len(records),
            },
            lambda summary: f"underflow {summary['stranded']}/{summary['runs']}" if summary["stranded"] else "",
        ),
    )
    params = (
        DIM,
        Param("gamma", float, 1.0, "negative curvature at each saddle", low=0.0, low_open=True),
        Param("stiffness", float, 2.0, "curvature L of the coordinates not yet reached", low=0.0, low_open=True),
        Param("quartic", float, 1.0, "quartic coefficient of the double wells", low=0.0, low_open=True),
        Param("init_radius", float, 1e-3, "start uniformly on the sphere of this radius about saddle 1", low=0.0),
    )
    formula = "f(x) = sum_i [L/2 x_i^2 + s(x_{i-1}) (-(gamma+L)/2 x_i^2 + quartic/4 x_i^4)], s(x_0) = 1, s a switch"
    reference = "Du, Jin, Lee, Jordan, Singh and Poczos, NeurIPS 2017"
    start = "uniform on the sphere of radius init_radius about saddle 1 (the origin)"

    gamma: float
    stiffness: float
    quartic: float
    init_radius: float

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        """The listed saddles and the minimum: points of dimension d, on the host and the device."""
        points = min(self.dim, LISTED_SADDLES) + 1
        return Footprint(instance=points * self.dim * (8 + dtype.itemsize), host=points * self.dim * 8)

    def _build(self) -> None:
        g, q, d = self.gamma, self.quartic, self.dim
        self.well = math.sqrt(g / q)
        self._switch_low, self._switch_high = (0.25 * self.well) ** 2, (0.75 * self.well) ** 2
        self.step_value = g * g / (4 * q)
        listed = [self.saddle_point(i) for i in range(1, min(d, LISTED_SADDLES) + 1)]
        minimum = CriticalPoint(
            kind="minimum",
            value=-d * self.step_value,
            point=torch.full((d,), self.well, dtype=torch.float64),
            lambda_max=2 * g,
            lambda_min=2 * g,
            trace=2 * g * d,
            note="and its 2^d - 1 sign variants: every coordinate in its well",
        )
        self.known = Known(f_star=minimum.value, saddle=listed[0], minima=[minimum], saddles=listed[1:])

    def saddle_point(self, i: int) -> CriticalPoint:
        """Saddle i of the chain (1 <= i <= dim), built on demand: ``known`` lists only the first
        ``LISTED_SADDLES``, so that a long chain does not store d points of dimension d."""
        if not 1 <= i <= self.dim:
            raise IndexError(f"saddle_chain has saddles 1 to {self.dim}, not {i}")
        return self.place(self._saddle(i))

    def _saddle(self, i: int) -> CriticalPoint:
        d, g, stiff = self.dim, self.gamma, self.stiffness
        point = torch.zeros(d, dtype=torch.float64)
        point[: i - 1] = self.well
        spectrum = [2 * g] * (i - 1) + [-g] + [stiff] * (d - i)
        return CriticalPoint(
            kind="saddle",
            value=-(i - 1) * self.step_value,
            point=point,
            index=1,
            lambda_max=max(spectrum),
            lambda_min=min(spectrum),
            trace=sum(spectrum),
            note=f"saddle {i} of {d}" + (" (runs start near it)" if i == 1 else ""),
        )

    def facts(self) -> dict[str, Any]:
        """The chain's saddle values and the predicted growth of the stays of GD (per lr)."""
        return {
            "saddle_values": f"-(i - 1) gamma^2/(4 quartic) = -(i - 1) * {self.step_value:g}, i = 1..{self.dim}",
            "stay_ratio": "1 + ln(1/|1 - lr stiffness|) / ln(1 + lr gamma) for gradient descent with step lr",
        }

    @property
    def escape_thresholds(self) -> list[float]:
        """Halfway from saddle i's value to the next level: ``-(i - 1/2) gamma^2/(4 quartic)``."""
        return [-(i - 0.5) * self.step_value for i in range(1, self.dim + 1)]

    def _switch(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``s(u)``, ``s'(u)``, ``s''(u)``, with ``s(u) = S((u^2 - a^2)/(b^2 - a^2))``."""
        width = self._switch_high - self._switch_low
        value, slope, curvature = smoothstep((u * u - self._switch_low) / width)
        chain = 2.0 * u / width
        return value, slope * chain, curvature * chain * chain + slope * (2.0 / width)

    def _well(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``A(u) = -(gamma + L)/2 u^2 + quartic/4 u^4`` and its first two derivatives."""
        c, q = self.gamma + self.stiffness, self.quartic
        u2 = u * u
        return -0.5 * c * u2 + 0.25 * q * u2 * u2, (q * u2 - c) * u, 3.0 * q * u2 - c

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``s(x_{i-1})`` per coordinate (1 for the first), and ``s'``, ``s''`` of x_1..x_{d-1}."""
        value, slope, curvature = self._switch(x[:, :-1])
        gate = torch.cat([torch.ones_like(x[:, :1]), value], dim=1)
        return gate, slope, curvature

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        gate, _, _ = self._gates(x)
        return (0.5 * self.stiffness * x * x + gate * self._well(x)[0]).sum(1)

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad_i = L x_i + s(x_{i-1}) A'(x_i) + s'(x_i) A(x_{i+1})``."""
        gate, slope, _ = self._gates(x)
        well, well_slope, _ = self._well(x)
        loss = (0.5 * self.stiffness * x * x + gate * well).sum(1)
        grad = self.stiffness * x + gate * well_slope
        grad[:, :-1] += slope * well[:, 1:]
        return loss, grad

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Tridiagonal Hessian: ``H_ii = L + s(x_{i-1}) A''(x_i) + s''(x_i) A(x_{i+1})``,
        ``H_{i,i+1} = s'(x_i) A'(x_{i+1})``."""
        gate, slope, curvature = self._gates(x)
        well, well_slope, well_curvature = self._well(x)
        diagonal = self.stiffness + gate * well_curvature
        diagonal[:, :-1] += curvature * well[:, 1:]
        off = slope * well_slope[:, 1:]
        out = diagonal * v
        out[:, :-1] += off * v[:, 1:]
        out[:, 1:] += off * v[:, :-1]
        return out

    def record_fields(
        self, x: torch.Tensor, escape_steps: torch.Tensor | None, diverged: torch.Tensor
    ) -> dict[str, list[Any]]:
        """``chain_escapes``: the step each saddle was left (null if not), and ``chain_underflow``:
        the saddle a run is at when the coordinate it must grow is subnormal, below the smallest
        normal float (null if none, or if the run diverged); see the class docstring."""
        assert escape_steps is not None
        steps = escape_steps.cpu()
        tiny = torch.finfo(x.dtype).tiny
        magnitude = x.detach().abs().cpu()
        escapes, underflow = [], []
        for row in range(steps.shape[0]):
            lost = bool(diverged[row])  # a diverged run escaped nothing (landbench.outcomes)
            passed = [int(s) if s >= 0 and not lost else None for s in steps[row]]
            escapes.append(passed)
            current = next((i for i, s in enumerate(passed) if s is None), None)
            stuck = current is not None and not bool(diverged[row]) and bool(magnitude[row, current] < tiny)
            underflow.append(current + 1 if stuck else None)
        return {"chain_escapes": escapes, "chain_underflow": underflow}

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return uniform_sphere(generator, self.dim, self.init_radius)


def summarize_chain(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The saddles each run passed (none for a diverged run), their median and the chain's length."""
    passed = [0 if is_diverged(r) else sum(s is not None for s in r["chain_escapes"]) for r in records]
    saddles = max((len(r["chain_escapes"]) for r in records), default=0)
    return {"saddles": saddles, "passed": passed, "median_passed": statistics.median(passed) if passed else 0}
