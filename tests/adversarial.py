"""Optimizers written to break landbench's assumptions.

The tests put this folder on ``sys.path``, so a spec names them ``adversarial:Name``.
"""

from __future__ import annotations

import torch


class LateCouplingSGD(torch.optim.Optimizer):
    """Plain SGD for ``warmup`` steps, then normalised SGD: each step divided by the root-mean-square
    of *all* its gradients (a step size set by a statistic over every parameter, as D-Adaptation's
    and Prodigy's are). Alone, that statistic is the run's own; rows sharing one tensor share it, so
    they are coupled, but only after the warm-up."""

    def __init__(self, params, lr: float = 0.01, warmup: int = 30) -> None:  # noqa: ANN001
        super().__init__(params, {"lr": lr, "warmup": warmup})
        self.steps = 0

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        self.steps += 1
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            scale = 1.0
            if params and self.steps > group["warmup"]:
                scale = float(torch.cat([p.grad.reshape(-1) for p in params]).pow(2).mean().sqrt()) + 1e-12
            for p in params:
                p.add_(p.grad, alpha=-group["lr"] / scale)
        return None


class GlobalNoiseSGD(torch.optim.SGD):
    """SGD plus ``sigma`` times standard normal noise drawn from torch's global generator
    (``torch.randn_like``) from step ``after`` on, as Langevin-type and perturbed optimizers written
    for ordinary models do; ``at_init`` draws once more when it is built (a random initial state)."""

    def __init__(self, params, lr: float = 0.01, sigma: float = 0.1, at_init: bool = True, after: int = 0) -> None:  # noqa: ANN001
        super().__init__(params, lr=lr)
        self.sigma, self.after, self.steps = sigma, after, 0
        self.offset = float(torch.rand(())) if at_init else 0.0

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        super().step()
        self.steps += 1
        if self.steps <= self.after:
            return None
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(torch.randn_like(p), alpha=self.sigma * group["lr"] * (1 + self.offset))
        return None


class KickOnBigGradSGD(torch.optim.SGD):
    """SGD plus a small random kick from torch's global generator to any parameter tensor whose
    gradient norm is above ``big`` or not finite: alone, the mode probe's healthy runs never draw;
    stepped together with its run of infinite gradient, they do."""

    def __init__(self, params, lr: float = 0.01, big: float = 10.0) -> None:  # noqa: ANN001
        super().__init__(params, lr=lr)
        self.big = big

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        super().step()
        for group in self.param_groups:
            for p in group["params"]:
                norm = p.grad.norm()
                if not torch.isfinite(norm) or norm > self.big:
                    p.add_(torch.randn_like(p), alpha=1e-3)
        return None


class DataSAM(torch.optim.Optimizer):
    """SAM as it is often written for ordinary models: the ascent step through ``p.data`` (which
    leaves torch's version counters alone), ``closure()`` there, then back and a plain step."""

    def __init__(self, params, lr: float = 0.01, rho: float = 0.05) -> None:  # noqa: ANN001
        super().__init__(params, {"lr": lr, "rho": rho})

    @torch.no_grad()
    def step(self, closure):  # noqa: ANN001, ANN201
        for group in self.param_groups:
            norm = torch.sqrt(sum((p.grad**2).sum() for p in group["params"]))
            ascents = []
            for p in group["params"]:
                ascent = p.grad * group["rho"] / (norm + 1e-12)
                p.data.add_(ascent)
                ascents.append(ascent)
            with torch.enable_grad():
                closure()
            for p, ascent in zip(group["params"], ascents):
                p.data.sub_(ascent)
                p.data.add_(p.grad, alpha=-group["lr"])
        return None


class WindowCouplingSGD(torch.optim.Optimizer):
    """SGD whose step, from step ``start`` to step ``stop`` only, is scaled by ``1 + tanh(10 mean|g|)``
    over its whole tensor: the runs it steps together are coupled for a while and then converge to
    the same minima as alone, so only their escape and target times betray the coupling."""

    def __init__(self, params, lr: float = 0.1, start: int = 70, stop: int = 200) -> None:  # noqa: ANN001
        super().__init__(params, {"lr": lr})
        self.window = (start, stop)
        self.steps = 0

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        self.steps += 1
        for group in self.param_groups:
            for p in group["params"]:
                scale = 1.0
                if self.window[0] <= self.steps < self.window[1]:
                    scale += float(torch.tanh(p.grad.abs().mean() * 10))
                p.add_(p.grad, alpha=-group["lr"] * scale)
        return None


class UnlistedAdam(torch.optim.Adam):
    """torch's Adam under another name: elementwise, but not in landbench's list of classes that are
    elementwise by construction, so its batches are spot-checked like any third-party optimizer's."""


