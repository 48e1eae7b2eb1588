"""Optimizer iterates step by step, and the 2-D plane in which to show them with the landscape.

The iterates come from the engine's own parts: each run has its own optimizer over a ``(1, d)``
tensor (:class:`~landbench.stepping.SeparateStepper`, valid for every optimizer, closures
included), gradients come from the landscape's closed form plus the scenario's noise stream
(:class:`~landbench.stepping.Evaluator`), and constrained landscapes (the spin glass's sphere) are
projected after every step, exactly as in a benchmark run.

The plane (Li et al. 2018, "Visualizing the loss landscape of neural nets"): in two dimensions the
coordinate plane; above, the plane through the landscape's known structure where it has some (the
designated saddle and the line to its minimum, or the line between the first two known minima),
completed by the top principal directions of the iterates about that centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from landbench import numerics
from landbench.engine import minibatch_streams, noise_streams
from landbench.errors import SpecError
from landbench.landscapes.base import Landscape
from landbench.noise import check_noise_model, effective_noise_model
from landbench.optimizers import OptimizerSpec, resolve
from landbench.stepping import Evaluator, make_stepper, step_loop

#: The most iterate entries (steps x runs x dim) kept in memory for one optimizer.
MAX_ENTRIES = 50_000_000


@dataclass
class Trajectories:
    """One optimizer's iterates on a landscape: ``points[t, b]`` after t steps of run b, its loss
    ``losses[t, b]`` (noise-free), and the step at which each run diverged (None if it did not).
    A diverged run's iterates after its divergence are NaN."""

    optimizer: str
    seeds: list[int]
    points: torch.Tensor
    losses: torch.Tensor
    diverged: list[int | None]


def record(
    landscape: Landscape,
    optimizer: str | OptimizerSpec,
    seeds: Sequence[int],
    steps: int,
    noise: float = 0.0,
    noise_model: str = "gaussian",
    batch_size: int | None = None,
) -> Trajectories:
    """Run ``optimizer`` on ``landscape`` from the start points of ``seeds`` for ``steps`` steps and
    keep every iterate (float64, on the CPU), with the noise law and minibatches of a benchmark run
    (the engine's own streams, :func:`landbench.engine.noise_streams` and
    :func:`~landbench.engine.minibatch_streams`)."""
    spec = resolve(optimizer)
    seeds = [int(s) for s in seeds]
    if (steps + 1) * len(seeds) * landscape.dim > MAX_ENTRIES:
        raise SpecError(
            f"plot keeps every iterate: {steps + 1} x {len(seeds)} runs x dim {landscape.dim} is more than "
            f"{MAX_ENTRIES:,} numbers; use fewer --steps or --seeds, or a smaller dim"
        )
    model = effective_noise_model(noise, check_noise_model(noise_model))
    streams = noise_streams(landscape, seeds, noise, "separate", model)
    batches = minibatch_streams(landscape, seeds, "separate", batch_size)
    evaluator = Evaluator(landscape, noise, streams, batches=batches)
    # each run on its own stream of torch's global generators, as the engine runs optimizers that draw
    start = landscape.sample_start(seeds)
    stepper = make_stepper("separate", spec, start, evaluator, seeds, landscape.seed, own_rng=True)
    points: list[torch.Tensor] = []
    with numerics.pinned():  # the numerics the engine's runs have, whatever the process set
        final = step_loop(stepper, evaluator, steps, lambda step, loss: points.append(stepper.points().clone()))
        points.append(final.clone())
        with torch.no_grad():
            stacked = torch.stack(points)
            losses = landscape.loss(stacked.reshape(-1, landscape.dim)).reshape(steps + 1, len(seeds))
    bad = ~torch.isfinite(losses) | ~torch.isfinite(stacked).all(-1)
    diverged: list[int | None] = []
    for b in range(len(seeds)):
        hits = torch.nonzero(bad[:, b])
        first = int(hits[0]) if len(hits) else None
        diverged.append(first)
        if first is not None:
            stacked[first:, b] = math.nan
            losses[first:, b] = math.nan
    return Trajectories(spec.canonical, seeds, stacked.double().cpu(), losses.double().cpu(), diverged)


def final_points(run: Trajectories) -> list[torch.Tensor]:
    """Each run's last finite iterate (its start if it diverged at once)."""
    out = []
    for b in range(len(run.seeds)):
        finite = run.points[:, b][torch.isfinite(run.points[:, b]).all(-1)]
        out.append(finite[-1])
    return out


