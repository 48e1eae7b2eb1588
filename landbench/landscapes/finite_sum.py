"""Finite-sum landscapes: a loss that is a mean over training examples, with a population loss.

A finite-sum family holds ``n`` training examples drawn per instance (seeded, on the CPU in
float64, then moved: the same on every device) and its loss is their mean,

    f(x) = (1/n) sum_i l_i(x),

evaluated for a batch of runs at once. A run with a ``batch_size`` m < n steps on minibatch
gradients, ``(1/m) sum_{i in S_t} grad l_i(x)``, with ``S_t`` the run's own draw for step t,
without replacement within an epoch (:class:`landbench.minibatch.Minibatches`); the loss the run's
record and events see is always the full training loss f. Each family also knows its *population* (test) loss
``E_{(a, y)} l(x; a, y)``: in closed form where one exists, otherwise as the mean over a large
held-out sample drawn from the same instance (:attr:`FiniteSum.test_loss_kind` says which).

What a family provides beyond :class:`~landbench.landscapes.base.Landscape`:

* a parameter ``samples`` (n, :data:`SAMPLES`), or another named by :attr:`FiniteSum.examples_param`
  (``matrix_sensing``'s ``measurements``);
* :meth:`FiniteSum.example_losses`: the per-example losses ``l_i(x_b)`` for given example indices
  (one ``(B, m)`` index tensor: each run its own examples, one gather, no per-run loop);
* :meth:`FiniteSum.test_loss`: the population loss of each row;
* optionally :meth:`FiniteSum.batch_loss_and_grad` in closed form (the default is autograd of
  :meth:`FiniteSum.batch_loss`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from landbench.spec import Param

#: The number of training examples n of an instance.
SAMPLES = Param("samples", int, 256, "training examples n drawn per instance", low=1, high=2**24 - 1)


class FiniteSum:
    """Mixin of the finite-sum families: put it before :class:`Landscape` in the bases.

    ``loss(x)`` and ``loss_and_grad(x)`` are the full-batch mean over the n training examples; the
    engine asks :meth:`batch_loss_and_grad` for minibatch gradients.
    """

    finite_sum: ClassVar[bool] = True
    #: how the population loss is computed: "closed form" or "held-out sample of N examples"
    test_loss_kind: ClassVar[str] = "closed form"
    #: the parameter that holds the number of training examples n
    examples_param: ClassVar[str] = "samples"
    values: dict[str, Any]
    #: the data's dimension (the spec's ``dim``); a family sets it in ``_build``
    data_dim: int

    @property
    def examples(self) -> int:
        """The number of training examples n."""
        return int(self.values[self.examples_param])

    # --- what a family provides ----------------------------------------------------------------

    def example_losses(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """The per-example losses ``l_i(x_b)``: ``(B, m)`` for the examples ``index[b]`` (an int64
        ``(B, m)`` tensor), or ``(B, n)`` for all training examples when ``index`` is None.
        Differentiable in ``x`` (the default gradient is autograd of their mean)."""
        raise NotImplementedError

    def test_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The population (test) loss ``E l(x_b; a, y)`` of each row ``(B,)``, in closed form or on a
        held-out sample of the instance (see :attr:`test_loss_kind`)."""
        raise NotImplementedError

    # --- derived --------------------------------------------------------------------------------

    def batch_loss(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """The mean of :meth:`example_losses` over each row's examples: ``(B,)``."""
        return self.example_losses(x, index).mean(dim=1)

    def batch_loss_and_grad(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch loss ``(B,)`` and its gradient ``(B, dim)``, each row over its own examples
        (all of them when ``index`` is None); autograd unless the family gives a closed form. Fresh
        tensors the caller may modify."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            value = self.batch_loss(x, index)
            (grad,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), grad

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The training loss, the mean over all n examples: ``(B,)``."""
        return self.batch_loss(x, None)

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss and its full-batch gradient."""
        return self.batch_loss_and_grad(x, None)

    def finite_sum_facts(self) -> dict[str, Any]:
        """What every finite-sum instance states about its data (for :meth:`facts`): the data's
        dimension (the spec's ``dim``), the search space's (the records' ``dim``: the weights of a
        network family), the examples n and how the population loss is computed."""
        return {
            "data_dim": self.data_dim,
            "search_dim": self.dim,  # type: ignore[attr-defined]
            "examples": self.examples,
            "test_loss": self.test_loss_kind,
        }


def is_finite_sum(landscape: object) -> bool:
    """Whether ``landscape`` (an instance or a class) is a finite sum over training examples."""
    return bool(getattr(landscape, "finite_sum", False))


def effective_batch_size(problem: Any, batch_size: int | None) -> int | None:
    """The minibatch size a scenario runs with: None (the full batch) when ``batch_size`` is None or
    equals the problem's number of examples n (the same runs, bit for bit, so one scenario and one
    key). ``problem`` is a canonical spec string or a built landscape. A batch size on a problem that
    is not a finite sum, or larger than its n, raises :class:`SpecError` naming what is valid."""
    if batch_size is None:
        return None
    from landbench.errors import SpecError

    if isinstance(problem, str):
        finite = is_finite_sum_problem(problem)
        n = examples_of(problem) if finite else 0
        name = str(problem)
    else:
        finite, name = is_finite_sum(problem), problem.spec
        n = problem.examples if finite else 0
    if not finite:
        raise SpecError(
            f"batch_size={batch_size}: {name} is not a finite sum; batch sizes apply to {finite_sum_families()}"
        )
    if batch_size > n:
        raise SpecError(f"batch_size={batch_size} exceeds the {n} training examples of {name}: choose 1..{n}")
    return None if batch_size == n else batch_size


def examples_of(problem: str) -> int:
    """The number of training examples n of a finite-sum problem spec (its ``examples_param``,
    validated as the constructor would), without building the instance."""
    from landbench.landscapes import family
    from landbench.spec import bind_params, parse_spec

    spec = parse_spec(problem, what="problem")
    cls = family(spec.name)
    return int(bind_params(cls.family, cls.params, spec.kwargs)[cls.examples_param])  # type: ignore[attr-defined]


def is_finite_sum_problem(problem: Any) -> bool:
    """Whether a problem (a spec string or a built landscape) is of a finite-sum family."""
    if not isinstance(problem, str):
        return is_finite_sum(problem)
    from landbench.landscapes import family
    from landbench.spec import parse_spec

    return is_finite_sum(family(parse_spec(problem, what="problem").name))


def applicable_batch_size(problem: Any, batch_size: int | None) -> int | None:
    """The minibatch size a problem runs with when a batch size is given to many problems at once (a
    suite's top level, ``--batch-size``, an asv class): :func:`effective_batch_size` on a finite sum,
    None (the full batch, all there is) on any other problem."""
    if batch_size is None or not is_finite_sum_problem(problem):
        return None
    return effective_batch_size(problem, batch_size)


def finite_sum_families() -> str:
    """The finite-sum families, by name, for messages."""
    from landbench.landscapes import FAMILIES

    return ", ".join(f for f, c in FAMILIES.items() if is_finite_sum(c))


def gather_rows(data: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """The examples of each run: ``data[index]`` of shape ``(B, m, ...)`` (one gather), or ``data``
    with a leading axis of one (broadcast over the runs) when ``index`` is None."""
    return data.unsqueeze(0) if index is None else data[index]
