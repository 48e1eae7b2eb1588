"""Sharpness-aware minimization (Foret et al. 2021) around any torch.optim base, normalised per run."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.spec import suggest


def bases() -> dict[str, type[torch.optim.Optimizer]]:
    """Base optimizers by name: landbench's named optimizers whose ``step`` needs no closure."""
    from landbench.optimizers import BUILTIN  # the registry imports this module

    return {name: cls for name, cls in BUILTIN.items() if not requires_closure(cls) and cls is not SAM}


def run_rows(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as ``(runs, n)``: a ``(B, d)`` tensor is B runs (one per row); a tensor of any
    other number of dimensions is one run over all its elements (a reshape, a view when possible)."""
    return tensor if tensor.ndim == 2 else tensor.reshape(1, -1)


#: The exception pytorch-optimizer's ``step`` raises when it is called without the closure it needs
#: (``closure=None`` in its signature: AliG, its SAM variants).
NO_CLOSURE_ERROR = "NoClosureError"


def requires_closure(optimizer: type | torch.optim.Optimizer) -> bool:
    """Whether ``step`` of an optimizer (class or instance) requires a closure: a ``closure``
    parameter without a default, or one defaulting to None with a ``step`` that raises
    :data:`NO_CLOSURE_ERROR` (pytorch-optimizer's convention; read from the names its code uses,
    under any decorators)."""
    parameter = inspect.signature(optimizer.step).parameters.get("closure")
    if parameter is None:
        return False
    if parameter.default is inspect.Parameter.empty:
        return True
    code = getattr(inspect.unwrap(optimizer.step), "__code__", None)
    return code is not None and NO_CLOSURE_ERROR in code.co_names


def base_class(base: str | type) -> type[torch.optim.Optimizer]:
    """The base optimizer class: a name of :func:`bases` or a :class:`torch.optim.Optimizer` subclass
    whose ``step`` works without a closure."""
    if isinstance(base, str):
        from landbench.optimizers import BUILTIN

        names = bases()
        if base in BUILTIN and base not in names:
            raise SpecError(f"sam: base {base!r} needs a closure in step(); valid bases: {', '.join(names)}")
        if base not in names:
            raise SpecError(
                f"sam: unknown base {base!r}{suggest(base, list(names))}; valid bases: {', '.join(names)}, "
                f"or a torch.optim.Optimizer subclass"
            )
        return names[base]
    if not (isinstance(base, type) and issubclass(base, torch.optim.Optimizer)):
        raise SpecError(
            f"sam: base must be one of {', '.join(bases())} or a torch.optim.Optimizer subclass, got {base!r}"
        )
    if requires_closure(base):
        raise SpecError(f"sam: base {base.__name__} needs a closure in step(); use a base that steps on a gradient")
    return base


def _check_base_kwargs(cls: type, kwargs: dict[str, Any]) -> None:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]  # drop self, params
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return
    valid = [p.name for p in parameters if p.kind != p.VAR_POSITIONAL]
    for key in kwargs:
        if key not in valid:
            raise SpecError(
                f"sam: unknown argument {key!r}{suggest(key, ['base', 'rho', 'adaptive', *valid])}; valid arguments: "
                f"base, rho, adaptive, and those of the base {cls.__name__}: {', '.join(valid)}"
            )


def ascent_step(weight: torch.Tensor, grad: torch.Tensor, rho: float, adaptive: bool) -> torch.Tensor:
    r"""SAM's perturbation ``e`` of ``weight``, per run (rows of a ``(B, d)`` tensor, see :func:`run_rows`).

    ``e = rho g / |g|`` (Foret et al. 2021, eq. 2), or with ``adaptive`` ``e = rho T^2 g / |T g|``,
    ``T = diag(|w|)`` (ASAM, Kwon et al. 2021, with their bias offset eta = 0). No epsilon is added to
    the norm: a run whose norm is 0 (including one whose squares underflow to 0) gets ``e = 0``, any
    other run a perturbation of norm exactly ``rho`` in the ``T``-metric, up to rounding.
    """
    g = run_rows(grad)
    magnitude = run_rows(weight).abs() if adaptive else None
    scaled = g if magnitude is None else g * magnitude
    norm = torch.linalg.vector_norm(scaled, dim=1, keepdim=True)
    scale = torch.where(norm > 0, rho / norm, 0.0)
    direction = g if magnitude is None else scaled * magnitude
    return (direction * scale).reshape(grad.shape)


class SAM(torch.optim.Optimizer):
    r"""Sharpness-aware minimization with the perturbation normalised per run.

    One step, with ``g = grad L(w)`` already in ``param.grad`` (the engine's first evaluation):

    1. ``e = rho g / |g|`` per run (:func:`ascent_step`; ``adaptive=True``: ASAM's ``rho T^2 g / |T g|``);
    2. ``w <- w + e``; ``closure()`` sets ``param.grad = grad L(w + e)`` (second evaluation);
    3. ``w`` is restored exactly (a saved copy, not ``w + e - e``), then the base optimizer steps with
       the perturbed gradient: with ``base="sgd"``, ``w <- w - lr grad L(w + rho g/|g|)``; a momentum
       or Adam base accumulates its state from the perturbed gradients.

    Runs: a ``(B, d)`` parameter is B independent runs (norm over each row), any other shape is one
    run (norm over all its elements). Each parameter tensor is normalised on its own, so on a model
    with several tensors (or a 2-D weight) this differs from Foret et al.'s single norm over all
    weights. Two gradient evaluations per step; memory: one copy of the parameters.

    ``base`` is a name of :func:`bases` or a ``torch.optim.Optimizer`` subclass that steps without a
    closure; ``base_kwargs`` (``lr``, ``momentum``, ``betas``, ...) go to it. ``param_groups`` and
    ``state`` are the base's (so ``lr`` schedulers and ``state_dict`` see the base's values; the
    groups also carry ``rho`` and ``adaptive``). ``step`` requires the closure and returns its loss,
    the loss at ``w + e``.

    References: P. Foret, A. Kleiner, H. Mobahi, B. Neyshabur, "Sharpness-aware minimization for
    efficiently improving generalization", ICLR 2021; J. Kwon, J. Kim, H. Park, I. K. Choi, "ASAM:
    adaptive sharpness-aware minimization for scale-invariant learning of deep neural networks", ICML 2021.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base: str | type = "sgd",
        rho: float = 0.05,
        adaptive: bool = False,
        **base_kwargs: Any,
    ) -> None:
        cls = base_class(base)
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 < rho < math.inf:
            raise SpecError(f"sam: rho must be a positive finite number (the radius of the ascent step), got {rho!r}")
        if not isinstance(adaptive, bool):
            raise SpecError(f"sam: adaptive must be True or False, got {adaptive!r}")
        _check_base_kwargs(cls, base_kwargs)
        super().__init__(params, {"rho": float(rho), "adaptive": adaptive})
        self.base = cls(self.param_groups, **base_kwargs)
        self.param_groups = self.base.param_groups
        self.state = self.base.state
        self.defaults.update(self.base.defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """One SAM step; ``closure`` re-evaluates the loss and sets ``param.grad`` at the current point."""
        saved = []
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                saved.append((param, param.detach().clone()))
                param.add_(ascent_step(param.detach(), param.grad, group["rho"], group["adaptive"]))
        with torch.enable_grad():
            loss = closure()
        for param, weight in saved:
            param.copy_(weight)
        self.base.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the base and share its new groups and state."""
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
        self.state = self.base.state
