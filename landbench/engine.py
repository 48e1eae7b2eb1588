"""The batched engine: B independent runs as one (B, d) tensor, stepped by one optimizer.

Per step, on the device and without waiting on the host: the closed-form loss and gradient of
every run, optional gradient noise of the settings' noise model (one stream per run,
:mod:`landbench.noise`), one optimizer step over the whole tensor (a closure re-evaluates the
landscape for optimizers that ask for one: SAM, LBFGS),
the landscape's projection, and the event tracker (escape, target hits, divergence, loss curve),
which only writes the step's losses and evaluation counts into a device buffer. Optimizers that
couple the runs of a tensor are stepped per tensor or one run at a time instead
(:mod:`landbench.stepping`, chosen by :func:`landbench.optimizers.batching.choose_mode`).

A run whose loss turns NaN or inf is marked diverged at that step and no longer observed: its
events stop and it keeps its last finite loss. Its row stays in the tensor, where it cannot reach
the others: landscapes evaluate rows independently, and the mode is chosen so that the optimizer
keeps a NaN in its own row (so nothing is spent, per step, on freezing rows that rarely diverge).

Independence is checked, not assumed. The mode comes from a probe (:func:`choose_mode`), and in
addition every batch that shares an optimizer between runs (``batched`` or ``per_tensor``) re-runs
one of its runs alone, over the whole budget, and compares the final points (:func:`_verify`): a
mismatch means the optimizer couples its rows in a way the probe missed (a statistic over all
parameters that matters only later, say), and the batch is run again in ``separate`` mode. The
outcome says which seed was checked and whether it matched (the records' ``independence``). The
exception is torch.optim's elementwise classes and gradient descent
(:data:`landbench.optimizers.batching.ELEMENTWISE`): their rows are independent by construction, a
fact the test suite checks against separate runs, so their batches are not re-run.
"""

from __future__ import annotations

import math
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from landbench import numerics
from landbench.errors import LandbenchError
from landbench.landscapes.base import Landscape
from landbench.landscapes.finite_sum import effective_batch_size
from landbench.metrics.curvature import curvature_metrics
from landbench.metrics.events import EventTracker
from landbench.minibatch import Minibatches
from landbench.optimizers import OptimizerSpec
from landbench.optimizers.batching import (
    choose_mode,
    demote,
    draws_from_global,
    elementwise,
    forget_draws,
    mark_draws,
    with_rate,
)
from landbench.rng import RunNoise, drew_since, global_state_kept, global_states
from landbench.settings import Settings
from landbench.stepping import Evaluator, make_stepper, step_loop
from landbench.threads import choose_threads, using_threads

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
    #: for a batched or per-tensor batch, the run checked alone (see :func:`_verify`); None otherwise
    independence: dict[str, Any] | None = None
    #: the intra-op threads the batch ran with (:mod:`landbench.threads`)
    threads: int = 1


class CoupledBatch(RuntimeError):
    """A learning-rate grid sharing a batch did not match one of its runs made alone: its rates must
    run one batch each (the caller's job, since a grid cannot run in ``separate`` mode)."""

    def __init__(self, check: dict[str, Any]) -> None:
        super().__init__(f"seed {check['seed']} at lr {check.get('lr')} differs from its run alone")
        self.check = check


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def noise_streams(
    landscape: Landscape, seeds: list[int], noise: float, mode: str, model: str = "gaussian"
) -> list[RunNoise] | None:
    """The gradient-noise streams of the noise model (:mod:`landbench.noise`): none, one for the
    batch, or one per run in separate mode."""
    if noise == 0:
        return None
    groups = [[s] for s in seeds] if mode == "separate" else [seeds]
    device, dtype = landscape.device, landscape.dtype
    return [RunNoise(landscape.seed, group, landscape.dim, dtype, device, model) for group in groups]


