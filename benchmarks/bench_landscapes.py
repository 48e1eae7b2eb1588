"""Landscape evaluation: one closed-form loss and gradient of a ``(BATCH, dim)`` batch, per family and dim."""

from __future__ import annotations

import landbench

from ._common import BATCH, DIMS, FAMILIES, device, problem_spec, synchronize


class LandscapeEvaluation:
    """``landscape.loss_and_grad(x)`` on ``BATCH`` start points (float32, ``$LANDBENCH_ASV_DEVICE``)."""

    params = [FAMILIES, DIMS]
    param_names = ["family", "dim"]

    def setup(self, family: str, dim: int) -> None:
        self.device = device()
        self.landscape = landbench.make(problem_spec(family, dim), device=self.device)
        self.x = self.landscape.sample_start(list(range(BATCH)))
        self.landscape.loss_and_grad(self.x)  # warm-up: first-call allocations stay out of the timing
        synchronize(self.device)

    def time_loss_and_grad(self, family: str, dim: int) -> None:
        """Seconds for one evaluation of the loss and gradient of the whole batch (synchronised on a GPU)."""
        self.landscape.loss_and_grad(self.x)
        synchronize(self.device)

    def peakmem_loss_and_grad(self, family: str, dim: int) -> None:
        """Peak resident memory of the process (host memory, the landscape included) around an evaluation."""
        self.landscape.loss_and_grad(self.x)
        synchronize(self.device)
