"""The process-wide floating-point settings every batch runs under, pinned.

torch keeps a few numerical settings per process, which any code in it may change: a plug-in's
import, a user's script, another library. Two of them change a run's numbers:

* ``torch.set_flush_denormal(True)`` flushes subnormal floats to zero on the CPU. The saddle chain's
  float32 underflow (Du et al. 2017; ``saddle_chain``'s ``chain_underflow`` field) is exactly what it
  changes: with it, SGD (lr 0.1) on ``saddle_chain(dim=4)`` is stranded at the third saddle in run 2,
  which passes it at step 1445 without.
* ``torch.backends.cuda.matmul.fp32_precision = "tf32"`` (or the legacy
  ``torch.set_float32_matmul_precision("high")``, ``allow_tf32 = True``) lets float32 matrix products
  round to TF32's 10-bit mantissa on a GPU; ``"bf16"`` (legacy ``"medium"``) to bfloat16, on the CPU's
  oneDNN backend too.

A record must depend on its spec and seeds only, so a batch runs with subnormals kept (IEEE 754's
gradual underflow, torch's default) and float32 products in full float32 (``"highest"``, torch's
default), and the process gets its own settings back afterwards (:func:`pinned`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: The smallest normal float32 is 1.2e-38: this is a subnormal, which a flushing CPU reads as 0.
_SUBNORMAL = 1e-40


def denormals_flushed() -> bool:
    """Whether the CPU flushes subnormal floats to zero (``torch.set_flush_denormal``, which has no
    getter): a subnormal times one is zero exactly when it does."""
    return float(torch.tensor(_SUBNORMAL, dtype=torch.float32) * 1.0) == 0.0


def _precision_settings() -> list[object]:
    """The holders of torch's per-backend float32 precision (torch 2.9's API: ``fp32_precision``,
    ``"ieee"``, ``"tf32"``, ``"bf16"`` or ``"none"`` to inherit): the generic default and the CUDA and
    oneDNN (CPU) matmul backends; none on a torch without that API."""
    backends = torch.backends
    holders = [
        backends,
        getattr(backends.cuda, "matmul", None),
        getattr(getattr(backends, "mkldnn", None), "matmul", None),
    ]
    return [h for h in holders if h is not None and isinstance(getattr(h, "fp32_precision", None), str)]


def _legacy_precision() -> str | None:
    """torch's float32 matmul precision by the legacy getter (torch before 2.9; ``allow_tf32 = True``
    reads as ``"high"``); None where torch refuses to say."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return None


@contextmanager
def pinned() -> Iterator[None]:
    """Run the block with landbench's numerical settings (see the module docstring), then restore
    the process's: each per-backend precision that is not IEEE (or inherited) is set to ``"ieee"``
    and given back, which neither reads nor writes the legacy setting (writing it would also set the
    oneDNN backend's); on a torch without per-backend precision, the legacy one."""
    flushed = denormals_flushed()
    holders = _precision_settings()
    lowered = {holder: holder.fp32_precision for holder in holders if holder.fp32_precision not in ("ieee", "none")}
    legacy = None if holders else _legacy_precision()
    legacy_changed = legacy not in (None, "highest")
    try:
        if flushed:
            torch.set_flush_denormal(False)
        for holder in lowered:
            holder.fp32_precision = "ieee"
        if legacy_changed:
            torch.set_float32_matmul_precision("highest")
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(True)
        for holder, value in lowered.items():
            holder.fp32_precision = value
        if legacy_changed:
            torch.set_float32_matmul_precision(legacy)  # type: ignore[arg-type]