def minibatch_streams(
    landscape: Landscape, seeds: list[int], mode: str, batch_size: int | None
) -> list[Minibatches] | None:
    """The minibatch streams of a finite-sum landscape's runs (:mod:`landbench.minibatch`): none for
    the full batch, one for the batch, or one per run in separate mode. A batch size on a landscape
    that is not a finite sum, or above its examples, is a :class:`SpecError`."""
    size = effective_batch_size(landscape, batch_size)
    if size is None:
        return None
    groups = [[s] for s in seeds] if mode == "separate" else [seeds]
    return [Minibatches(landscape.seed, group, landscape.examples, size, landscape.device) for group in groups]  # type: ignore[attr-defined]


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
    verify: bool = True,
    threads: int | None = None,
) -> BatchOutcome:
    """Run ``len(seeds)`` runs of ``optimizer`` on ``landscape`` for ``steps`` steps.

    ``mode`` is one of :data:`landbench.stepping.MODES`; by default the fastest one that gives the
    same numbers as separate runs. ``lrs`` runs a learning-rate grid in the same batch: the outcome
    has ``len(lrs) * len(seeds)`` rows, the seeds' runs at ``lrs[0]``, then at ``lrs[1]``, ... (only
    in the ``batched`` and ``per_tensor`` modes; each rate is a param group). ``progress`` (if
    given) is called with the number of steps done since its last call, about a hundred times per
    batch, on the host, without synchronising. ``verify`` (default on) re-runs one run of a
    batched or per-tensor batch of two or more runs alone and, if it differs, the whole batch in
    ``separate`` mode (with ``lrs``, it raises :class:`CoupledBatch` instead); benchmarks of the
    step loop turn it off. Optimizers that are elementwise by construction
    (:data:`landbench.optimizers.batching.ELEMENTWISE`) are not spot-checked. ``threads``: the
    intra-op threads (default: chosen by size, :func:`landbench.threads.choose_threads`); the
    outcome says how many it ran with.
    """
    rows = len(seeds) * (1 if lrs is None else len(lrs))
    count = choose_threads(rows * landscape.dim, threads)
    # an optimizer's draws leave the user's stream alone; a plug-in's numerical settings leave the runs alone
    with using_threads(count), global_state_kept(landscape.device), numerics.pinned():
        outcome = _run_batch(landscape, optimizer, seeds, steps, noise, settings, progress, mode, lrs, verify, count)
    outcome.threads = count
    return outcome


