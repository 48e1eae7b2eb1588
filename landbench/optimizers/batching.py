"""Is it safe to run B independent runs as one (B, d) parameter tensor with one optimizer?

It is when the optimizer is elementwise (every torch.optim class except LBFGS is: SGD, Adam,
AdamW, RMSprop, Adagrad, NAdam, RAdam, Adamax, ASGD, Rprop, Adadelta). It is not when the update
of one entry depends on others: a global gradient norm, a per-tensor trust ratio (LAMB, LARS), a
factored second moment (Adafactor), orthogonalisation (Muon), a line search over the whole tensor
(LBFGS). Rather than trust a list, landbench checks each optimizer spec once: a few steps on three
runs of a small problem, batched and one by one, must agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from landbench.errors import BatchSafetyError

if TYPE_CHECKING:
    from landbench.optimizers import OptimizerSpec

_checked: dict[str, None] = {}


def _trajectory(
    spec: OptimizerSpec, start: torch.Tensor, slope: torch.Tensor, offset: torch.Tensor, steps: int
) -> torch.Tensor:
    """Iterates of the optimizer on the gradient field ``g(x) = slope * x + offset``, rows as given."""
    param = start.clone().requires_grad_(True)
    optimizer = spec.build([param])
    for _ in range(steps):
        param.grad = slope * param.detach() + offset
        optimizer.step()
    return param.detach()


def check_batch_safe(spec: OptimizerSpec) -> None:
    """Raise :class:`BatchSafetyError` unless batched runs equal separate runs for this spec.

    Three runs of very different scale (so that global norms differ) take five steps on
    ``g(x) = a_b x + c_b`` in float64, batched and one by one; they must agree to 1e-9.
    The result is cached per canonical spec.
    """
    if spec.canonical in _checked:
        return
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([[0.1], [1.0], [10.0]], dtype=torch.float64)
    start = scales * torch.randn(3, 4, generator=generator, dtype=torch.float64)
    slope = torch.tensor([[0.5], [1.0], [2.0]], dtype=torch.float64)
    offset = scales * torch.randn(3, 4, generator=generator, dtype=torch.float64)
    try:
        batched = _trajectory(spec, start, slope, offset, steps=5)
        separate = torch.cat(
            [_trajectory(spec, start[i : i + 1], slope[i : i + 1], offset[i : i + 1], 5) for i in range(3)]
        )
    except TypeError as exc:
        raise BatchSafetyError(
            f"optimizer {spec.canonical} cannot be stepped without a closure ({exc}); landbench steps "
            f"optimizers with precomputed gradients, so closure optimizers such as lbfgs are not supported yet"
        ) from None
    if not torch.allclose(batched, separate, rtol=1e-9, atol=1e-12):
        raise BatchSafetyError(
            f"optimizer {spec.canonical} couples the runs of a batch (its update of one run depends on the "
            f"others, e.g. through a global norm), so B runs cannot share one tensor; batch-safe optimizers "
            f"are elementwise ones such as sgd, adam, adamw, rmsprop, adagrad, nadam, radam"
        )
    _checked[spec.canonical] = None
