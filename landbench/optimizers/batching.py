"""Which mode runs B independent runs of an optimizer fastest while keeping them independent?

``batched`` (one (B, d) tensor) is right for elementwise optimizers: SGD, Adam, AdamW, RMSprop,
Adagrad, NAdam, RAdam, Adamax, ASGD, Rprop, Adadelta, SAM and perturbed GD as landbench writes
them. ``per_tensor`` (B tensors of shape (1, d), one optimizer) is right when the update couples
the entries of a tensor but not different tensors: a per-tensor trust ratio (LAMB, LARS), a
factored second moment (Adafactor). ``separate`` (one optimizer per run) is right for everything,
including a global norm over all parameters, a step size estimated from statistics over all
parameters (D-Adaptation, Prodigy), a guard that skips the whole step when any gradient is NaN,
and a closure with a line search (LBFGS). Rather than trust a list, landbench probes each
optimizer spec once per device and dtype, at its own hyperparameters, and takes the first mode
that matches separate runs (:func:`choose_mode`); the engine then spot-checks every batch
(:func:`landbench.engine.run_batch`), because a probe can only show coupling, never its absence.

The one exception to the spot check is :data:`ELEMENTWISE`: torch.optim's own elementwise classes
(exactly those classes, not subclasses, in their default single-tensor implementation: not
``fused``, ``foreach``, ...) and landbench's gradient descent, whose update of each entry reads
only that entry's gradient and state. Their batches equal separate runs by
construction, which ``tests/test_independence.py`` checks for every one of them (noise, a NaN row,
non-default arguments); re-running a run alone would double the per-step cost of a small batch for
nothing. They are still probed (:func:`choose_mode`), and their records say ``independence:
{"elementwise": "<class>"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from landbench import numerics
from landbench.errors import BatchSafetyError
from landbench.landscapes.base import DIM, Landscape
from landbench.optimizers.gd import GradientDescent
from landbench.rng import drew_since, global_state_kept, global_states

if TYPE_CHECKING:
    from landbench.optimizers import OptimizerSpec

_chosen: dict[tuple[str, str, torch.dtype], str] = {}
#: The specs seen drawing from torch's global generators (:func:`draws_from_global`).
_draws: set[str] = set()
#: Classes whose batches are not spot-checked: elementwise by construction (see the module docstring).
ELEMENTWISE: frozenset[type] = frozenset(
    {
        torch.optim.SGD,
        torch.optim.Adam,
        torch.optim.AdamW,
        torch.optim.RMSprop,
        torch.optim.Adagrad,
        torch.optim.Adamax,
        torch.optim.NAdam,
        torch.optim.RAdam,
        torch.optim.ASGD,
        torch.optim.Rprop,
        torch.optim.Adadelta,
        GradientDescent,
    }
)
#: Steps of a probe run: long enough to pass the warm-ups of adaptive methods (bias corrections,
#: D-Adaptation's growing estimate) after which a coupling may only start.
PROBE_STEPS = 64
#: Start scales of the probe runs, six decades apart end to end, so that any statistic over all
#: parameters (a global norm, a step size estimated from all of them) differs from each run's own;
#: the last run starts at infinity, so its loss and gradient are non-finite from the first step (a
#: guard that skips the whole step on any NaN would then stall the others).
_SCALES = (1e-3, 1.0, 1e3, float("inf"))
#: Relative tolerance between a probe row and the same run alone: a relative difference of 1e-6
#: (what a weak coupling leaves after a few steps) is caught in either dtype.
PROBE_RTOL = {torch.float64: 1e-9, torch.float32: 1e-7}


class _Probe(Landscape):
    """``f(x) = sum_i a_i (sqrt(1 + x_i^2) - 1) + c_i x_i`` on 4 coordinates, a fixed instance.

    A pseudo-Huber bowl: quadratic near 0 (curvature a_i), linear far out, so its gradient is
    bounded by ``a_i + |c_i|`` and a probe run at a large step size oscillates instead of diverging
    (a probe that overflowed would compare NaN with NaN and learn nothing). Runs started six decades
    apart see gradients of very different sizes, which exposes statistics over all parameters.
    """

    family = "batch_safety_probe"
    params = (DIM,)

    def _build(self) -> None:
        self.curvatures = self._tensor(torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64))
        self.offsets = self._tensor(torch.tensor([0.3, -0.2, 0.1, 0.05], dtype=torch.float64))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return (self.curvatures * (torch.sqrt(1 + x * x) - 1) + self.offsets * x).sum(1)

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss(x), self.curvatures * x * torch.rsqrt(1 + x * x) + self.offsets

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.dim, generator=generator, dtype=torch.float64)


#: Arguments that choose another implementation of a torch.optim class: fused and foreach kernels
#: round an element differently by its place in the tensor (a vectorised body, a scalar tail), so a
#: run's numbers could depend on its batch; such specs are spot-checked like any other.
IMPLEMENTATION_ARGUMENTS = ("fused", "foreach", "differentiable", "capturable")


def elementwise(spec: OptimizerSpec, device: torch.device | str = "cpu") -> bool:
    """Whether ``spec``'s class is in :data:`ELEMENTWISE` and it runs torch's default (single-tensor)
    implementation, on the CPU: its batches need no spot check. On CUDA torch's default is its
    foreach kernels, which ``tests/test_independence.py`` checks only where a GPU is present; until
    a GPU session has run it, CUDA batches are spot-checked like any other."""
    if torch.device(device).type != "cpu":
        return False
    return spec.cls in ELEMENTWISE and not any(spec.kwargs.get(name) for name in IMPLEMENTATION_ARGUMENTS)


def with_rate(spec: OptimizerSpec, lr: float) -> OptimizerSpec:
    """``spec`` with its learning rate set to ``lr`` (validated like any spec)."""
    from landbench.optimizers import resolve
    from landbench.spec import format_spec

    return resolve(format_spec(spec.name, {**spec.kwargs, "lr": float(lr)}))


def _trajectory(
    spec: OptimizerSpec,
    mode: str,
    probe: _Probe,
    start: torch.Tensor,
    seeds: list[int],
    lrs: list[float] | None = None,
) -> torch.Tensor:
    """Points after :data:`PROBE_STEPS` steps of ``spec`` in ``mode`` from ``start``, through the
    engine's own step loop and steppers; a spec whose steps draw from torch's global generators is
    remembered as drawing (:func:`draws_from_global`)."""
    from landbench.stepping import Evaluator, make_stepper, step_loop

    evaluator = Evaluator(probe, 0.0, None, 1 if lrs is None else len(lrs))
    # a probe never moves the user's own random stream, and runs under the runs' numerics
    with global_state_kept(start.device), numerics.pinned():
        before = global_states(start.device)
        points = step_loop(make_stepper(mode, spec, start, evaluator, seeds, 0, lrs), evaluator, PROBE_STEPS)
        if drew_since(before, start.device):
            mark_draws(spec)
    return points


def _close(together: torch.Tensor, alone: torch.Tensor, dtype: torch.dtype) -> bool:
    """Rows equal to a relative ``PROBE_RTOL`` of each row's size (NaN where both are NaN)."""
    tolerance = PROBE_RTOL.get(dtype, 1e-7)
    scale = alone.abs().amax(1, keepdim=True).nan_to_num(0.0) + 1e-300
    return bool(torch.allclose(together / scale, alone / scale, rtol=tolerance, atol=tolerance, equal_nan=True))