def _run_batch(
    landscape: Landscape,
    optimizer: OptimizerSpec,
    seeds: Sequence[int],
    steps: int,
    noise: float,
    settings: Settings | None,
    progress: Progress | None,
    mode: str | None,
    lrs: Sequence[float] | None,
    verify: bool,
    threads: int,
) -> BatchOutcome:
    """:func:`run_batch` on the threads it chose."""
    settings = settings or Settings()
    device = landscape.device
    seeds = [int(s) for s in seeds]
    mode = mode or choose_mode(optimizer, device, landscape.dtype)
    if lrs is not None and mode == "separate":
        raise ValueError("a learning-rate grid shares a batch only in the batched and per_tensor modes")
    own_rng = draws_from_global(optimizer)
    if own_rng and mode != "separate":  # a drawer runs one run at a time, each on its own stream
        if lrs is not None:
            raise CoupledBatch({"global_rng": True, "matched": False})
        mode = "separate"
    before = global_states(device)
    _synchronize(device)
    started = time.perf_counter()
    tracker, final_x, rows = _execute(landscape, optimizer, seeds, steps, noise, settings, mode, lrs, progress, own_rng)
    _synchronize(device)
    wall_s = time.perf_counter() - started
    if drew_since(before, device):  # it draws after all, past the probe's steps (own streams leave no trace)
        if own_rng:  # its own streams were in place: it draws from something they do not hold
            raise LandbenchError(
                f"a run of {optimizer.canonical} on {landscape.spec} drew from torch's global random generators "
                "outside its optimizer's own stream: the landscape (a plug-in family's loss_and_grad) or the "
                "optimizer through another device's generator; its records would depend on the batch"
            )
        mark_draws(optimizer)
        warnings.warn(
            f"{optimizer.canonical} draws from torch's global random generator, which the runs it steps share: "
            "it runs one run at a time from now on, each run on its own stream",
            stacklevel=2,
        )
        if lrs is not None:
            raise CoupledBatch({"global_rng": True, "matched": False})
        again = {"steps": steps, "noise": noise, "settings": settings, "threads": threads}
        try:
            return run_batch(landscape, optimizer, seeds, mode="separate", **again)
        except LandbenchError:  # the draws were not the optimizer's (its own streams did not hold them)
            forget_draws(optimizer)
            raise
    independence = None
    if mode != "separate" and len(rows) > 1 and elementwise(optimizer, device):
        independence = {"elementwise": optimizer.cls.__qualname__}  # batched == separate by construction
    elif verify and mode != "separate" and len(rows) > 1:  # a batch of one run is a run alone
        independence = _verify(landscape, optimizer, seeds, steps, noise, settings, lrs, tracker, final_x)
        if not independence["matched"]:
            demote(optimizer, device, landscape.dtype)
            warnings.warn(
                f"{optimizer.canonical}: seed {independence['seed']} run alone differs from its row in a "
                f"{mode} batch on {landscape.spec} ({independence.get('difference')}): the optimizer couples the "
                "runs it steps together, so it runs one run at a time from now on",
                stacklevel=2,
            )
            if lrs is not None:
                raise CoupledBatch(independence)
            again = {"steps": steps, "noise": noise, "settings": settings, "threads": threads}
            rerun = run_batch(landscape, optimizer, seeds, mode="separate", **again)
            rerun.independence = {**independence, "rerun": "separate"}
            return rerun
    started_metrics = time.perf_counter()
    curvature = _curvature(landscape, final_x, rows, settings) if settings.curvature else {}
    _synchronize(device)
    return BatchOutcome(
        seeds=rows,
        tracker=tracker,
        final_x=final_x,
        curvature=curvature,
        mode=mode,
        wall_s=wall_s,
        metrics_s=time.perf_counter() - started_metrics,
        independence=independence,
    )


