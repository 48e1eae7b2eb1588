"""Is it safe to run B independent runs as one (B, d) parameter tensor with one optimizer?

It is when the optimizer is elementwise: the torch.optim classes landbench names (SGD, Adam,
AdamW, RMSprop, Adagrad, NAdam, RAdam, Adamax, ASGD, Rprop, Adadelta) are. It is not when the
update of one entry depends on others: a global gradient norm, a per-tensor trust ratio (LAMB,
LARS), a factored second moment (Adafactor), orthogonalisation (Muon), a closure (LBFGS), or a
guard that skips the whole step when any gradient is NaN (one diverged run would stall the rest).
Rather than trust a list, landbench checks each optimizer spec once per device and dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from landbench.errors import BatchSafetyError

if TYPE_CHECKING:
    from landbench.optimizers import OptimizerSpec

_checked: set[tuple[str, str, torch.dtype]] = set()
_STEPS = 5
_NAN_FROM = 2  # the poisoned run's gradient is NaN from this step on


def _trajectory(
    spec: OptimizerSpec, start: torch.Tensor, slope: torch.Tensor, offset: torch.Tensor, poisoned: torch.Tensor
) -> torch.Tensor:
    """Iterates after ``_STEPS`` steps on ``g(x) = slope * x + offset``; rows marked ``poisoned``
    get a NaN gradient from step ``_NAN_FROM`` on."""
    param = start.clone().requires_grad_(True)
    optimizer = spec.build([param])
    for step in range(_STEPS):
        grad = slope * param.detach() + offset
        if step >= _NAN_FROM:
            grad = torch.where(poisoned, torch.nan, grad)
        param.grad = grad
        optimizer.step()
    return param.detach()


def check_batch_safe(
    spec: OptimizerSpec, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64
) -> None:
    """Raise :class:`BatchSafetyError` unless batched runs equal separate runs for this spec.

    Three runs of very different scale (so that global norms differ) and a fourth whose gradient
    turns NaN after two steps take five steps on ``g(x) = a_b x + c_b``, on ``device`` in ``dtype``,
    batched and one by one: the three healthy runs must agree (to 1e-9 in float64, 1e-5 in float32).
    Any error the optimizer raises on the way is reported as unsafe. Cached per (spec, device, dtype).
    """
    device = torch.device(device)
    key = (spec.canonical, str(device), dtype)
    if key in _checked:
        return
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([[0.1], [1.0], [10.0], [1.0]], dtype=torch.float64)
    start = scales * torch.randn(4, 4, generator=generator, dtype=torch.float64)
    slope = torch.tensor([[0.5], [1.0], [2.0], [1.0]], dtype=torch.float64)
    offset = scales * torch.randn(4, 4, generator=generator, dtype=torch.float64)
    start, slope, offset = (t.to(device=device, dtype=dtype) for t in (start, slope, offset))
    poisoned = torch.tensor([[False], [False], [False], [True]], device=device)
    try:
        batched = _trajectory(spec, start, slope, offset, poisoned)[:3]
        rows = [slice(i, i + 1) for i in range(3)]
        separate = torch.cat([_trajectory(spec, start[r], slope[r], offset[r], poisoned[r]) for r in rows])
    except TypeError as exc:
        if "closure" in str(exc):
            raise BatchSafetyError(
                f"optimizer {spec.canonical} cannot be stepped without a closure ({exc}); landbench steps "
                f"optimizers with precomputed gradients, so closure optimizers such as lbfgs are not supported yet"
            ) from None
        raise BatchSafetyError(f"optimizer {spec.canonical} failed on a test problem: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party optimizer is reported as such
        raise BatchSafetyError(
            f"optimizer {spec.canonical} failed on a test problem on {device} in {dtype}: {type(exc).__name__}: {exc}"
        ) from None
    tolerance = 1e-9 if dtype == torch.float64 else 1e-5
    if not torch.allclose(batched, separate, rtol=tolerance, atol=tolerance * 1e-3):
        raise BatchSafetyError(
            f"optimizer {spec.canonical} couples the runs of a batch (its update of one run depends on the "
            f"others, e.g. through a global norm, or a NaN in one run changes the others), so B runs cannot "
            f"share one tensor; batch-safe optimizers are elementwise ones such as sgd, adam, adamw, rmsprop"
        )
    _checked.add(key)
