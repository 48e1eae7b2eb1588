"""Gradient-noise models: the law of the noise the engine adds to every gradient, ``noise * draw``.

A model is named by a short spec (a suite's ``noise_model``, ``--noise-model``, ``landbench.run``'s
``noise_model``); ``noise`` keeps its meaning as the noise's size:

=========================  ===========================================================================
``gaussian`` (default)     independent standard normal draws per coordinate and evaluation:
                           ``noise`` is the standard deviation (the records of every suite before
                           noise models were added, bit for bit).
``student_t(nu=...)``      Student-t with ``nu > 0`` degrees of freedom per coordinate, independent per
                           evaluation, drawn as ``z / sqrt(2 G / nu)`` with ``z`` standard normal and
                           ``G ~ Gamma(nu/2)``. For ``nu > 2`` it is scaled by ``sqrt((nu - 2)/nu)`` so
                           that ``noise`` stays the standard deviation; for ``nu <= 2`` the variance is
                           infinite and ``noise`` is the t law's scale (the standard t times ``noise``).
                           Tails: ``P(|X| > x) ~ x^-nu``.
``alpha_stable(alpha=.)``  symmetric alpha-stable per coordinate, ``0 < alpha <= 2``, characteristic
                           function ``exp(-|noise t|^alpha)``: ``noise`` is the scale parameter (not a
                           standard deviation, which is infinite for ``alpha < 2``; ``alpha = 2`` is a
                           normal law of variance ``2 noise^2``, ``alpha = 1`` a Cauchy law of scale
                           ``noise``). Chambers-Mallows-Stuck sampling (1976): ``U ~ U(-pi/2, pi/2)``,
                           ``W ~ Exp(1)``, ``X = sin(alpha U) / cos(U)^(1/alpha) *
                           (cos((1 - alpha) U) / W)^((1 - alpha)/alpha)`` (``tan U`` at ``alpha = 1``).
                           Tails: ``P(|X| > x) ~ x^-alpha``. For small alpha a draw can exceed the
                           largest float32 number; the run then diverges, as it would.
``frozen`` or              a fixed function of the point, per run: the noise at ``x`` is a standard
``frozen(cell=...)``       normal vector drawn from a counter-based hash keyed by the run (instance
                           seed, run seed) and by ``floor(x / cell)`` coordinate-wise (default cell
                           ``1e-3``): the same ``x`` (the same cell) always gets the same noise, another
                           cell independent noise. It is a piecewise-constant random field, as COCO's
                           noisy functions are fixed functions of x and a seed: an optimizer that stands
                           still sees the same error again and cannot average it away. The draw uses
                           exact integer and IEEE operations only (as :func:`landbench.rng.counter_normal`),
                           so it is the same on every device and for any batching.
``hessian(scale=...)``      noise aligned with the curvature (Zhu et al. 2019): ``(|H(x)| / scale)^(1/2) z``
                           with ``z`` standard normal, covariance ``noise^2 |H(x)| / scale`` (``|H|``:
                           the Hessian with its eigenvalues' absolute values), so that where
                           ``H = scale I`` it is gaussian noise of standard deviation ``noise``. Drawn
                           with ``min(32, dim)`` Hessian-vector products per gradient evaluation
                           (:func:`hessian_noise`): exact up to rounding for ``dim <= 32``, a Krylov
                           approximation above.
=========================  ===========================================================================

Every model is per run and reproducible: a run's noise depends on its instance seed, its run seed
(and for ``frozen``, its point) only, never on which runs share its batch; the draws are made on the
landscape's device (:class:`landbench.rng.RunNoise`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.spec import Param, bind_params, parse_spec

#: The models and their parameter (None: none), declared as landscape families declare theirs.
PARAMS: dict[str, Param | None] = {
    "gaussian": None,
    "student_t": Param("nu", float, doc="degrees of freedom", low=0.0, low_open=True),
    "alpha_stable": Param("alpha", float, doc="stability index", low=0.0, low_open=True, high=2.0),
    "frozen": Param("cell", float, 1e-3, "side of the cells of constant noise", low=0.0, low_open=True),
    "hessian": Param("scale", float, doc="the curvature at which the noise is isotropic", low=0.0, low_open=True),
}
#: The models, with their parameter's name (None: none).
MODELS: dict[str, str | None] = {name: None if p is None else p.name for name, p in PARAMS.items()}
#: The default cell of ``frozen``.
FROZEN_CELL = 1e-3
DEFAULT = "gaussian"
VALID = (
    "gaussian, student_t(nu=...) with nu > 0, alpha_stable(alpha=...) with 0 < alpha <= 2, "
    "frozen or frozen(cell=...) with cell > 0, hessian(scale=...) with scale > 0"
)


@dataclass(frozen=True)
class NoiseModel:
    """A parsed noise model: its name and parameter (None for gaussian)."""

    name: str
    value: float | None = None

    def __post_init__(self) -> None:
        if self.name not in PARAMS or (PARAMS[self.name] is None) != (self.value is None):
            raise _bad(f"{self.name}({self.value})" if self.value is not None else self.name)
        if self.value is not None:
            PARAMS[self.name].coerce(self.value, self.name)  # type: ignore[union-attr]

    @property
    def same_on_every_device(self) -> bool:
        """Whether a run draws this noise identically on every device: ``frozen``'s is a hash of the
        point and the run; the others come from the device's generator (CPU and CUDA generators are
        different algorithms: :class:`landbench.rng.RunNoise`)."""
        return self.name == "frozen"

    @property
    def canonical(self) -> str:
        """The model's spec as records, keys and suites hold it: ``"student_t(nu=3.0)"``."""
        parameter = MODELS[self.name]
        if parameter is None:
            return self.name
        return f"{self.name}({parameter}={float(self.value)!r})"  # type: ignore[arg-type]

    @property
    def unit_scale(self) -> float:
        """The factor applied to a standard draw so that ``noise`` means what the table above says."""
        if self.name == "student_t" and self.value is not None and self.value > 2:
            return math.sqrt((self.value - 2) / self.value)
        return 1.0

    def __str__(self) -> str:
        return self.canonical


