"""Optimizer steps through the batched engine (``run_batch``, curvature metrics off)."""

from __future__ import annotations

import inspect
from typing import Any

import landbench
from landbench.engine import run_batch
from landbench.optimizers import resolve
from landbench.settings import Settings

from ._common import BATCH, DIMS, FAMILIES, device, problem_spec, synchronize

#: Steps per timed run: a value of ``time_steps`` divided by STEPS is the time of one step
#: (loss, gradient, optimizer update and event tracking for the whole batch, plus 1/STEPS of the
#: run's set-up).
STEPS = 20
_NO_METRICS = Settings(curvature=False)


class _EngineRun:
    """A run of ``STEPS`` steps of ``BATCH`` runs, with the batch mode chosen in ``setup`` (untimed)."""

    optimizer = "adam(lr=0.001)"

    def _prepare(self, problem: str, optimizer: str) -> None:
        self.device = device()
        self.landscape = landbench.make(problem, device=self.device)
        self.spec = resolve(optimizer)
        self.options: dict[str, Any] = {"steps": STEPS, "settings": _NO_METRICS}
        try:  # landbench >= e706421 chooses how to step a batch by a probe: done here, untimed
            from landbench.optimizers.batching import choose_mode
        except ImportError:
            pass
        else:
            self.options["mode"] = choose_mode(self.spec, self.device, self.landscape.dtype)
        if "verify" in inspect.signature(run_batch).parameters:  # landbench >= schema 3: time the loop alone
            self.options["verify"] = False
        self._run()  # warm-up

    def _run(self) -> None:
        run_batch(self.landscape, self.spec, list(range(BATCH)), **self.options)
        synchronize(self.device)


class OptimizerSteps(_EngineRun):
    """Adam (lr=1e-3) for STEPS steps on every family and dimension."""

    params = [FAMILIES, DIMS]
    param_names = ["family", "dim"]

    def setup(self, family: str, dim: int) -> None:
        self._prepare(problem_spec(family, dim), self.optimizer)

    def time_steps(self, family: str, dim: int) -> None:
        """Seconds for a run of STEPS steps of the batch (divide by STEPS for one step)."""
        self._run()

    def peakmem_steps(self, family: str, dim: int) -> None:
        """Peak resident memory of the process (host memory) over a run of STEPS steps."""
        self._run()


class OptimizerStepCost(_EngineRun):
    """Each classical optimizer for STEPS steps on ``quadratic(dim=1000)``: the update's own cost.

    torch.optim classes only, which every landbench commit resolves (``gd``, ``sam`` and ``pgd``
    came later, and asv runs this suite against old commits too).
    """

    params = [["sgd(lr=0.01)", "sgd(lr=0.01, momentum=0.9)", "adam(lr=0.01)", "rmsprop(lr=0.01)", "adagrad(lr=0.01)"]]
    param_names = ["optimizer"]

    def setup(self, optimizer: str) -> None:
        self._prepare("quadratic(dim=1000)", optimizer)

    def time_steps(self, optimizer: str) -> None:
        """Seconds for a run of STEPS steps of the batch (divide by STEPS for one step)."""
        self._run()
