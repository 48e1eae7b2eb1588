"""A landscape family in one file: the tilted double well, registered with landbench by the entry point
``double_well = "landbench_double_well:DoubleWell"`` of the group ``landbench.landscapes``
(see pyproject.toml)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import DIM, CriticalPoint, FamilyField, Known, Landscape, uniform_sphere
from landbench.spec import Param


def roots(barrier: float, tilt: float) -> tuple[float, float, float]:
    """The critical points of ``h (u^2 - 1)^2 - t u``: the roots of ``u^3 - u - t/(4h) = 0`` from the
    largest to the smallest (the deep minimum, the saddle, the shallow minimum), by the trigonometric
    formula for a cubic with three real roots (``0 <= t < 8h/(3 sqrt 3)``)."""
    phi = math.acos(1.5 * math.sqrt(3.0) * tilt / (4.0 * barrier))
    deep, saddle, shallow = (2.0 / math.sqrt(3.0) * math.cos(phi / 3.0 - 2.0 * math.pi * k / 3.0) for k in range(3))
    return deep, saddle, shallow


def summarize_wells(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How many runs ended in each well (``well`` is +1, -1 or null: neither, or diverged)."""
    wells = [r.get("well") for r in records]
    diverged = sum(bool(r.get("diverged")) for r in records)
    deep, shallow = wells.count(1), wells.count(-1)
    return {
        "runs": len(records),
        "deep": deep,
        "shallow": shallow,
        "neither": len(records) - deep - shallow - diverged,
        "diverged": diverged,
    }


def describe_wells(summary: dict[str, Any]) -> str:
    """The text of a table cell: ``"deep 75% shallow 25%"``."""
    runs = summary["runs"] or 1
    return f"deep {100 * summary['deep'] / runs:.0f}% shallow {100 * summary['shallow'] / runs:.0f}%"


class DoubleWell(Landscape):
    r"""``f(x) = h (x_1^2 - 1)^2 - t x_1 + c/2 |x_{2..d}|^2``: two wells along x_1, the right one
    deeper by about ``2t``, in a quadratic bowl across.

    With ``u_+ > u_0 > u_-`` the roots of ``u^3 - u - t/(4h)`` (three real ones for
    ``0 <= t < 8h/(3 sqrt 3)``):

    * the global minimum at ``u_+ e_1`` (f* = ``h (u_+^2 - 1)^2 - t u_+``), a local one at ``u_- e_1``;
    * the saddle between them at ``u_0 e_1``, index 1;
    * Hessian ``diag(4h (3u^2 - 1), c, ..., c)`` at each of them.

    Runs start uniformly on the sphere of radius ``init_radius`` about the saddle. A run's record says
    which well it ended in (``well``: +1 the deep one, -1 the shallow one).
    """

    family = "double_well"
    group = "wells"  # the ranking's and the report's family group (its own name if not set)
    params = (
        DIM,
        Param("barrier", float, 1.0, "height h of the barrier of the untilted well", low=0.0, low_open=True),
        Param("tilt", float, 0.25, "tilt t: the right well is deeper by about 2t", low=0.0),
        Param("confinement", float, 1.0, "curvature c across the wells", low=0.0, low_open=True),
        Param("init_radius", float, 0.5, "distance of the start point from the saddle", low=0.0),
    )
    formula = "f(x) = h (x_1^2 - 1)^2 - t x_1 + c/2 |x_{2..d}|^2"
    reference = "landbench's plug-in example (examples/landscape_plugin)"
    start = "uniform on the sphere of radius init_radius about the saddle u_0 e_1"
    outcome_fields = (
        FamilyField(
            "well",
            "the well the run ended in: +1 the deep one, -1 the shallow one (its loss below halfway from that "
            "well's minimum up to the saddle), null neither or diverged; summary: runs per well",
            summarize_wells,
            describe_wells,
        ),
    )

    barrier: float
    tilt: float
    confinement: float
    init_radius: float

    def _check(self) -> None:
        ceiling = 8.0 * self.barrier / (3.0 * math.sqrt(3.0))
        if self.tilt >= ceiling:
            raise SpecError(
                f"double_well: tilt must be below 8 barrier / (3 sqrt 3) = {ceiling:g} (beyond it the shallow "
                f"well is gone), got tilt={self.tilt:g}"
            )

    def _point(self, u: float) -> torch.Tensor:
        point = torch.zeros(self.dim, dtype=torch.float64)
        point[0] = u
        return point

    def _critical(self, kind: str, u: float, note: str) -> CriticalPoint:
        h, t, c, d = self.barrier, self.tilt, self.confinement, self.dim
        along = 4.0 * h * (3.0 * u * u - 1.0)
        curvatures = [along] + [c] * (d - 1)
        return CriticalPoint(
            kind=kind,
            value=h * (u * u - 1.0) ** 2 - t * u,
            point=self._point(u),
            index=int(along < 0),
            lambda_max=max(curvatures),
            lambda_min=min(curvatures),
            trace=sum(curvatures),
            note=note,
        )

    def _build(self) -> None:
        deep, saddle, shallow = roots(self.barrier, self.tilt)
        self._roots = (deep, saddle, shallow)
        low = self._critical("minimum", deep, "the deep well (global minimum)")
        high = self._critical("minimum", shallow, "the shallow well (local minimum)")
        middle = self._critical("saddle", saddle, "the barrier between the wells; runs start near it")
        self.known = Known(f_star=low.value, saddle=middle, minima=[low, high])

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        u, rest = x[:, 0], x[:, 1:]
        return self.barrier * (u * u - 1.0) ** 2 - self.tilt * u + 0.5 * self.confinement * (rest * rest).sum(1)

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad = (4h x_1 (x_1^2 - 1) - t, c x_2, ..., c x_d)``: closed form, no autograd."""
        u = x[:, 0]
        grad = self.confinement * x
        grad[:, 0] = 4.0 * self.barrier * u * (u * u - 1.0) - self.tilt
        return self.loss(x), grad

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``H v = (4h (3 x_1^2 - 1) v_1, c v_2, ..., c v_d)``."""
        out = self.confinement * v
        out[:, 0] = 4.0 * self.barrier * (3.0 * x[:, 0] ** 2 - 1.0) * v[:, 0]
        return out

    def record_fields(
        self, x: torch.Tensor, escape_steps: torch.Tensor | None, diverged: torch.Tensor
    ) -> dict[str, list[Any]]:
        """``well``: +1 or -1 when the final loss is below halfway from that side's minimum up to the
        saddle, null otherwise and for a diverged run."""
        deep, saddle, shallow = self.known.minima[0].value, self.known.saddle.value, self.known.minima[1].value
        x = x.detach()
        loss = self.loss(x)
        right = x[:, 0] > self._roots[1]
        trapped = torch.where(right, loss < 0.5 * (deep + saddle), loss < 0.5 * (shallow + saddle))
        trapped &= ~diverged.to(x.device)
        sides, kept = right.cpu().tolist(), trapped.cpu().tolist()
        return {"well": [(1 if side else -1) if ok else None for side, ok in zip(sides, kept)]}

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return self._point(self._roots[1]) + uniform_sphere(generator, self.dim, self.init_radius)
