"""The Python entry point for one scenario: :func:`run`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from landbench.engine import Progress, run_batch
from landbench.errors import SpecError
from landbench.landscapes import Landscape, make
from landbench.optimizers import OptimizerSpec, resolve
from landbench.records import build_records
from landbench.settings import Settings, check_noise, check_steps, is_integer, normalize_seeds
from landbench.spec import Spec


def run(
    problem: str | Mapping[str, Any] | Spec | Landscape,
    optimizer: str | Mapping[str, Any] | Spec | OptimizerSpec,
    seeds: int | Sequence[int] = 8,
    steps: int = 1000,
    device: torch.device | str = "cpu",
    noise: float = 0.0,
    instance: int = 0,
    progress: Progress | None = None,
    **settings: Any,
) -> list[dict[str, Any]]:
    """Run ``optimizer`` on ``problem`` from each run seed and return one record per run.

    ``problem`` is a spec (``"saddle(dim=100, index=3)"`` or a dict) or a built
    :class:`~landbench.landscapes.Landscape`; ``instance`` is the landscape's instance seed.
    ``seeds`` is a count n (run seeds 0..n-1) or a list of run seeds; ``noise`` is the standard
    deviation of Gaussian noise added to every gradient component. ``settings`` are the metric
    and precision settings of :class:`~landbench.settings.Settings` (``dtype``, ``targets``,
    ``curvature``, ``tau``, ...). All runs go through the device as one batch.
    """
    options = Settings.from_mapping(settings, where="landbench.run")
    steps, noise = check_steps(steps), check_noise(noise)
    seed_list = normalize_seeds(seeds)
    if not is_integer(instance) or instance < 0:
        raise SpecError(f"instance must be a non-negative integer (the landscape's instance seed), got {instance!r}")
    if isinstance(problem, Landscape):
        landscape = problem
        if instance not in (0, landscape.seed):
            raise SpecError(f"instance={instance} conflicts with the given landscape's instance seed {landscape.seed}")
        if str(landscape.dtype).removeprefix("torch.") != options.dtype:
            options = Settings.from_mapping({**options.as_dict(), "dtype": str(landscape.dtype).removeprefix("torch.")})
    else:
        landscape = make(problem, seed=int(instance), device=device, dtype=options.dtype)
    opt = resolve(optimizer)
    outcome = run_batch(landscape, opt, seed_list, steps=steps, noise=noise, settings=options, progress=progress)
    return build_records(landscape, opt, outcome, steps=steps, noise=noise, settings=options)