def _bad(value: object, why: str = "") -> SpecError:
    text = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return SpecError(f"noise_model must be one of {VALID}; got {text}{f' ({why})' if why else ''}")


def parse_noise_model(value: object) -> NoiseModel:
    """A noise model from its spec, in landbench's spec grammar (:func:`landbench.spec.parse_spec`:
    ``"student_t(nu=3)"``, ``"frozen"``; every argument as key=value) or a :class:`NoiseModel`;
    anything else raises :class:`SpecError` naming the valid models."""
    if isinstance(value, NoiseModel):
        return value
    if not isinstance(value, str):
        raise _bad(value)
    try:
        spec = parse_spec(value.strip(), what="noise model")
    except SpecError as exc:
        raise _bad(value, str(exc)) from None
    if spec.name not in PARAMS:
        raise _bad(value)
    param = PARAMS[spec.name]
    try:
        bound = bind_params(spec.name, () if param is None else (param,), spec.kwargs)
    except SpecError as exc:
        raise _bad(value, str(exc)) from None
    number = None if param is None else float(bound[param.name])
    if number is not None and not math.isfinite(number):
        raise _bad(value, f"{param.name} must be finite")  # type: ignore[union-attr]
    return NoiseModel(spec.name, number)


def effective_noise_model(noise: float, model: str) -> str:
    """The law a scenario's noise follows: ``model``, except without noise (``noise == 0``), where no
    law is drawn and every model is the same scenario as ``gaussian`` (one set of runs, one key)."""
    return DEFAULT if noise == 0 else model


def check_noise_model(value: object) -> str:
    """The canonical spec of a noise model (see :func:`parse_noise_model`)."""
    return parse_noise_model(value).canonical


#: Lanczos steps of the hessian model's Krylov square root (fewer where the dimension is smaller).
HESSIAN_STEPS = 32
#: A run's Lanczos recurrence stops where beta_j falls below this many ulps of max |H q_i| (as in
#: :func:`landbench.metrics.curvature.sharpness`): the Krylov space is invariant, the result exact.
_BREAKDOWN_ULPS = 16.0


