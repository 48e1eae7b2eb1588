"""The batched engine: B independent runs as one (B, d) tensor, stepped by one optimizer.

Per step, on the device and without waiting on the host: the closed-form loss and gradient of
every run, optional Gaussian gradient noise (one stream per run), one optimizer step over the
whole tensor (a closure re-evaluates the landscape for optimizers that ask for one: SAM, LBFGS),
the landscape's projection, and the event tracker (escape, target hits, divergence, loss curve),
which only writes the step's losses and evaluation counts into a device buffer. Optimizers that
couple the runs of a tensor are stepped per tensor or one run at a time instead
(:mod:`landbench.stepping`, chosen by :func:`landbench.optimizers.batching.choose_mode`).

A run whose loss turns NaN or inf is marked diverged at that step and no longer observed: its
events stop and it keeps its last finite loss. Its row stays in the tensor, where it cannot reach
the others: landscapes evaluate rows independently, and the mode is chosen so that the optimizer
keeps a NaN in its own row (so nothing is spent, per step, on freezing rows that rarely diverge).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from landbench.landscapes.base import Landscape
from landbench.metrics.curvature import basin_width, hessian_trace, sharpness
from landbench.metrics.events import EventTracker
from landbench.optimizers import OptimizerSpec
from landbench.optimizers.batching import choose_mode
from landbench.rng import RunNoise
from landbench.settings import Settings
from landbench.stepping import STEPPERS, Evaluator, bind_runs

Progress = Callable[[int], None]


@dataclass
class BatchOutcome:
    """What a batch produced: per-run tensors, the mode it ran in, and timings."""

    seeds: list[int]
    tracker: EventTracker
    final_x: torch.Tensor
    curvature: dict[str, torch.Tensor]
    mode: str
    wall_s: float
    metrics_s: float


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _streams(landscape: Landscape, seeds: list[int], noise: float, mode: str) -> list[RunNoise] | None:
    """The gradient-noise streams: none, one for the batch, or one per run in separate mode."""
    if noise == 0:
        return None
    groups = [[s] for s in seeds] if mode == "separate" else [seeds]
    return [RunNoise(landscape.seed, group, landscape.dim, landscape.dtype, landscape.device) for group in groups]


def run_batch(
    landscape: Landscape,
    optimizer: OptimizerSpec,
    seeds: Sequence[int],
    *,
    steps: int,
    noise: float = 0.0,
    settings: Settings | None = None,
    progress: Progress | None = None,
    mode: str | None = None,
    lrs: Sequence[float] | None = None,
) -> BatchOutcome:
    """Run ``len(seeds)`` runs of ``optimizer`` on ``landscape`` for ``steps`` steps.

    ``mode`` is one of :data:`landbench.stepping.MODES`; by default the fastest one that gives the
    same numbers as separate runs. ``lrs`` runs a learning-rate grid in the same batch: the outcome
    has ``len(lrs) * len(seeds)`` rows, the seeds' runs at ``lrs[0]``, then at ``lrs[1]``, ... (only
    in the ``batched`` and ``per_tensor`` modes; each rate is a param group). ``progress`` (if
    given) is called with the number of steps done since its last call, about a hundred times per
    batch, on the host, without synchronising.
    """
    settings = settings or Settings()
    device = landscape.device
    seeds = [int(s) for s in seeds]
    mode = mode or choose_mode(optimizer, device, landscape.dtype)
    copies = 1 if lrs is None else len(lrs)
    if lrs is not None and mode == "separate":
        raise ValueError("a learning-rate grid shares a batch only in the batched and per_tensor modes")
    _synchronize(device)
    started = time.perf_counter()
    evaluator = Evaluator(landscape, noise, _streams(landscape, seeds, noise, mode), copies)
    start = landscape.sample_start(seeds)
    if lrs is None:
        stepper = STEPPERS[mode](optimizer, start, evaluator)
    else:
        stepper = STEPPERS[mode](optimizer, start.repeat(copies, 1), evaluator, lrs)
        seeds = seeds * copies
    bind_runs(stepper, seeds, landscape.seed)
    tracker = EventTracker(
        len(seeds),
        steps,
        escape_thresholds=landscape.escape_thresholds,
        f_star=landscape.f_star,
        targets=settings.targets,
        curve_points=settings.curve_points,
        device=device,
        dtype=landscape.dtype,
    )
    report_every = max(1, steps // 100)
    with torch.no_grad():
        for step in range(steps):
            loss, grad = evaluator.gradient(stepper.points())
            tracker.observe(step, loss, _evals(stepper.evals, device))
            _count(stepper)
            stepper.step(grad)
            if progress is not None and (step + 1) % report_every == 0:
                progress(report_every)
        final_x = stepper.points()
        tracker.observe(steps, landscape.loss(final_x), _evals(stepper.evals, device))
        tracker.flush()
    _synchronize(device)
    wall_s = time.perf_counter() - started
    if progress is not None:
        progress(steps % report_every)
    curvature = _curvature(landscape, final_x, seeds, settings) if settings.curvature else {}
    _synchronize(device)
    return BatchOutcome(
        seeds=seeds,
        tracker=tracker,
        final_x=final_x,
        curvature=curvature,
        mode=mode,
        wall_s=wall_s,
        metrics_s=time.perf_counter() - started - wall_s,
    )


def _evals(evals: int | list[int], device: torch.device) -> int | torch.Tensor:
    """The evaluation counts for the tracker: one int for all runs, or a per-run tensor."""
    return evals if isinstance(evals, int) else torch.tensor(evals, dtype=torch.int64, device=device)


def _count(stepper: object) -> None:
    """One more gradient evaluation for every run (the one each step starts with)."""
    evals = stepper.evals  # type: ignore[attr-defined]
    if isinstance(evals, int):
        stepper.evals = evals + 1  # type: ignore[attr-defined]
    else:
        for run in range(len(evals)):
            evals[run] += 1


#: The largest landscape (bytes of its tensors) whose float64 twin the basin width may build.
PRECISE_TWIN_BYTES = 1 << 30


def _curvature(landscape: Landscape, x: torch.Tensor, seeds: list[int], settings: Settings) -> dict[str, torch.Tensor]:
    """Sharpness, Hessian trace and basin width at the final points (see landbench.metrics).

    The basin width compares ``f(x + r v)`` with ``f(x)`` for rises ``tau`` that can be far below
    the float32 resolution of ``f`` (``|f| = 4e6`` at the Styblinski-Tang minimum in dimension
    1e5), so it is computed on a float64 twin of the landscape unless that would take more than
    ``PRECISE_TWIN_BYTES``. Sharpness and trace come from Hessian-vector products, whose relative
    precision does not depend on ``|f|``.
    """
    precise = landscape
    if landscape.dtype != torch.float64 and 2 * landscape.tensor_bytes() <= PRECISE_TWIN_BYTES:
        precise = landscape.astype(torch.float64)
    return {
        "sharpness": sharpness(landscape, x, seeds, iterations=settings.lanczos_iterations),
        "hessian_trace": hessian_trace(landscape, x, seeds, probes=settings.hutchinson_probes),
        "basin_width": basin_width(precise, x.to(precise.dtype), seeds, tau=settings.tau, probes=settings.basin_probes),
    }