class RequiredLrSGD(torch.optim.SGD):
    """Plain SGD whose ``lr`` has no default: a required argument, as some third-party classes have."""

    def __init__(self, params, lr: float) -> None:  # noqa: ANN001
        super().__init__(params, lr=lr)


class Sprinter(torch.optim.Optimizer):
    """Gradient descent below lr = 1; from lr = 1 up, it jumps onto the minimum of a quadratic (0) at
    the first step, reaching every target at once, then writes NaN from step 20 on: every run at
    such a rate reaches the target early, then diverges."""

    def __init__(self, params, lr: float = 0.01) -> None:  # noqa: ANN001
        super().__init__(params, {"lr": lr})
        self.count = 0

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        self.count += 1
        for group in self.param_groups:
            for p in group["params"]:
                if group["lr"] < 1.0:
                    p.add_(p.grad, alpha=-group["lr"])
                elif self.count == 1:
                    p.zero_()
                elif self.count >= 20:
                    p.fill_(float("nan"))


class NaNAtStepSGD(torch.optim.SGD):
    """Plain SGD that, at step ``at``, writes NaN into every run (row) whose first coordinate is
    positive: a run that diverges on purpose, after reaching whatever plain SGD reached by then. A
    divergence must never pay in a ranking. The rule is per row, so the optimizer is batch-safe.
    ``value="inf"`` writes inf instead (a loss that saturates, such as erf's, stays finite there)."""

    def __init__(self, params, lr: float = 0.01, at: int = 20, value: str = "nan") -> None:  # noqa: ANN001
        super().__init__(params, lr=lr)
        self.at = at
        self.value = float(value)
        self.count = 0

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        super().step()
        self.count += 1
        if self.count == self.at:
            for group in self.param_groups:
                for p in group["params"]:
                    self.act(p)
        return None

    def act(self, p: torch.Tensor) -> None:
        """What the optimizer does to parameter ``p`` at step ``at``."""
        rows = p.view(-1, p.shape[-1])
        rows[rows[:, 0] > 0] = self.value


class HalvingSGD(NaNAtStepSGD):
    """Plain SGD that, at step ``at``, turns its parameters into float16 (``p.data = p.data.half()``),
    after which torch would go on at half precision and cast every loss back silently."""

    def __init__(self, params, lr: float = 0.01, at: int = 100) -> None:  # noqa: ANN001
        super().__init__(params, lr=lr, at=at)

    def act(self, p: torch.Tensor) -> None:
        p.data = p.data.half()


class RaisingSGD(torch.optim.SGD):
    """Plain SGD that raises at step ``at`` (after the batch-safety probe, which takes fewer steps)."""

    def __init__(self, params, lr: float = 0.01, at: int = 100) -> None:  # noqa: ANN001
        super().__init__(params, lr=lr)
        self.at = at
        self.count = 0

    def step(self, closure=None):  # noqa: ANN001, ANN201
        self.count += 1
        if self.count == self.at:
            raise RuntimeError(f"RaisingSGD raises at step {self.at}")
        return super().step()


class ExitingSGD(torch.optim.SGD):
    """Plain SGD that calls ``sys.exit(code)`` at step ``at``, as a careless plug-in might."""

    def __init__(self, params, lr: float = 0.01, at: int = 100, code: int = 0) -> None:  # noqa: ANN001
        super().__init__(params, lr=lr)
        self.at, self.code, self.count = at, code, 0

    def step(self, closure=None):  # noqa: ANN001, ANN201
        import sys

        self.count += 1
        if self.count == self.at:
            sys.exit(self.code)
        return super().step()


#: The folder where KillerSGD leaves a file per kill (it kills nothing without it), and the pid it spares.
KILL_DIR = "LANDBENCH_TEST_KILL_DIR"
SPARED_PID = "LANDBENCH_TEST_SPARED_PID"


class KillerSGD(torch.optim.SGD):
    """Plain SGD whose process SIGKILLs itself at step ``at``, at most ``kills`` times in all (counted
    by files in ``$LANDBENCH_TEST_KILL_DIR``), never in the process ``$LANDBENCH_TEST_SPARED_PID``
    (the test's own): a worker that dies in the middle of a job."""

    def __init__(self, params, lr: float = 0.01, at: int = 100, kills: int = 1) -> None:  # noqa: ANN001
        super().__init__(params, lr=lr)
        self.at, self.kills, self.count = at, kills, 0

    def step(self, closure=None):  # noqa: ANN001, ANN201
        import os
        import signal

        self.count += 1
        folder = os.environ.get(KILL_DIR)
        if self.count == self.at and folder and str(os.getpid()) != os.environ.get(SPARED_PID):
            for n in range(self.kills):
                try:
                    os.close(os.open(os.path.join(folder, f"kill-{n}"), os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                os.kill(os.getpid(), signal.SIGKILL)
        return super().step()