@dataclass
class Plane:
    """``centre + a * directions[0] + b * directions[1]``: where the landscape is drawn and what it is."""

    centre: torch.Tensor
    directions: torch.Tensor
    labels: tuple[str, str]
    description: str

    def coordinates(self, points: torch.Tensor) -> torch.Tensor:
        """(a, b) of each point's orthogonal projection onto the plane: shape ``(..., 2)``."""
        return (points.double() - self.centre) @ self.directions.T

    def points(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The points at plane coordinates ``(a, b)`` (same shapes), shape ``(n, d)``."""
        return self.centre + a.reshape(-1, 1) * self.directions[0] + b.reshape(-1, 1) * self.directions[1]

    def captured(self, points: torch.Tensor) -> float:
        """The share of the points' squared distance from the centre that lies in the plane."""
        offsets = points.double() - self.centre
        offsets = offsets[torch.isfinite(offsets).all(-1)]
        total = float((offsets**2).sum())
        return float((self.coordinates(offsets + self.centre) ** 2).sum()) / total if total > 0 else 1.0


def _unit(vector: torch.Tensor) -> torch.Tensor | None:
    norm = float(vector.norm())
    return vector / norm if norm > 1e-12 and math.isfinite(norm) else None


def _principal(offsets: torch.Tensor, basis: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """The top ``count`` principal directions of ``offsets`` orthogonal to ``basis`` (completed by
    coordinate axes where the iterates span fewer directions)."""
    rest = offsets.clone()
    for direction in basis:
        rest -= (rest @ direction)[:, None] * direction
    found: list[torch.Tensor] = []
    if len(rest):
        _, values, vt = torch.linalg.svd(rest, full_matrices=False)
        found = [v for v, s in zip(vt, values) if s > 1e-9 * max(float(values[0]), 1e-300)][:count]
    for axis in torch.eye(offsets.shape[1], dtype=torch.float64):
        if len(found) >= count:
            break
        candidate = axis.clone()
        for direction in basis + found:
            candidate -= (candidate @ direction) * direction
        if (unit := _unit(candidate)) is not None:
            found.append(unit)
    return found[:count]


def choose_plane(landscape: Landscape, runs: Sequence[Trajectories]) -> Plane:
    """The plane to draw: the coordinate plane in 2-D, else known structure completed by the
    iterates' principal directions (see the module docstring)."""
    dim = landscape.dim
    if dim < 2:
        raise SpecError(f"plot draws a 2-D landscape or a 2-D slice: {landscape.spec} has dim={dim}; use dim >= 2")
    if dim == 2:
        return Plane(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), ("$x_1$", "$x_2$"), "")
    cloud = torch.cat([t.points.reshape(-1, dim) for t in runs])
    cloud = cloud[torch.isfinite(cloud).all(-1)]
    minima = [m.point.double().cpu() for m in landscape.minima if m.point is not None]
    basis: list[torch.Tensor] = []
    if landscape.saddle is not None and landscape.saddle.point is not None:
        centre = landscape.saddle.point.double().cpu()
        first = _unit(minima[0] - centre) if minima else None
        what, first_label = "through the saddle", "saddle to minimum"
    elif len(minima) >= 2:
        centre = (minima[0] + minima[1]) / 2
        first = _unit(minima[1] - minima[0])
        what, first_label = "through the midpoint of the first two known minima", "minimum 0 to minimum 1"
    else:
        centre = minima[0] if minima else torch.stack([last for t in runs for last in final_points(t)]).mean(0)
        first = None
        what, first_label = ("through the minimum" if minima else "through the mean final iterate"), ""
    if first is not None:
        basis.append(first)
    basis += _principal(cloud - centre, basis, 2 - len(basis))
    labels = [f"along {first_label}" if first is not None else "along principal direction 1"]
    labels.append(f"along principal direction {1 if first is not None else 2}")
    plane = Plane(centre, torch.stack(basis), (labels[0], labels[1]), "")
    share = plane.captured(cloud)
    spanned = "the iterates' top two principal directions"
    if first is not None:
        spanned = f"the line {first_label} and the iterates' top principal direction"
    plane.description = f"slice {what}: {spanned} ({share:.0%} of their spread)"
    return plane


def grid_losses(
    landscape: Landscape, plane: Plane, a: torch.Tensor, b: torch.Tensor, chunk: int = 4096
) -> torch.Tensor:
    """The loss on the plane at the grid ``(a, b)`` (2-D tensors of one shape); on a constrained
    landscape the points are first retracted onto its feasible set (the sphere)."""
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    out = torch.empty(flat_a.numel(), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, flat_a.numel(), chunk):
            points = plane.points(flat_a[start : start + chunk], flat_b[start : start + chunk])
            points = points.to(device=landscape.device, dtype=landscape.dtype)
            if landscape.constrained:
                points = landscape.retract(points)
            out[start : start + chunk] = landscape.loss(points).double().cpu()
    return out.reshape(a.shape)
