"""The batched engine: B independent runs as one (B, d) tensor, stepped by one optimizer.

Per step, on the device and without waiting on the host: the closed-form loss and gradient of
every run, optional Gaussian gradient noise (one stream per run), one optimizer step over the
whole tensor, the landscape's projection, and the event tracker (escape, target hits,
divergence, loss curve), which only writes the step's losses into a device buffer. A run whose
loss turns NaN or inf is marked diverged at that step and no longer observed: its events stop
and it keeps its last finite loss. Its row stays in the tensor, where it cannot reach the others:
landscapes evaluate rows independently, and the optimizer is elementwise, which
:func:`landbench.optimizers.check_batch_safe` verifies before a run (so nothing is spent, per
step, on freezing rows that almost never diverge).
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
from landbench.rng import RunNoise
from landbench.settings import Settings

Progress = Callable[[int], None]


@dataclass
class BatchOutcome:
    """What a batch produced, moved to the CPU: per-run tensors plus timings."""

    seeds: list[int]
    tracker: EventTracker
    final_x: torch.Tensor
    curvature: dict[str, torch.Tensor]
    wall_s: float
    metrics_s: float


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_batch(
    landscape: Landscape,
    optimizer: OptimizerSpec,
    seeds: Sequence[int],
    *,
    steps: int,
    noise: float = 0.0,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> BatchOutcome:
    """Run ``len(seeds)`` runs of ``optimizer`` on ``landscape`` for ``steps`` steps, as one tensor.

    ``progress`` (if given) is called with the number of steps done since its last call, about a
    hundred times per batch; it runs on the host and never forces a device synchronisation.
    """
    settings = settings or Settings()
    device = landscape.device
    seeds = [int(s) for s in seeds]
    _synchronize(device)
    started = time.perf_counter()
    param = torch.nn.Parameter(landscape.sample_start(seeds))
    opt = optimizer.build([param])
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
    gradient_noise = RunNoise(landscape.seed, seeds, landscape.dim, landscape.dtype, device) if noise > 0 else None
    report_every = max(1, steps // 100)
    with torch.no_grad():
        for step in range(steps):
            loss, grad = landscape.loss_and_grad(param.detach())
            tracker.observe(step, loss)
            if gradient_noise is not None:
                grad.add_(gradient_noise.sample(step), alpha=noise)
            param.grad = grad
            opt.step()
            landscape.project_(param.data)
            if progress is not None and (step + 1) % report_every == 0:
                progress(report_every)
        tracker.observe(steps, landscape.loss(param.detach()))
        tracker.flush()
    _synchronize(device)
    wall_s = time.perf_counter() - started
    if progress is not None:
        progress(steps % report_every)
    final_x = param.detach()
    curvature = _curvature(landscape, final_x, seeds, settings) if settings.curvature else {}
    _synchronize(device)
    return BatchOutcome(
        seeds=seeds,
        tracker=tracker,
        final_x=final_x,
        curvature=curvature,
        wall_s=wall_s,
        metrics_s=time.perf_counter() - started - wall_s,
    )


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