def hessian_noise(landscape: Any, x: torch.Tensor, z: torch.Tensor, scale: float) -> torch.Tensor:
    r"""``(|H(x_b)| / scale)^{1/2} z_b`` for each row b: noise of covariance ``|H| / scale`` from
    standard normal ``z`` (times ``noise`` in the engine: covariance ``noise^2 |H(x)| / scale``, so
    that ``H = scale I`` gives gaussian noise of standard deviation ``noise``). ``|H|`` is the
    Hessian with its eigenvalues replaced by their absolute values (the Hessian itself at a minimum,
    where Zhu et al. 2019 compare the anisotropic noise of SGD with isotropic noise; a saddle's
    unstable directions get noise too).

    Computed with Hessian-vector products only, by the Krylov (Lanczos) approximation of a matrix
    function (Chow and Saad 2014): ``k = min(32, dim)`` Lanczos steps from ``q_1 = z / |z|`` give
    ``V`` (k x dim, reorthogonalised once per step) and the tridiagonal ``T``, and
    ``f(H) z ~ |z| V^T f(T) e_1`` with ``f(t) = sqrt(|t| / scale)``, exact when the Krylov space
    is invariant (at most k distinct eigenvalues, or ``dim <= 32``). The recurrence runs in float64;
    a run whose recurrence breaks down (an invariant space) keeps zero vectors from there on, so that
    every run takes the same k products and no run waits on the host. On a constrained family the
    vectors are kept in the tangent space (``P H P`` with the landscape's tangent projection).
    Cost per gradient evaluation: k Hessian-vector products and ``O(k^2 dim)`` per run; memory
    ``B k dim`` float64.

    References: E. Chow and Y. Saad, "Preconditioned Krylov subspace methods for sampling
    multivariate Gaussian distributions", SIAM J. Sci. Comput. 36 (2014); Z. Zhu, J. Wu, B. Yu,
    L. Wu and J. Ma, "The anisotropic noise in stochastic gradient descent", ICML 2019.
    """
    work = {"dtype": torch.float64, "device": x.device}
    batch, dim = z.shape
    k = min(HESSIAN_STEPS, dim)
    start = landscape.tangent(x, z) if landscape.constrained else z
    start = start.to(**work)
    norm = torch.linalg.vector_norm(start, dim=1, keepdim=True)
    q = start / norm.clamp_min(torch.finfo(torch.float64).tiny)
    basis = torch.zeros((batch, k, dim), **work)
    alphas = torch.zeros((batch, k), **work)
    betas = torch.zeros((batch, k), **work)  # betas[:, j] couples q_j and q_{j+1}
    size = torch.zeros(batch, **work)
    tolerance = _BREAKDOWN_ULPS * torch.finfo(x.dtype).eps
    for j in range(k):
        basis[:, j] = q
        product = landscape.hvp(x, q.to(x.dtype)).to(torch.float64)
        if landscape.constrained:
            product = landscape.tangent(x, product.to(x.dtype)).to(torch.float64)
        alpha = torch.linalg.vecdot(q, product)
        alphas[:, j] = alpha
        if j == k - 1:
            break
        w = product - alpha[:, None] * q
        if j > 0:
            w -= betas[:, j - 1, None] * basis[:, j - 1]
        w -= torch.einsum("bk,bkd->bd", torch.einsum("bkd,bd->bk", basis[:, : j + 1], w), basis[:, : j + 1])
        beta = torch.linalg.vector_norm(w, dim=1)
        previous = betas[:, j - 1] if j > 0 else torch.zeros_like(beta)
        size = torch.maximum(size, (previous.square() + alpha.square() + beta.square()).sqrt())
        alive = beta > tolerance * size
        betas[:, j] = torch.where(alive, beta, torch.zeros_like(beta))
        q = torch.where(alive[:, None], w / beta.clamp_min(torch.finfo(torch.float64).tiny)[:, None], 0.0)
    tridiagonal = torch.diag_embed(alphas) + torch.diag_embed(betas[:, :-1], 1) + torch.diag_embed(betas[:, :-1], -1)
    values, vectors = torch.linalg.eigh(tridiagonal)
    weights = vectors @ (values.abs().div(scale).sqrt().unsqueeze(-1) * vectors[:, 0, :].unsqueeze(-1))
    return torch.einsum("bk,bkd->bd", weights.squeeze(-1), basis).mul_(norm)
