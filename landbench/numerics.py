"""The process-wide floating-point settings every batch runs under, pinned.

torch keeps a few numerical settings per process, which any code in it may change: a plug-in's
import, a user's script, another library. Two of them change a run's numbers:

* ``torch.set_flush_denormal(True)`` flushes subnormal floats to zero on the CPU. The saddle chain's
  float32 underflow (Du et al. 2017; ``saddle_chain``'s ``chain_underflow`` field) is exactly what it
  changes: with it, SGD (lr 0.1) on ``saddle_chain(dim=4)`` is stranded at the third saddle in run 2,
  which passes it at step 1445 without.
* ``torch.set_float32_matmul_precision("high")`` (or ``torch.backends.cuda.matmul.allow_tf32 = True``)
  lets float32 matrix products round to TF32's 10-bit mantissa on a GPU (``"medium"``: bfloat16).

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


def _matmul_precision() -> str | None:
    """torch's float32 matmul precision (``allow_tf32 = True`` reads as ``"high"``); None where the
    process mixed torch's two ways of setting it, which makes torch refuse to say."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return None


@contextmanager
def pinned() -> Iterator[None]:
    """Run the block with landbench's numerical settings (see the module docstring), then restore
    the process's. (A process that mixed torch's legacy and new ways of setting the matmul precision
    keeps its own: torch refuses to read it, and setting it there would break the process's.)"""
    flushed = denormals_flushed()
    precision = _matmul_precision()
    changed = precision not in (None, "highest")
    try:
        if flushed:
            torch.set_flush_denormal(False)
        if changed:
            torch.set_float32_matmul_precision("highest")
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(True)
        if changed:
            torch.set_float32_matmul_precision(precision)  # type: ignore[arg-type]