def choose_mode(spec: OptimizerSpec, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> str:
    """The fastest mode (``batched``, ``per_tensor``, ``separate``) whose runs equal separate runs.

    On the probe (:class:`_Probe`, a pseudo-Huber bowl with bounded gradients), four runs (three
    healthy ones of start scale 1e-3, 1 and 1e3, and one whose gradient is infinite from the start)
    take :data:`PROBE_STEPS` steps of ``spec`` at its own hyperparameters, on ``device`` in
    ``dtype``, in each mode; the three healthy rows must equal the same runs made one at a time to
    a relative :data:`PROBE_RTOL` (1e-9 in float64, 1e-7 in float32). ``separate`` always
    qualifies; an optimizer that fails even alone raises BatchSafetyError. Cached per (spec,
    device, dtype). A probe shows coupling, not its absence: the engine spot-checks every batch too.
    """
    device = torch.device(device)
    key = (spec.canonical, str(device), dtype)
    if key in _chosen:
        return _chosen[key]
    if draws_from_global(spec):
        _chosen[key] = "separate"
        return "separate"
    probe = _Probe(dim=4, device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(len(_SCALES), 4, generator=generator, dtype=torch.float64)
    start = (torch.tensor(_SCALES, dtype=torch.float64)[:, None] * directions).to(device=device, dtype=dtype)
    seeds = list(range(len(_SCALES)))
    healthy = len(_SCALES) - 1
    try:
        alone = torch.cat([_trajectory(spec, "separate", probe, start[i : i + 1], [i]) for i in range(healthy)])
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure of a third-party optimizer, reported
        raise BatchSafetyError(
            f"optimizer {spec.canonical} fails on a small test problem on {device} in {dtype} even for a single "
            f"run: {type(exc).__name__}: {exc}{_hint(exc)}"
        ) from None
    chosen = "separate"
    for mode in ("batched", "per_tensor"):
        agrees = not draws_from_global(spec) and _agrees(spec, mode, probe, start, seeds, alone, dtype)
        if draws_from_global(spec):  # it drew, alone or in this mode (the infinite row's steps, say)
            break
        if agrees:
            chosen = mode
            break
    _chosen[key] = chosen
    return chosen


def draws_from_global(spec: OptimizerSpec) -> bool:
    """Whether ``spec`` was seen drawing from torch's global generators (``torch.randn_like``,
    ``p.normal_()``), by the mode probe or by a batch (:func:`mark_draws`). Such draws couple the rows
    of a shared tensor and depend on everything else the process drew, so the optimizer runs one
    run at a time, each run's optimizer on its own stream (:class:`landbench.rng.GlobalStreams`)."""
    return spec.canonical in _draws


def mark_draws(spec: OptimizerSpec) -> None:
    """Remember that ``spec`` draws from torch's global generators: ``separate`` mode, on every
    device and dtype, from now on."""
    _draws.add(spec.canonical)
    for key in [k for k in _chosen if k[0] == spec.canonical]:
        _chosen[key] = "separate"
    for key in [k for k in _grid_modes if k[0] == spec.canonical]:
        _grid_modes[key] = None


def forget_draws(spec: OptimizerSpec) -> None:
    """Undo :func:`mark_draws`: the draws were not the optimizer's after all (a landscape's); its
    modes are probed afresh."""
    _draws.discard(spec.canonical)
    for key in [k for k in _chosen if k[0] == spec.canonical]:
        del _chosen[key]
    for key in [k for k in _grid_modes if k[0] == spec.canonical]:
        del _grid_modes[key]


def demote(spec: OptimizerSpec, device: torch.device | str, dtype: torch.dtype) -> None:
    """Run ``spec`` in ``separate`` mode from now on (on ``device`` in ``dtype``): a batch of it was
    found coupled after all, by the engine's spot check (:func:`landbench.engine.run_batch`)."""
    _chosen[(spec.canonical, str(torch.device(device)), dtype)] = "separate"
    for key in [k for k in _grid_modes if k[:3] == (spec.canonical, str(torch.device(device)), dtype)]:
        _grid_modes[key] = None


_grid_modes: dict[tuple[str, str, torch.dtype, tuple[float, ...]], str | None] = {}


def grid_mode(
    spec: OptimizerSpec,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
    lrs: Sequence[float] | None = None,
) -> str | None:
    """The mode in which a learning-rate grid may share one batch, or None: every rate of ``lrs`` (by
    default the spec's own and 0.3 times it) runs in the same batched or per-tensor mode on its own
    (each probed at its own rate, :func:`choose_mode`), and all rates as param groups of one
    optimizer give each rate's own numbers on the probe. An optimizer that reads its rate from
    somewhere other than its param groups (``self.lr``, say) fails this and tunes one rate at a time.
    """
    device = torch.device(device)
    base = float(spec.kwargs.get("lr", 1e-3))
    rates = [float(lr) for lr in (lrs if lrs is not None else (base, base * 0.3))]
    key = (spec.canonical, str(device), dtype, tuple(rates))
    if key in _grid_modes:
        return _grid_modes[key]
    shared = None
    try:
        specs = [with_rate(spec, lr) for lr in rates]
        modes = {choose_mode(s, device, dtype) for s in specs}
        mode = modes.pop() if len(modes) == 1 else "separate"
        if mode != "separate":
            probe = _Probe(dim=4, device=device, dtype=dtype)
            generator = torch.Generator().manual_seed(1)
            start = torch.randn(2, 4, generator=generator, dtype=torch.float64)
            start = (start * torch.tensor([[1e-2], [1e2]], dtype=torch.float64)).to(device, dtype)
            together = _trajectory(spec, mode, probe, start.repeat(len(rates), 1), [0, 1] * len(rates), rates)
            alone = torch.cat([_trajectory(s, mode, probe, start, [0, 1]) for s in specs])
            shared = mode if _close(together, alone, dtype) else None
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - a grid the optimizer cannot take is simply not shared
        shared = None
    _grid_modes[key] = shared
    return shared


def grid_shares_batch(
    spec: OptimizerSpec,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
    lrs: Sequence[float] | None = None,
) -> bool:
    """Whether a learning-rate grid may share one batch (:func:`grid_mode` is not None)."""
    return grid_mode(spec, device, dtype, lrs) is not None


def _hint(exc: BaseException) -> str:
    """What an error most likely means for landbench, where it has a likely meaning."""
    if isinstance(exc, SystemExit):
        return " (the optimizer called sys.exit, which would end a sweep)"
    if "does not require grad" in str(exc) or "create_graph" in str(exc):
        return (
            " (landbench hands optimizers closed-form gradients without an autograd graph, so optimizers that "
            "differentiate the gradient, such as Hessian-vector methods like AdaHessian or Sophia-H, cannot run)"
        )
    return ""


def _agrees(
    spec: OptimizerSpec,
    mode: str,
    probe: _Probe,
    start: torch.Tensor,
    seeds: list[int],
    alone: torch.Tensor,
    dtype: torch.dtype,
) -> bool:
    try:
        together = _trajectory(spec, mode, probe, start, seeds)[: alone.shape[0]]
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - a mode the optimizer cannot run in is simply not chosen
        return False
    return _close(together, alone, dtype)
