"""Which mode runs B independent runs of an optimizer fastest while keeping them independent?

``batched`` (one (B, d) tensor) is right for elementwise optimizers: SGD, Adam, AdamW, RMSprop,
Adagrad, NAdam, RAdam, Adamax, ASGD, Rprop, Adadelta, SAM and perturbed GD as landbench writes
them. ``per_tensor`` (B tensors of shape (1, d), one optimizer) is right when the update couples
the entries of a tensor but not different tensors: a per-tensor trust ratio (LAMB, LARS), a
factored second moment (Adafactor). ``separate`` (one optimizer per run) is right for everything,
including a global norm over all parameters, a guard that skips the whole step when any gradient
is NaN, and a closure with a line search (LBFGS). Rather than trust a list, landbench checks each
optimizer spec once per device and dtype, in that order, and takes the first mode that matches
separate runs (:func:`choose_mode`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from landbench.errors import BatchSafetyError
from landbench.landscapes.base import DIM, Landscape

if TYPE_CHECKING:
    from landbench.optimizers import OptimizerSpec

_chosen: dict[tuple[str, str, torch.dtype], str] = {}
_STEPS = 5
#: Start scales of the probe runs: very different scales expose global norms; the last run starts
#: at infinity, so its loss and gradient are non-finite from the first step (a guard that skips the
#: whole step on any NaN would then stall the others).
_SCALES = (0.1, 1.0, 10.0, float("inf"))


class _Probe(Landscape):
    """``f(x) = sum_i a_i x_i^2 / 2 + c_i x_i`` on 4 coordinates, a fixed instance (the probe)."""

    family = "batch_safety_probe"
    params = (DIM,)

    def _build(self) -> None:
        self.curvatures = self._tensor(torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64))
        self.offsets = self._tensor(torch.tensor([0.3, -0.2, 0.1, 0.05], dtype=torch.float64))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.curvatures * x * x + self.offsets * x).sum(1)

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss(x), self.curvatures * x + self.offsets

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.dim, generator=generator, dtype=torch.float64)


def _trajectory(
    spec: OptimizerSpec,
    mode: str,
    probe: _Probe,
    start: torch.Tensor,
    seeds: list[int],
    lrs: list[float] | None = None,
) -> torch.Tensor:
    """Points after ``_STEPS`` steps of ``spec`` in ``mode`` from ``start`` (the engine's steppers)."""
    from landbench.stepping import STEPPERS, Evaluator, bind_runs

    if lrs is None:
        stepper = STEPPERS[mode](spec, start, Evaluator(probe, 0.0, None))
    else:
        stepper = STEPPERS[mode](spec, start, Evaluator(probe, 0.0, None, len(lrs)), lrs)
    bind_runs(stepper, seeds, 0)
    with torch.no_grad():
        for _ in range(_STEPS):
            _, grad = probe.loss_and_grad(stepper.points())
            stepper.step(grad)
    return stepper.points()


def choose_mode(spec: OptimizerSpec, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> str:
    """The fastest mode (``batched``, ``per_tensor``, ``separate``) whose runs equal separate runs.

    On a probe quadratic, four runs (three healthy ones of start scale 0.1, 1 and 10, and one whose
    gradient is infinite from the start) take five steps, on ``device`` in ``dtype``, in each mode; the three
    healthy rows must equal the same runs made one at a time (to 1e-9 in float64, 1e-5 in float32).
    ``separate`` always qualifies; an optimizer that fails even alone raises BatchSafetyError.
    Cached per (spec, device, dtype).
    """
    device = torch.device(device)
    key = (spec.canonical, str(device), dtype)
    if key in _chosen:
        return _chosen[key]
    probe = _Probe(dim=4, device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(len(_SCALES), 4, generator=generator, dtype=torch.float64)
    start = (torch.tensor(_SCALES, dtype=torch.float64)[:, None] * directions).to(device=device, dtype=dtype)
    seeds = list(range(len(_SCALES)))
    healthy = len(_SCALES) - 1
    try:
        alone = torch.cat([_trajectory(spec, "separate", probe, start[i : i + 1], [i]) for i in range(healthy)])
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party optimizer is reported as such
        raise BatchSafetyError(
            f"optimizer {spec.canonical} fails on a small test problem on {device} in {dtype} even for a single "
            f"run: {type(exc).__name__}: {exc}{_hint(exc)}"
        ) from None
    tolerance = 1e-9 if dtype == torch.float64 else 1e-5
    chosen = "separate"
    for mode in ("batched", "per_tensor"):
        if _agrees(spec, mode, probe, start, seeds, alone, tolerance):
            chosen = mode
            break
    _chosen[key] = chosen
    return chosen


_grid_safe: dict[tuple[str, str, torch.dtype], bool] = {}


def grid_shares_batch(
    spec: OptimizerSpec, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64
) -> bool:
    """Whether a learning-rate grid may share one batch: two rates as two param groups, in the
    spec's mode, give each rate's own numbers on the probe. An optimizer that reads its rate from
    somewhere other than its param groups (``self.lr``, say) fails this and tunes one rate at a time.
    """
    from landbench.optimizers import resolve
    from landbench.spec import format_spec

    device = torch.device(device)
    key = (spec.canonical, str(device), dtype)
    if key in _grid_safe:
        return _grid_safe[key]
    mode = choose_mode(spec, device, dtype)
    safe = False
    if mode != "separate":
        base = float(spec.kwargs.get("lr", 1e-3))
        lrs = [base, base * 0.3]
        probe = _Probe(dim=4, device=device, dtype=dtype)
        start = torch.randn(2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device, dtype)
        try:
            together = _trajectory(spec, mode, probe, start.repeat(2, 1), [0, 1, 0, 1], lrs)
            alone = torch.cat(
                [
                    _trajectory(resolve(format_spec(spec.name, {**spec.kwargs, "lr": lr})), mode, probe, start, [0, 1])
                    for lr in lrs
                ]
            )
            tolerance = 1e-9 if dtype == torch.float64 else 1e-5
            safe = bool(torch.allclose(together, alone, rtol=tolerance, atol=tolerance * 1e-3))
        except Exception:  # noqa: BLE001 - a grid the optimizer cannot take is simply not shared
            safe = False
    _grid_safe[key] = safe
    return safe


def _hint(exc: Exception) -> str:
    """What an error most likely means for landbench, where it has a likely meaning."""
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
    tol: float,
) -> bool:
    try:
        together = _trajectory(spec, mode, probe, start, seeds)[: alone.shape[0]]
    except Exception:  # noqa: BLE001 - a mode the optimizer cannot run in is simply not chosen
        return False
    return bool(torch.allclose(together, alone, rtol=tol, atol=tol * 1e-3))