def _execute(
    landscape: Landscape,
    optimizer: OptimizerSpec,
    seeds: list[int],
    steps: int,
    noise: float,
    settings: Settings,
    mode: str,
    lrs: Sequence[float] | None,
    progress: Progress | None,
    own_rng: bool = False,
    jitter: float = 0.0,
    pattern: int = 0,
) -> tuple[EventTracker, torch.Tensor, list[int]]:
    """The step loop of a batch: the tracker, the final points and the run seed of each row.
    ``own_rng``: each run's optimizer draws from its own stream of torch's global generators
    (``separate`` mode; :func:`landbench.stepping.make_stepper`). ``jitter`` > 0 moves each start
    coordinate by that relative amount, up or down (the fixed sign pattern number ``pattern``), for
    the twin runs of :func:`_verify`."""
    copies = 1 if lrs is None else len(lrs)
    streams = noise_streams(landscape, seeds, noise, mode, settings.noise_model)
    batches = minibatch_streams(landscape, seeds, mode, settings.batch_size)
    evaluator = Evaluator(landscape, noise, streams, copies, batches)
    start = landscape.sample_start(seeds)
    if jitter:
        signs = torch.randint(0, 2, start.shape, generator=torch.Generator().manual_seed(pattern)).to(start) * 2 - 1
        start = landscape.retract(start * (1 + jitter * signs))
    if lrs is not None:
        start, seeds = start.repeat(copies, 1), seeds * copies
    stepper = make_stepper(mode, optimizer, start, evaluator, seeds, landscape.seed, lrs, own_rng)
    tracker = EventTracker(
        len(seeds),
        steps,
        escape_thresholds=landscape.escape_thresholds,
        f_star=landscape.f_star,
        targets=settings.targets,
        curve_points=settings.curve_points,
        device=landscape.device,
        dtype=landscape.dtype,
    )
    report_every = max(1, steps // 100)

    def observe(step: int, loss: torch.Tensor) -> None:
        tracker.observe(step, loss, _evals(stepper.evals, landscape.device))
        if progress is not None and step > 0 and step % report_every == 0:
            progress(report_every)

    final_x = step_loop(stepper, evaluator, steps, observe)
    with torch.no_grad():
        tracker.observe(steps, landscape.loss(final_x), _evals(stepper.evals, landscape.device))
    tracker.flush()
    if progress is not None:
        progress(steps - report_every * ((steps - 1) // report_every))  # the steps not reported yet
    return tracker, final_x, seeds


#: The spot check's floor, per dtype: a difference up to this relative size is always rounding.
VERIFY_RTOL = {torch.float64: 1e-9, torch.float32: 1e-5}
#: A difference is coupling only when it is this many times larger than the one a perturbation of
#: the start by a few units in the last place grows to (the twin run of :func:`_verify`).
VERIFY_MARGIN = 100.0
#: At most this many twins, each started with another pattern of signs, before a difference is
#: called a coupling: where the dynamics are chaotic, whether a perturbation of a few ulps grows to
#: the size of batching's rounding depends on its pattern (Gaussian field, SAM: one pattern stayed
#: within 2e-8 of the run alone, another ended 7e-3 away, as far as the batched row).
VERIFY_TWINS = 3


def _distance(a: _Run, b: _Run) -> float:
    """How far run ``b`` ended from run ``a``, and strayed from it on the way: the larger of
    ``|x_a - x_b| / |x_a|`` for the final points and ``max_t |f_a(t) - f_b(t)| / max_t |f_a(t)|`` over
    the loss curve (its log-spaced steps); inf when one diverged and the other did not, or when one's
    curve is finite where the other's is not."""
    if a.diverged != b.diverged:
        return math.inf
    curve_a, curve_b = a.curve.double(), b.curve.double()
    seen_a, seen_b = torch.isfinite(curve_a), torch.isfinite(curve_b)
    if not torch.equal(seen_a, seen_b):
        return math.inf
    scale = float(curve_a[seen_a].abs().max()) if bool(seen_a.any()) else 0.0
    along = float((curve_a - curve_b)[seen_a].abs().max()) / (scale + 1e-300) if bool(seen_a.any()) else 0.0
    if a.diverged:
        return along  # both diverged: their final points mean nothing
    end = float((a.x - b.x).double().norm() / (a.x.double().norm() + 1e-30))
    return max(end, along)


@dataclass
class _Run:
    """One run as the spot check compares it: final point, loss curve, whether it diverged."""

    x: torch.Tensor
    curve: torch.Tensor
    diverged: bool

    @classmethod
    def row(cls, tracker: EventTracker, final_x: torch.Tensor, row: int) -> _Run:
        return cls(final_x[row], tracker.curve[row], bool(tracker.diverged_step[row] >= 0))


def _verify(
    landscape: Landscape,
    optimizer: OptimizerSpec,
    seeds: list[int],
    steps: int,
    noise: float,
    settings: Settings,
    lrs: Sequence[float] | None,
    tracker: EventTracker,
    final_x: torch.Tensor,
) -> dict[str, Any]:
    """Re-run one row of a batch alone, over its whole budget, and compare it with its row.

    The row is a deterministic function of the seeds (so a re-run checks the same one), and its run
    alone gets the same start and the same noise stream as in the batch. The two are compared by
    :func:`_distance`: their final points, and their loss curves all along the run (a coupling that
    acts only for a while and leaves the end unchanged still moves the escape and target times).
    Batching may still change the order of floating-point sums (a matrix product blocked for B rows
    or for one), and where the dynamics are unstable (a saddle, a rough field) such rounding grows
    along the run. So beyond a floor (:data:`VERIFY_RTOL`) a twin of the run alone starts a few units
    in the last place away (``4 eps`` relative) and shows how far rounding alone carries it; the row
    matches when its distance is at most :data:`VERIFY_MARGIN` times the twin's. Up to
    :data:`VERIFY_TWINS` twins, each with its own pattern of signs, are tried before a difference
    is called a coupling (the largest distance counts). A coupling moves a
    run by orders of magnitude more than rounding, except where rounding alone decides everything
    (then nothing can tell them apart, and the probe is the only guard).

    Before the twins, the run alone is made once more with its landscape evaluated as the batch
    evaluated it (:class:`_AtRow`: as its row of as many copies of itself): the same rounding as in
    the batch, and no other run for the optimizer to couple with. A row equal to that, within the
    floor, matches (a Gaussian field's matrix product blocked for 8 rows carried SAM 7e-3 away from
    its run alone, through two nearby minima, where no start perturbation of a few ulps did).
    """
    rows = len(seeds) * (1 if lrs is None else len(lrs))
    row = zlib.crc32(repr((landscape.seed, seeds, steps)).encode()) % rows
    seed = seeds[row % len(seeds)]
    lr = None if lrs is None else float(lrs[row // len(seeds)])
    alone_spec = optimizer if lr is None else with_rate(optimizer, lr)
    common = (landscape, alone_spec, [seed], steps, noise, settings, "separate", None, None)
    alone = _Run.row(*_execute(*common)[:2], 0)
    difference = _distance(alone, _Run.row(tracker, final_x, row))
    floor = VERIFY_RTOL.get(landscape.dtype, 1e-5)
    check: dict[str, Any] = {"seed": seed}
    if lr is not None:
        check["lr"] = lr
    matched = difference <= floor
    if not matched:
        # the run alone, its landscape evaluated as the batch evaluated it: rows copies, at its row
        blocked = _Run.row(*_execute(_AtRow(landscape, rows, row), *common[1:])[:2], 0)
        blocking = _distance(blocked, _Run.row(tracker, final_x, row))
        check["blocking"] = blocking if math.isfinite(blocking) else "one diverged, the other did not"
        matched = blocking <= floor
    rounding = 0.0
    for pattern in range(VERIFY_TWINS if not matched else 0):
        twin = _Run.row(*_execute(*common, jitter=4 * torch.finfo(landscape.dtype).eps, pattern=pattern)[:2], 0)
        rounding = max(rounding, _distance(alone, twin))
        check["rounding"] = rounding if math.isfinite(rounding) else "decides divergence"
        matched = difference <= max(floor, VERIFY_MARGIN * rounding)
        if matched:
            break
    check["matched"] = bool(matched)
    if difference > 0:
        check["difference"] = difference if math.isfinite(difference) else "one diverged, the other did not"
    return check


class _AtRow:
    """A landscape that evaluates one run as row ``row`` of ``rows`` copies of it: the rounding of a
    batched evaluation (a matrix product blocked for that many rows, at that row) without the
    other runs, for the spot check of :func:`_verify`. Everything else is the landscape's."""

    def __init__(self, landscape: Landscape, rows: int, row: int) -> None:
        self._landscape, self._rows, self._row = landscape, rows, row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._landscape, name)

    def _copies(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(self._rows, -1).contiguous()

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self._landscape.loss(self._copies(x))[self._row : self._row + 1]

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, grad = self._landscape.loss_and_grad(self._copies(x))
        return loss[self._row : self._row + 1], grad[self._row : self._row + 1]

    def batch_loss_and_grad(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = None if index is None else self._copies(index)
        loss, grad = self._landscape.batch_loss_and_grad(self._copies(x), rows)
        return loss[self._row : self._row + 1], grad[self._row : self._row + 1]


def _evals(evals: int | list[int], device: torch.device) -> int | torch.Tensor:
    """The evaluation counts for the tracker: one int for all runs, or a per-run tensor."""
    return evals if isinstance(evals, int) else torch.tensor(evals, dtype=torch.int64, device=device)


def _curvature(landscape: Landscape, x: torch.Tensor, seeds: list[int], settings: Settings) -> dict[str, torch.Tensor]:
    """Sharpness, Hessian trace and basin width at the final points, with the settings' iterations,
    probes and tau (:func:`landbench.metrics.curvature.curvature_metrics`, which also decides where
    the basin width needs a float64 twin of the landscape)."""
    return curvature_metrics(landscape, x, seeds, **settings.metric_options())
