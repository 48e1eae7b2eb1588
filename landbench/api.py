"""The Python entry point for one scenario: :func:`run`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from landbench.engine import BatchOutcome, Progress, run_batch
from landbench.errors import SpecError
from landbench.landscapes import Landscape, make, resolve_device
from landbench.landscapes.finite_sum import effective_batch_size
from landbench.noise import check_noise_model, effective_noise_model
from landbench.optimizers import OptimizerSpec
from landbench.preflight import check_optimizer, check_problem, check_representable
from landbench.records import build_records
from landbench.settings import Settings, check_noise, check_steps, is_integer, normalize_seeds
from landbench.spec import Spec, parse_spec
from landbench.threads import requested_threads


@dataclass(frozen=True)
class RunPlan:
    """One scenario, validated and built, ready to run: the landscape instance (on its device), the
    resolved optimizer, the run seeds, the budget and the settings. :func:`run` is
    ``plan.records(plan.execute())``; a timing harness (the pytest plugin's ``landbench_benchmark``)
    times :meth:`execute` alone, so that building the instance and the records is not timed."""

    landscape: Landscape
    optimizer: OptimizerSpec
    seeds: list[int]
    steps: int
    noise: float
    settings: Settings
    threads: int | None = None

    def execute(self, progress: Progress | None = None, verify: bool = True) -> BatchOutcome:
        """Run every seed as one batch (:func:`landbench.engine.run_batch`); on a GPU the call
        returns only once the device has finished (it synchronises before and after the loop).
        ``verify=False`` skips the spot check of independence (one run re-made alone), as a timing
        of the optimisation loop alone wants; the mode is still the one the probe chose."""
        return run_batch(
            self.landscape,
            self.optimizer,
            self.seeds,
            steps=self.steps,
            noise=self.noise,
            settings=self.settings,
            progress=progress,
            verify=verify,
            threads=self.threads,
        )

    def records(self, outcome: BatchOutcome) -> list[dict[str, Any]]:
        """One record per run of ``outcome`` (see :mod:`landbench.records`)."""
        return build_records(
            self.landscape, self.optimizer, outcome, steps=self.steps, noise=self.noise, settings=self.settings
        )


def plan(
    problem: str | Mapping[str, Any] | Spec | Landscape,
    optimizer: str | Mapping[str, Any] | Spec | OptimizerSpec,
    seeds: int | Sequence[int] = 8,
    steps: int = 1000,
    device: torch.device | str = "cpu",
    noise: float = 0.0,
    instance: int = 0,
    threads: int | None = None,
    noise_model: str = "gaussian",
    batch_size: int | None = None,
    **settings: Any,
) -> RunPlan:
    """Validate the arguments of :func:`run` and build the landscape and optimizer, without running.

    Everything is checked before anything is built, as ``landbench run`` checks a suite
    (:mod:`landbench.preflight`): the device exists, the problem and its batch of runs fit in the
    memory available (a bad size is refused with what fits), the optimizer resolves and passes the
    batch-safety probe."""
    steps, noise = check_steps(steps), check_noise(noise)
    model = effective_noise_model(noise, check_noise_model(noise_model))  # without noise every law is one
    options = Settings.from_mapping({**settings, "noise_model": model, "batch_size": batch_size}, where="landbench.run")
    threads = requested_threads(threads)
    seed_list = normalize_seeds(seeds)
    if not is_integer(instance) or instance < 0:
        raise SpecError(f"instance must be a non-negative integer (the landscape's instance seed), got {instance!r}")
    if isinstance(problem, Landscape):
        landscape = problem
        if instance not in (0, landscape.seed):
            raise SpecError(f"instance={instance} conflicts with the given landscape's instance seed {landscape.seed}")
        if str(landscape.dtype).removeprefix("torch.") != options.dtype:
            options = Settings.from_mapping({**options.as_dict(), "dtype": str(landscape.dtype).removeprefix("torch.")})
        place = landscape.device
        batch = effective_batch_size(landscape, options.batch_size)
    else:
        place = resolve_device(device)
        check_problem(str(parse_spec(problem, what="problem")), options.dtype, len(seed_list), options, place)
        batch = effective_batch_size(str(parse_spec(problem, what="problem")), options.batch_size)
    options = options if batch == options.batch_size else replace(options, batch_size=batch)  # n: the full batch
    check_representable(f"noise {noise:g}", noise, options.dtype)
    resolved = check_optimizer(optimizer, options.dtype, place)
    if not isinstance(problem, Landscape):
        landscape = make(problem, seed=int(instance), device=place, dtype=options.dtype)
    return RunPlan(landscape, resolved, seed_list, steps, noise, options, threads)


def run(
    problem: str | Mapping[str, Any] | Spec | Landscape,
    optimizer: str | Mapping[str, Any] | Spec | OptimizerSpec,
    seeds: int | Sequence[int] = 8,
    steps: int = 1000,
    device: torch.device | str = "cpu",
    noise: float = 0.0,
    instance: int = 0,
    progress: Progress | None = None,
    threads: int | None = None,
    noise_model: str = "gaussian",
    batch_size: int | None = None,
    **settings: Any,
) -> list[dict[str, Any]]:
    """Run ``optimizer`` on ``problem`` from each run seed and return one record per run.

    ``problem`` is a spec (``"saddle(dim=100, index=3)"`` or a dict) or a built
    :class:`~landbench.landscapes.Landscape`; ``instance`` is the landscape's instance seed.
    ``seeds`` is a count n (run seeds 0..n-1) or a list of run seeds; ``noise`` is the standard
    deviation of Gaussian noise added to every gradient component, or of the ``noise_model``'s
    (:mod:`landbench.noise`: ``"gaussian"``, ``"student_t(nu=3)"``, ``"alpha_stable(alpha=1.5)"``,
    where ``noise`` is the scale, ``"frozen"``, a fixed function of the point). On a finite-sum family
    (:mod:`landbench.landscapes.finite_sum`), ``batch_size`` m makes every gradient the mean over m
    training examples drawn per run without replacement within an epoch (:mod:`landbench.minibatch`;
    None, the default, and m = n are the full batch); the records then carry ``test_loss`` and
    ``generalization_gap`` as every finite-sum record does. ``settings`` are the metric
    and precision settings of :class:`~landbench.settings.Settings` (``dtype``, ``targets``,
    ``curvature``, ``tau``, ...). All runs go through the device as one batch, with ``threads``
    intra-op threads (default: ``$LANDBENCH_THREADS``, else one below 2**20 runs x dimension and
    the process's threads above, less one core left to the rest of the machine; :mod:`landbench.threads`).
    """
    prepared = plan(
        problem, optimizer, seeds, steps, device, noise, instance, threads, noise_model, batch_size, **settings
    )
    return prepared.records(prepared.execute(progress))
