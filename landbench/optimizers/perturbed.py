"""Perturbed gradient descent (Jin et al. 2017): a uniform kick in a small ball when the gradient is small.

Plain gradient descent needs no class of its own: it is ``torch.optim.SGD`` without momentum
(``sgd(lr=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.optimizers.sam import run_rows
from landbench.rng import block_steps, generators


class BallSampler:
    r"""Points uniform in the unit ball of dimension ``dim``, one row per run, one step at a time.

    A point is ``z / |z| * U^(1/dim)`` with ``z ~ N(0, I_dim)`` and ``U ~ U[0, 1)`` (the direction
    is isotropic, and ``P(|xi| <= s) = s^dim`` is the ball's volume fraction; Muller 1959). Each
    generator fills its rows with :func:`landbench.rng.block_steps` steps at a time (normals, then
    uniforms), so that a run with its own generator draws the same stream whatever its batch, and a
    step costs ``runs / block`` generator calls. Steps are consumed in order, every step.

    Reference: M. E. Muller, "A note on a method for generating points uniformly on n-dimensional
    spheres", Comm. ACM 2 (1959).
    """

    def __init__(
        self, generators: Sequence[torch.Generator], runs: int, dim: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        if runs % len(generators):
            raise ValueError(f"{len(generators)} generators cannot share {runs} runs evenly")
        self.generators = list(generators)
        self.block = block_steps(dim)
        self.dim = dim
        self.points = torch.empty((runs, self.block, dim), dtype=dtype, device=device)
        self.uniform = torch.empty((runs, self.block), dtype=dtype, device=device)
        self.position = 0

    def _refill(self) -> None:
        count = len(self.generators)
        for generator, normal, uniform in zip(self.generators, self.points.chunk(count), self.uniform.chunk(count)):
            torch.randn(normal.shape, generator=generator, out=normal)
            torch.rand(uniform.shape, generator=generator, out=uniform)
        norm = torch.linalg.vector_norm(self.points, dim=2, keepdim=True)
        radius = self.uniform.pow(1.0 / self.dim).unsqueeze(2)
        self.points.mul_(radius / norm.clamp_min_(torch.finfo(norm.dtype).tiny))

    def sample(self) -> torch.Tensor:
        """The next step's ``(runs, dim)`` points (a view into a reused buffer)."""
        offset = self.position % self.block
        if offset == 0:
            self._refill()
        self.position += 1
        return self.points[:, offset]


def _check_float(name: str, value: Any, meaning: str, *, positive: bool = False, finite: bool = True) -> float:
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not (number and (value > 0 if positive else value >= 0) and (value < math.inf or not finite)):
        kind = ("a positive" if positive else "a non-negative") + (" finite" if finite else "")
        raise SpecError(f"pgd: {name} must be {kind} number ({meaning}), got {value!r}")
    return float(value)


def _check_count(name: str, value: Any, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"pgd: {name} must be a non-negative integer ({meaning}), got {value!r}")
    return value


class PerturbedGD(torch.optim.Optimizer):
    r"""Perturbed gradient descent, per run, with no host synchronisation and one gradient per step.

    Jin et al.'s Algorithm 2 (PGD), without its stopping test: at iteration t, if
    ``|grad f(x_t)| <= g_thres`` and ``t - t_noise > t_thres`` then ``t_noise <- t`` and
    ``x_t <- x_t + xi_t``, ``xi_t`` uniform in the ball of radius ``r``; then
    ``x_{t+1} = x_t - lr grad f(x_t)``, at the perturbed point. Taken literally this needs a second
    gradient on the iterations that perturb. Here, with ``g_t`` the gradient at the current
    iterate (``param.grad``, the engine's only evaluation), one step is::

        kick = (|g_t| <= g_thres) & (t - t_noise > t_thres)      # per run
        x <- x - lr g_t + kick * radius * xi_t                    # xi_t uniform in the unit ball
        t_noise <- t where kick

    i.e. the perturbation follows the gradient step instead of preceding it, so the next step's
    gradient is taken at the perturbed point: Jin et al.'s iteration shifted by one step, with the
    test on ``|g|`` made on the gradient at the previous iterate. (When the test holds, ``x_t``
    and ``x_t - lr g_t`` are ``lr |g_t| <= lr g_thres`` apart, so for an l-smooth f the two
    gradients differ by at most ``lr l g_thres``.) ``t_noise`` starts at ``-t_thres - 1``, so a run
    may perturb at step 0; after a perturbation at step s the next one can come at ``s + t_thres + 1``
    at the earliest. Fixed cost: one gradient evaluation per step, one ball sample per run per step
    (drawn even when not used, so a run's random stream does not depend on its trajectory).

    Runs: a ``(B, d)`` parameter is B runs (``|g|`` and the ball are per row, in dimension d); any
    other shape is one run whose ball has the dimension of all its elements. Per-run state, on the
    parameter's device: ``state[p]["t_noise"]`` (int64, the step of the last perturbation) and
    ``state[p]["perturbations"]`` (int64, how many so far); ``state[p]["step"]`` counts steps.

    Randomness: :meth:`bind_runs` gives each run a generator seeded with
    ``landbench.rng.derive_seed(instance, seed, "perturbation")``, so a run's perturbations do not
    depend on its batch. Without it (plain use on a model) one generator per device, seeded with
    ``seed``, serves every parameter, in the order of ``param_groups``. (CPU and CUDA generators are
    different algorithms: the same seed gives different, equally valid, draws.)

    Defaults, for landbench's landscapes (smoothness l ~ 1 and saddle curvature -1 at the default
    parameters): Jin et al. set ``lr = c/l``, ``g_thres = sqrt(c) eps / chi^2``, ``radius = g_thres / l``
    and ``t_thres = chi l / (c^2 sqrt(rho eps))``, about the time a perturbation needs to grow by
    ``e^chi`` along the negative curvature ``-sqrt(rho eps)``. Here ``lr = 0.01``, ``radius = g_thres
    = 1e-3`` (``radius = g_thres / l`` with l = 1), and ``t_thres = 700``: the
    ``ln(1/radius) / ln(1 + lr) = 694`` steps a kick of size ``radius`` needs to grow to 1 along
    curvature -1, rounded up.

    Reference: C. Jin, R. Ge, P. Netrapalli, S. M. Kakade, M. I. Jordan, "How to escape saddle points
    efficiently", ICML 2017, Algorithm 2.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        radius: float = 1e-3,
        g_thres: float = 1e-3,
        t_thres: int = 700,
        seed: int = 0,
    ) -> None:
        defaults = {
            "lr": _check_float("lr", lr, "the step size", positive=True),
            "radius": _check_float("radius", radius, "the radius of the perturbation ball"),
            "g_thres": _check_float(
                "g_thres", g_thres, "the gradient norm at or below which a run is perturbed", finite=False
            ),
            "t_thres": _check_count("t_thres", t_thres, "the number of steps without perturbation after one"),
        }
        self.seed = _check_count("seed", seed, "the seed of the perturbations when runs are not bound")
        super().__init__(params, defaults)
        self._samplers: dict[torch.Tensor, BallSampler] = {}
        self._generators: dict[torch.device, torch.Generator] = {}

    def bind_runs(self, seeds: Sequence[int], instance: int) -> None:
        """Give every run its own random stream, before the first step: the rows of the parameter
        tensors, in the order of ``param_groups``, are the runs of ``seeds``, and run ``i`` draws from
        a generator seeded with ``derive_seed(instance, seeds[i], "perturbation")``."""
        params = [p for group in self.param_groups for p in group["params"]]
        shapes = [run_rows(p).shape for p in params]
        if len(seeds) != sum(runs for runs, _ in shapes):
            raise ValueError(
                f"bind_runs got {len(seeds)} seeds for parameters of {sum(r for r, _ in shapes)} runs in all"
            )
        if any(self.state.get(p) for p in params):
            raise ValueError("bind_runs must come before the first step")
        first = 0
        for param, (runs, dim) in zip(params, shapes):
            streams = generators(
                (instance,), [int(s) for s in seeds[first : first + runs]], ("perturbation",), param.device
            )
            self._samplers[param] = BallSampler(streams, runs, dim, param.dtype, param.device)
            first += runs

    def _sampler(self, param: torch.Tensor, runs: int, dim: int) -> BallSampler:
        if param not in self._samplers:
            if param.device not in self._generators:
                self._generators[param.device] = torch.Generator(device=param.device).manual_seed(self.seed)
            self._samplers[param] = BallSampler([self._generators[param.device]], runs, dim, param.dtype, param.device)
        return self._samplers[param]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One PGD step on every parameter with a gradient; ``closure`` (optional) is evaluated first."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)
        return loss

    def _update(self, param: torch.Tensor, group: dict[str, Any]) -> None:
        grad = run_rows(param.grad)
        runs, dim = grad.shape
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["t_noise"] = torch.full((runs,), -group["t_thres"] - 1, dtype=torch.int64, device=param.device)
            state["perturbations"] = torch.zeros(runs, dtype=torch.int64, device=param.device)
        step = state["step"]
        ball = self._sampler(param, runs, dim).sample()
        small = torch.linalg.vector_norm(grad, dim=1) <= group["g_thres"]
        kick = small & (step - state["t_noise"] > group["t_thres"])
        param.add_(param.grad, alpha=-group["lr"])
        param.add_((ball * (kick.to(ball.dtype) * group["radius"]).unsqueeze(1)).reshape(param.shape))
        state["t_noise"].masked_fill_(kick, step)
        state["perturbations"] += kick
        state["step"] = step + 1
