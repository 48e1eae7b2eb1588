"""How an optimizer steps B runs: three modes, from fastest to most general.

* ``batched``: one ``(B, d)`` parameter tensor, one optimizer. Valid for elementwise optimizers.
* ``per_tensor``: B parameter tensors of shape ``(1, d)``, one optimizer. Valid for optimizers that
  couple the entries of a tensor (a per-tensor norm, trust ratio or factored moment) but treat
  tensors independently; its kernels still run over all B tensors at once (``foreach``).
* ``separate``: B optimizers, one per run. Valid for every optimizer, including those that couple
  all their parameters (a global norm) or that evaluate the landscape several times per step
  through a closure (LBFGS's line search): the closure then evaluates that run alone.

:func:`landbench.optimizers.batching.choose_mode` picks the fastest mode that gives the same
numbers as separate runs. Every mode offers the same operations to the engine: the current points,
a step from given gradients, and a closure for optimizers that ask for one. The engine evaluates
the landscape on all runs at once wherever the mode allows it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.optim.optimizer as _optim

from landbench.errors import LandbenchError
from landbench.landscapes.base import Landscape
from landbench.minibatch import Minibatches
from landbench.noise import hessian_noise
from landbench.optimizers import OptimizerSpec
from landbench.optimizers.sam import requires_closure as needs_closure
from landbench.rng import GlobalStreams, RunNoise, global_state_kept

MODES = ("batched", "per_tensor", "separate")


#: The code of torch.optim's ``_use_grad_for_differentiable`` wrapper (``_use_grad``), to recognise it.
_USE_GRAD_CODE = getattr(_optim, "_use_grad_for_differentiable", lambda f: f)(lambda *a, **k: None).__code__
#: Whether dynamo is tracing (``torch.compiler.is_compiling`` from torch 2.3; torch._dynamo's before).
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or torch._dynamo.is_compiling


def optimizer_step(optimizer: torch.optim.Optimizer, closure: Callable[[], torch.Tensor] | None = None) -> Any:
    """``optimizer.step(closure)``, without what torch.optim wraps around every call when nothing
    uses it (about 25 us a step, a third of a 256 x 10 step):

    * a profiler ``record_function`` and the dispatch of step hooks: skipped with no profiler
      running, no step hook registered (global or the optimizer's) and no ``step`` set on the
      instance (an LR scheduler's counter);
    * torch's built-in optimizers' ``_use_grad_for_differentiable``, which sets grad mode to the
      optimizer's ``differentiable`` flag for the call and marks two graph breaks for dynamo: also
      skipped when it would change nothing (grad already off, ``differentiable`` False, not compiling).

    The class's own step runs as it is; otherwise ``optimizer.step`` runs as torch has it."""
    step = type(optimizer).step
    inner = getattr(step, "__wrapped__", None)
    if (
        inner is None
        or "step" in vars(optimizer)
        or not getattr(step, "hooked", False)
        or torch.autograd._profiler_enabled()
        or optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or _optim._global_optimizer_pre_hooks
        or _optim._global_optimizer_post_hooks
    ):
        return optimizer.step() if closure is None else optimizer.step(closure)
    if (
        getattr(inner, "__code__", None) is _USE_GRAD_CODE
        and not torch.is_grad_enabled()
        and not optimizer.defaults.get("differentiable", False)
        and not _is_compiling()
    ):
        inner = inner.__wrapped__
    return inner(optimizer) if closure is None else inner(optimizer, closure)


def build(spec: OptimizerSpec, params: Any) -> torch.optim.Optimizer:
    """``spec.build(params)``, with the choice a torch.optim optimizer would make at every step made
    once: where ``foreach`` is left unset (and ``fused`` and ``differentiable`` are off), torch's
    built-in optimizers call ``_default_to_fused_or_foreach`` on every step to pick their for-loop or
    their foreach kernels (foreach where every parameter is a plain tensor on a device that has them:
    CUDA, not the CPU). That depends only on the parameters' types and devices, which a run never
    changes, so the group gets torch's own answer here: the same kernels, without the call (3 us of a
    256 x 10 SGD step, 15 to 35 us of a 256 x 1000 one on the CPU). Other classes, subclasses
    included, are built as they are."""
    optimizer = spec.build(params)
    choose = getattr(_optim, "_default_to_fused_or_foreach", None)  # private: a torch without it builds as is
    if choose is not None and type(optimizer).__module__.startswith("torch.optim."):
        for group in optimizer.param_groups:
            if group.get("foreach", False) is None and not group.get("fused") and not group.get("differentiable"):
                _, group["foreach"] = choose(group["params"], False, use_fused=False)
    return optimizer


def projects(landscape: Landscape) -> bool:
    """Whether the landscape's ``project_`` does anything: a family's own (the sphere of the spin
    glasses, a plug-in's) or one set on the instance, not the base class's no-op, which the step
    loop then does not call."""
    return getattr(landscape.project_, "__func__", None) is not Landscape.project_


class Evaluator:
    """Gradient evaluations: the landscape's closed-form gradient plus the scenario's noise, one
    draw per evaluation from each run's own stream (:class:`landbench.rng.RunNoise`, of the
    scenario's noise model: :mod:`landbench.noise`; ``frozen`` noise is a function of the point).
    On a finite-sum landscape with a batch size, the gradient is each run's minibatch gradient, one
    minibatch per step drawn from the run's own stream (:class:`landbench.minibatch.Minibatches`) and
    used by every evaluation of the step, while the loss the step loop observes is the full training
    loss (one forward pass over the n examples).

    ``copies`` > 1 is a learning-rate grid sharing the batch: the rows are ``copies`` blocks of the
    same runs (same seeds), and every block gets the same noise, as separate runs would.
    """

    def __init__(
        self,
        landscape: Landscape,
        noise: float,
        streams: list[RunNoise] | None,
        copies: int = 1,
        batches: list[Minibatches] | None = None,
    ) -> None:
        self.landscape = landscape
        self.noise = noise
        self.streams = streams  # None without noise; one stream for the batch, or one per run
        self.copies = copies
        self.batches = batches  # None for the full batch; one minibatch stream for the batch, or one per run

    def _minibatch(self, runs: slice | int | None, fresh: bool) -> torch.Tensor:
        """The example indices of an evaluation, one row per row of the batch (copies included): the
        runs' next minibatch when ``fresh`` (a step's first evaluation), else their current one."""
        batches = self.batches
        assert batches is not None
        index = _per_stream(batches, runs, lambda stream, rows: stream.next() if fresh else stream.again())
        return index if self.copies == 1 else index.repeat(self.copies, 1)

    def _loss_and_grad(
        self, x: torch.Tensor, runs: slice | int | None, observed: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss and the gradient: the full batch's, or on a finite sum with a batch size the
        minibatch's gradient with, when ``observed`` (a step's first evaluation, which draws the step's
        minibatch), the full training loss (what the records and events see), else the minibatch's
        loss (what an optimizer's closure sees within the step, on the step's minibatch)."""
        if self.batches is None:
            return self.landscape.loss_and_grad(x)
        loss, grad = self.landscape.batch_loss_and_grad(x, self._minibatch(runs, observed))  # type: ignore[attr-defined]
        return (self.landscape.loss(x) if observed else loss), grad

    def gradient(
        self, x: torch.Tensor, runs: slice | int | None = None, observed: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and (noisy) gradient at the rows of ``x``: every run (``runs=None``) or one run. With
        minibatches the loss is the full training loss when ``observed`` (the step loop's first
        evaluation of each step, which the tracker records), else the minibatch's (a closure's)."""
        loss, grad = self._loss_and_grad(x, runs, observed)
        if self.streams is not None:
            noise = _per_stream(self.streams, runs, lambda stream, rows: stream.next(x[rows]))
            model = self.streams[0].model
            if model.name == "hessian":  # standard normal draws, shaped by each row's Hessian
                noise = noise if noise.shape == grad.shape else noise.repeat(self.copies, 1)
                noise = hessian_noise(self.landscape, x, noise, float(model.value)).to(grad.dtype)
            if self.copies == 1 or noise.shape == grad.shape:  # frozen noise is per row, copies included
                grad.add_(noise, alpha=self.noise)
            else:
                grad.view(self.copies, -1, grad.shape[-1]).add_(noise, alpha=self.noise)
        return loss, grad


def _per_stream(streams: Sequence[Any], runs: slice | int | None, draw: Callable[[Any, slice], torch.Tensor]) -> Any:
    """``draw(stream, rows)`` from the streams of an evaluation: one run's stream (``runs`` an int, in
    separate mode), the batch's one stream, or each run's stream on its row, concatenated; ``rows``
    selects the rows of the evaluated points that the stream serves."""
    if isinstance(runs, int) or len(streams) == 1:
        return draw(streams[runs if isinstance(runs, int) else 0], slice(None))
    return torch.cat([draw(stream, slice(i, i + 1)) for i, stream in enumerate(streams)])


def _groups(params: list[torch.nn.Parameter], lrs: Sequence[float] | None) -> list[Any]:
    """The optimizer's parameters: all of them, or one param group per learning rate (equal shares)."""
    if lrs is None:
        return params
    share = len(params) // len(lrs)
    return [{"params": params[i * share : (i + 1) * share], "lr": lr} for i, lr in enumerate(lrs)]


class Stepper(Protocol):
    """The operations every mode offers the engine."""

    evals: int | list[int]

    def points(self) -> torch.Tensor: ...

    def step(self, grad: torch.Tensor, loss: torch.Tensor) -> None: ...


class _Fresh:
    """A step's own evaluation (loss and gradient at its point), for a closure the optimizer calls
    before it has moved anything: LBFGS and pytorch-optimizer's AliG start their step with
    ``closure()`` at the point the step began from, whose loss and gradient the step loop has just
    computed. The closure hands those back (a copy of the gradient as it was, whatever the optimizer
    did to ``p.grad`` since), once, rather than evaluate (and count, and draw noise for) the same point
    twice, when every parameter still holds the values it had; a parameter moved in any way (in
    place, through ``.data``, replaced) makes it evaluate as usual. Version counters would not do:
    ``p.data.add_(e)``, SAM's usual perturbation, leaves them alone. With minibatches the closure's
    loss is the minibatch's and the step's the full training loss, so it always evaluates.

    The copies cost two passes over the parameters a step, so a stepper keeps making them only while
    they pay: an optimizer whose first closure call of the first step is at a moved point (SAM's)
    is taken to always call it there (:func:`_reuses`)."""

    def __init__(self, loss: torch.Tensor, grad: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        self.loss, self.grad, self.params = loss, grad.clone(), params
        self.values = [p.detach().clone() for p in params]

    def unchanged(self) -> bool:
        return all(torch.equal(p.detach(), value) for p, value in zip(self.params, self.values))


def _reuses(stepper: Any, fresh: _Fresh | None) -> bool:
    """Whether the closure may hand back ``fresh``: the step's point unchanged. Learns, from the first
    closure call that had a ``fresh`` to look at, whether the stepper should keep making them."""
    if fresh is None:
        return False
    unchanged = fresh.unchanged()
    if stepper.reuse is None:
        stepper.reuse = unchanged
    return unchanged


class BatchedStepper:
    """One (B, d) parameter tensor and one optimizer; with ``lrs``, one (B, d) tensor per learning
    rate, each in its own param group (a grid of G rates over the same B runs, as G*B rows)."""

    def __init__(
        self, spec: OptimizerSpec, start: torch.Tensor, evaluator: Evaluator, lrs: Sequence[float] | None = None
    ) -> None:
        self.params = [torch.nn.Parameter(block.clone()) for block in start.chunk(len(lrs) if lrs else 1)]
        self.optimizer = build(spec, _groups(self.params, lrs))
        self.evaluator = evaluator
        self.closure = self._closure if needs_closure(self.optimizer) else None
        self.evals = 0  # the same for every run
        self._fresh: _Fresh | None = None
        self.reuse: bool | None = None  # whether a closure hands back the step's evaluation (_Fresh)

    def points(self) -> torch.Tensor:
        if len(self.params) == 1:
            return self.params[0].detach()
        return torch.cat([p.detach() for p in self.params])

    def _assign(self, grad: torch.Tensor) -> None:
        if len(self.params) == 1:
            self.params[0].grad = grad
        else:
            for param, block in zip(self.params, grad.chunk(len(self.params))):
                param.grad = block

    def _closure(self) -> torch.Tensor:
        fresh, self._fresh = self._fresh, None
        if _reuses(self, fresh):  # at the step's own point: its evaluation, once more
            self._assign(fresh.grad)  # type: ignore[union-attr]
            return fresh.loss.sum()  # type: ignore[union-attr]
        loss, grad = self.evaluator.gradient(self.points(), observed=False)
        self._assign(grad)
        self.evals += 1
        return loss.sum()

    def step(self, grad: torch.Tensor, loss: torch.Tensor) -> None:
        self._assign(grad)
        if self.closure is not None and self.evaluator.batches is None and self.reuse is not False:
            self._fresh = _Fresh(loss, grad, self.params)
        optimizer_step(self.optimizer, self.closure)
        if projects(self.evaluator.landscape):
            for param in self.params:
                self.evaluator.landscape.project_(param.data)


class PerTensorStepper(BatchedStepper):
    """B parameter tensors of shape (1, d) and one optimizer over the list (with ``lrs``: G*B
    tensors, the B runs of each learning rate in its own param group)."""

    def __init__(
        self, spec: OptimizerSpec, start: torch.Tensor, evaluator: Evaluator, lrs: Sequence[float] | None = None
    ) -> None:
        self.params = [torch.nn.Parameter(row.clone()) for row in start.split(1)]
        self.optimizer = build(spec, _groups(self.params, lrs))
        self.evaluator = evaluator
        self.closure = self._closure if needs_closure(self.optimizer) else None
        self.evals = 0
        self._fresh = None
        self.reuse = None

    def _assign(self, grad: torch.Tensor) -> None:
        for param, row in zip(self.params, grad.split(1)):
            param.grad = row


class SeparateStepper:
    """B optimizers, one per run, each over its own (1, d) parameter tensor. With ``streams``, each
    run's optimizer is built and stepped on its run's own state of torch's global generators
    (:class:`landbench.rng.GlobalStreams`), so that one that draws from them gives each run the
    same numbers whichever runs share the batch."""

    def __init__(
        self, spec: OptimizerSpec, start: torch.Tensor, evaluator: Evaluator, streams: GlobalStreams | None = None
    ) -> None:
        self.params = [torch.nn.Parameter(row.clone()) for row in start.split(1)]
        self.streams = streams
        self.optimizers = []
        with global_state_kept(start.device) if streams is not None else contextlib.nullcontext():
            for run, param in enumerate(self.params):
                if streams is not None:
                    streams.enter(run)
                self.optimizers.append(build(spec, [param]))
                if streams is not None:
                    streams.leave(run)
        self.evaluator = evaluator
        self.closures: list[Callable[[], torch.Tensor] | None] = [
            self._closure_for(i) if needs_closure(opt) else None for i, opt in enumerate(self.optimizers)
        ]
        # per run where a closure may evaluate more often (LBFGS); else one count for all runs, so
        # that counting a step costs the same for any number of runs
        self.evals: int | list[int] = [0] * len(self.params) if any(self.closures) else 0
        self._fresh: list[_Fresh | None] = [None] * len(self.params)
        self.reuse: bool | None = None  # whether a closure hands back the step's evaluation (_Fresh)

    def points(self) -> torch.Tensor:
        return torch.cat([p.detach() for p in self.params])

    def _closure_for(self, run: int) -> Callable[[], torch.Tensor]:
        def closure() -> torch.Tensor:
            fresh, self._fresh[run] = self._fresh[run], None
            if _reuses(self, fresh):  # at the step's own point: its evaluation, once more
                self.params[run].grad = fresh.grad  # type: ignore[union-attr]
                return fresh.loss.sum()  # type: ignore[union-attr]
            loss, grad = self.evaluator.gradient(self.params[run].detach(), run, observed=False)
            self.params[run].grad = grad
            self.evals[run] += 1  # type: ignore[index]
            return loss.sum()

        return closure

    def step(self, grad: torch.Tensor, loss: torch.Tensor) -> None:
        project = projects(self.evaluator.landscape)  # once a step, not once a run
        streams = self.streams
        reuse = self.evaluator.batches is None and self.reuse is not False
        with global_state_kept(streams.device) if streams is not None else contextlib.nullcontext():
            for run, (param, optimizer, closure, row) in enumerate(
                zip(self.params, self.optimizers, self.closures, grad.split(1))
            ):
                param.grad = row
                if closure is not None and reuse:
                    self._fresh[run] = _Fresh(loss[run : run + 1], row, [param])
                if streams is not None:
                    streams.enter(run)
                optimizer_step(optimizer, closure)
                if streams is not None:
                    streams.leave(run)
                if project:
                    self.evaluator.landscape.project_(param.data)


STEPPERS: dict[str, type] = {"batched": BatchedStepper, "per_tensor": PerTensorStepper, "separate": SeparateStepper}


def make_stepper(
    mode: str,
    spec: OptimizerSpec,
    start: torch.Tensor,
    evaluator: Evaluator,
    seeds: list[int],
    instance: int,
    lrs: Sequence[float] | None = None,
    own_rng: bool = False,
) -> Stepper:
    """The stepper of ``mode`` for runs ``seeds`` (rows of ``start``) of landscape instance
    ``instance``, its optimizers given their runs (:func:`bind_runs`); with ``own_rng`` (``separate``
    mode only) each run's optimizer draws from its own stream of torch's global generators
    (:class:`GlobalStreams`: about 4 us a run and a step, so only for optimizers that draw)."""
    if mode == "separate":
        if lrs is not None:
            raise ValueError("a learning-rate grid shares a batch only in batched or per_tensor mode")
        own = GlobalStreams(instance, seeds, start.device) if own_rng else None
        stepper: Stepper = SeparateStepper(spec, start, evaluator, own)
    else:
        stepper = STEPPERS[mode](spec, start, evaluator, *([] if lrs is None else [lrs]))
    bind_runs(stepper, seeds, instance)
    return stepper


def bind_runs(stepper: Stepper, seeds: list[int], instance: int) -> None:
    """Give optimizers that draw random numbers (``bind_runs(seeds, instance)``, e.g. perturbed GD)
    the run seeds of their rows, so their draws do not depend on the batch."""
    if isinstance(stepper, SeparateStepper):
        for optimizer, seed in zip(stepper.optimizers, seeds):
            if hasattr(optimizer, "bind_runs"):
                optimizer.bind_runs([seed], instance)
        return
    optimizer = stepper.optimizer  # type: ignore[attr-defined]
    if hasattr(optimizer, "bind_runs"):
        optimizer.bind_runs(seeds, instance)  # rows of every parameter tensor, in order


def step_loop(
    stepper: Stepper,
    evaluator: Evaluator,
    steps: int,
    observe: Callable[[int, torch.Tensor], bool | None] | None = None,
) -> torch.Tensor:
    """The one step loop of landbench (the engine, the batch-safety probe, the trajectory plots and
    the claims' escape experiments).

    ``steps`` times: the loss and (noisy) gradient at the current points, ``observe(step, loss)``,
    one optimizer step; an ``observe`` that returns True ends the loop there, before that step (an
    experiment whose runs have all done what it waits for). Returns the final points. Host work per
    step does not grow with the number of runs, except in ``separate`` mode, whose steppers step
    each run's optimizer in turn."""
    dtype = evaluator.landscape.dtype
    with torch.no_grad():
        for step in range(steps):
            points = stepper.points()
            if points.dtype != dtype:  # torch would cast the losses back silently, at the lower precision
                raise LandbenchError(
                    f"the optimizer changed its parameters from {dtype} to {points.dtype} before step {step}: "
                    "a run keeps the dtype it was given"
                )
            loss, grad = evaluator.gradient(points)
            if observe is not None and observe(step, loss):
                break
            _count(stepper)
            stepper.step(grad, loss)
        return stepper.points()


def _count(stepper: object) -> None:
    """One more gradient evaluation for every run (the one each step starts with)."""
    evals = stepper.evals  # type: ignore[attr-defined]
    if isinstance(evals, int):
        stepper.evals = evals + 1  # type: ignore[attr-defined]
    else:
        for run in range(len(evals)):
            evals[run] += 1
