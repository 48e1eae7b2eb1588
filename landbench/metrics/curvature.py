"""Curvature metrics of a landscape at a batch of points: sharpness, Hessian trace, basin width.

Every metric is computed per row (run) of ``x`` with shape ``(B, dim)`` and returned as a float64
CPU tensor of shape ``(B,)``. Random probes are per run: run seed ``s`` draws from
``cpu_generator(landscape.seed, s, "<metric name>")`` in float64 on the CPU, and the draw is then
cast to the landscape's dtype and moved to its device. A run's value therefore does not depend on
which other runs share its batch (nor on the device, up to floating point). Rows whose ``x`` is not
finite give NaN. All work is batched over runs; the host waits only for the final result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from landbench.errors import LandbenchError
from landbench.landscapes.base import Landscape
from landbench.rng import cpu_generator

DEFAULT_LANCZOS_ITERATIONS = 32
DEFAULT_HUTCHINSON_PROBES = 32
DEFAULT_TAU = 0.1
DEFAULT_BASIN_PROBES = 8

# Lanczos keeps its vectors (full reorthogonalisation) while B * k * d stays below this.
_REORTH_MAX_ELEMENTS = 2**24
# basin_width draws orthonormal directions (QR) up to this dimension, unit Gaussian ones above it.
_ORTHONORMAL_MAX_DIM = 4096
# basin_width evaluates probe directions in chunks of about this many elements.
_EVAL_MAX_ELEMENTS = 2**22
# The scan radii of basin_width are r0 * 2**i for i in this range; then this many bisections.
_SCAN_EXPONENTS = range(-12, 13)
_BISECTIONS = 30


def sharpness(
    landscape: Landscape,
    x: torch.Tensor,
    seeds: Sequence[int],
    iterations: int = DEFAULT_LANCZOS_ITERATIONS,
) -> torch.Tensor:
    r"""The largest (algebraic) Hessian eigenvalue ``lambda_max(H(x_b))`` of each row, by Lanczos.

    One Krylov space per run, from a Gaussian start vector, with ``k = min(iterations, dim)`` steps:
    ``w = H q_j - alpha_j q_j - beta_{j-1} q_{j-1}``, ``alpha_j = q_j . H q_j``,
    ``beta_j = |w|``, ``q_{j+1} = w / beta_j``; the result is the top eigenvalue (Ritz value) of
    the k x k tridiagonal ``T = tridiag(beta, alpha, beta)``, solved in float64. The recurrence
    runs in float64 whatever the landscape's dtype (only ``q`` passed to ``hvp`` is cast), so that
    rounding stays far below the ``hvp`` error even at ``dim ~ 1e6``. The Lanczos vectors are kept
    and ``w`` is reorthogonalised against them (twice) while ``B * k * dim`` is at most 2**24;
    above that the plain three-term recurrence runs in O(B * dim) memory (its extreme Ritz value
    still converges; Paige 1980). A run breaks down when ``beta_j <= sqrt(eps) * max_i |H q_i|``,
    eps of the landscape's dtype (an invariant subspace: ``dim < k``, ``H = c I``, ...);
    its remaining entries of T are then decoupled (``beta = 0``, diagonal at the Gershgorin lower
    bound of its valid block), so they add no eigenvalue above the true maximum.

    References: C. Lanczos, "An iteration method for the solution of the eigenvalue problem of
    linear differential and integral operators", J. Res. Nat. Bur. Standards 45 (1950);
    G. H. Golub and C. F. Van Loan, "Matrix Computations", 4th ed., ch. 10 (2013);
    C. C. Paige, "Accuracy and effectiveness of the Lanczos algorithm for the symmetric
    eigenproblem", Linear Algebra Appl. 34 (1980).
    """
    _check_count("iterations", iterations)
    x, finite = _prepare(landscape, x, seeds)
    start = _fill_rows(landscape, _generators(landscape, seeds, "sharpness"), _gaussian)
    if landscape.constrained:
        start = landscape.tangent(x, start)
    alpha, beta, valid = _lanczos(landscape, x, start, min(iterations, landscape.dim))
    return _finish(_top_ritz_value(alpha, beta, valid), finite)


def hessian_trace(
    landscape: Landscape,
    x: torch.Tensor,
    seeds: Sequence[int],
    probes: int = DEFAULT_HUTCHINSON_PROBES,
) -> torch.Tensor:
    r"""Hutchinson's estimate of ``tr H(x_b)``: ``(1/P) sum_p z_p . H z_p``, z_p with entries +-1.

    Unbiased, with variance ``2 sum_{i != j} H_ij^2 / P``: exact when H is diagonal. One probe
    ``(B, dim)`` is drawn and multiplied at a time.

    Reference: M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Comm. Statist. Simul. Comput. 19 (1990) 433-450.
    """
    _check_count("probes", probes)
    x, finite = _prepare(landscape, x, seeds)
    generators = _generators(landscape, seeds, "hessian_trace")
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for _ in range(probes):
        z = _fill_rows(landscape, generators, _rademacher)
        if landscape.constrained:
            z = landscape.tangent(x, z)
        total += (z * landscape.hvp(x, z)).sum(1, dtype=torch.float64)
    return _finish(total / probes, finite)


def basin_width(
    landscape: Landscape,
    x: torch.Tensor,
    seeds: Sequence[int],
    tau: float = DEFAULT_TAU,
    probes: int = DEFAULT_BASIN_PROBES,
) -> torch.Tensor:
    r"""The smallest radius r at which the mean loss rise along random unit directions reaches tau.

    ``g(r) = (1/m) sum_j [(f(x + r v_j) + f(x - r v_j)) / 2 - f(x)]``; the antithetic pair cancels
    the linear term where x is not exactly stationary. On a quadratic with Hessian H,
    ``g(r) = r^2 (1/m) sum_j v_j^T H v_j / 2`` with expectation ``r^2 tr(H) / (2 dim)``, so the width
    is ``sqrt(2 tau dim / tr H)``. This is our definition, a mean-rise relative of the
    epsilon-sharpness of Keskar et al. (which takes the worst rise in a box).

    Directions: ``m = min(probes, dim)`` per run; for ``dim <= 4096`` an orthonormal set (QR of a
    Gaussian ``dim x m`` matrix), so with ``probes >= dim`` the sum over a full basis is exactly
    ``tr H`` and the width on a quadratic is exact; above, independent Gaussian directions
    normalised to unit length (nearly orthogonal there).

    Search: ``r0 = sqrt(2 tau / c)`` with ``c = (1/m) sum_j v_j^T H v_j`` from ``hvp`` (``r0 = 1``
    where ``c <= 0`` or is not finite); scan ``r0 * 2**i`` for ``i = -12..12``, take per run the
    FIRST grid radius with ``g >= tau`` (g need not be monotone, e.g. Rastrigin), and bisect 30 times
    in ``log r`` between it and the grid radius before it. Returns ``r0 * 2**-12`` where g already
    reaches tau there, and ``+inf`` where g stays below tau on the whole scan ("wider than the
    scan"). Crossings narrower than a factor 2 in r can be missed by the scan. Memory: the
    directions (``B * m * dim`` elements) and one chunk of evaluation points (about 2**22
    elements, but at least one antithetic pair per run).

    Reference: N. S. Keskar et al., "On large-batch training for deep learning: generalization gap
    and sharp minima", ICLR 2017.
    """
    _check_count("probes", probes)
    if not (math.isfinite(tau) and tau > 0):
        raise LandbenchError(f"basin_width: tau must be a positive finite number, got {tau!r}")
    x, finite = _prepare(landscape, x, seeds)
    directions = _unit_directions(landscape, seeds, min(probes, landscape.dim))
    if landscape.constrained:
        directions = _tangent_directions(landscape, x, directions)
    rise = _RiseAlongDirections(landscape, x, directions)
    r0 = _initial_radius(landscape, x, directions, tau)
    return _finish(_first_crossing(rise, r0, tau), finite)


# --- shared plumbing -------------------------------------------------------------------------


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LandbenchError(f"{name} must be a positive integer, got {value!r}")


def _prepare(landscape: Landscape, x: torch.Tensor, seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` on the landscape's device and dtype with non-finite rows zeroed, and the finite-row mask."""
    if x.ndim != 2 or x.shape[1] != landscape.dim:
        raise LandbenchError(f"x must have shape (B, {landscape.dim}), got {tuple(x.shape)}")
    if len(seeds) != x.shape[0]:
        raise LandbenchError(f"need one run seed per row of x: got {len(seeds)} seeds for {x.shape[0]} rows")
    x = x.detach().to(device=landscape.device, dtype=landscape.dtype)
    finite = torch.isfinite(x).all(1)
    return torch.where(finite[:, None], x, torch.zeros_like(x)), finite


def _finish(values: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """``(B,)`` float64 on the CPU, NaN where the row of x was not finite."""
    values = values.to(device="cpu", dtype=torch.float64)
    return torch.where(finite.cpu(), values, torch.full_like(values, math.nan))


def _generators(landscape: Landscape, seeds: Sequence[int], metric: str) -> list[torch.Generator]:
    return [cpu_generator(landscape.seed, int(s), metric) for s in seeds]


def _gaussian(generator: torch.Generator, dim: int) -> torch.Tensor:
    return torch.randn(dim, generator=generator, dtype=torch.float64)


def _rademacher(generator: torch.Generator, dim: int) -> torch.Tensor:
    return torch.randint(0, 2, (dim,), generator=generator, dtype=torch.float64).mul_(2).sub_(1)


def _fill_rows(
    landscape: Landscape,
    generators: Sequence[torch.Generator],
    draw: Callable[[torch.Generator, int], torch.Tensor],
) -> torch.Tensor:
    """One float64 CPU draw per run, cast and moved into a ``(B, dim)`` tensor on the device."""
    out = torch.empty((len(generators), landscape.dim), dtype=landscape.dtype, device=landscape.device)
    for row, generator in zip(out, generators):
        row.copy_(draw(generator, landscape.dim))
    return out


# --- Lanczos ------------------------------------------------------------------------------------


def _lanczos(
    landscape: Landscape, x: torch.Tensor, start: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k batched Lanczos steps in float64: alpha ``(B, k)``, beta ``(B, k-1)``, valid ``(B, k)`` (CPU).

    ``valid[b, j]`` is False once run b has broken down before step j; its beta there is 0.
    """
    batch, dim = x.shape
    work = {"dtype": torch.float64, "device": x.device}
    basis = torch.zeros((batch, k, dim), **work) if batch * k * dim <= _REORTH_MAX_ELEMENTS else None
    tolerance = math.sqrt(torch.finfo(x.dtype).eps)
    q = start.to(**work)
    q /= q.norm(dim=1, keepdim=True)
    q_prev = torch.zeros_like(q)
    beta = torch.zeros(batch, **work)
    scale = torch.zeros(batch, **work)
    alive = torch.ones(batch, dtype=torch.bool, device=x.device)
    alphas, betas, valid = [], [], []
    for j in range(k):
        w = landscape.hvp(x, q.to(x.dtype)).to(torch.float64)
        scale = torch.maximum(scale, w.norm(dim=1))
        alpha = (q * w).sum(1)
        alphas.append(alpha)
        valid.append(alive)
        if j == k - 1:
            break
        w = w - alpha[:, None] * q - beta[:, None] * q_prev
        if basis is not None:
            basis[:, j] = q
            w = _reorthogonalise(w, basis[:, : j + 1])
        beta = w.norm(dim=1)
        alive = alive & (beta > tolerance * scale)
        beta = torch.where(alive, beta, torch.zeros_like(beta))
        divisor = torch.where(alive, beta, torch.ones_like(beta))
        q_prev, q = q, torch.where(alive[:, None], w / divisor[:, None], torch.zeros_like(w))
        betas.append(beta)

    beta_all = torch.stack(betas, 1).cpu() if betas else torch.zeros((batch, 0), dtype=torch.float64)
    return torch.stack(alphas, 1).cpu(), beta_all, torch.stack(valid, 1).cpu()


def _reorthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove from each ``w_b`` its components along the rows of ``basis_b``; twice is enough."""
    for _ in range(2):
        w = w - torch.einsum("bjd,bj->bd", basis, torch.einsum("bjd,bd->bj", basis, w))
    return w


def _top_ritz_value(alpha: torch.Tensor, beta: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Largest eigenvalue of each tridiagonal ``T_b``, entries past a breakdown decoupled.

    The diagonal after a breakdown is set to the Gershgorin lower bound of the valid block, so it
    adds eigenvalues no larger than the block's own. Rows with a non-finite entry give NaN.
    """
    zero = alpha.new_zeros((alpha.shape[0], 1))
    radius = torch.cat([zero, beta.abs()], 1) + torch.cat([beta.abs(), zero], 1)
    lower = torch.where(valid, alpha - radius, torch.full_like(alpha, math.inf)).amin(1, keepdim=True)
    diagonal = torch.where(valid, alpha, lower)
    tridiagonal = torch.diag_embed(diagonal) + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)
    bad = ~torch.isfinite(tridiagonal).flatten(1).all(1)
    tridiagonal[bad] = 0.0
    top = torch.linalg.eigvalsh(tridiagonal)[:, -1]
    return torch.where(bad, torch.full_like(top, math.nan), top)


# --- basin width ----------------------------------------------------------------------------


def _unit_directions(landscape: Landscape, seeds: Sequence[int], m: int) -> torch.Tensor:
    """``(B, m, dim)`` unit directions per run: orthonormal for small dim, else normalised Gaussian."""
    dim = landscape.dim
    out = torch.empty((len(seeds), m, dim), dtype=landscape.dtype, device=landscape.device)
    for block, generator in zip(out, _generators(landscape, seeds, "basin_width")):
        gaussian = torch.randn(dim, m, generator=generator, dtype=torch.float64)
        if dim <= _ORTHONORMAL_MAX_DIM:
            frame = torch.linalg.qr(gaussian).Q
        else:
            frame = gaussian / gaussian.norm(dim=0, keepdim=True)
        block.copy_(frame.T)
    return out


def _tangent_directions(landscape: Landscape, x: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Directions projected onto the tangent space at each run's x, then made unit (orthonormal
    again where they were orthonormal), for constrained landscapes."""
    batch, m, dim = directions.shape
    rows = x[:, None].expand(batch, m, dim).reshape(-1, dim)
    projected = landscape.tangent(rows, directions.reshape(-1, dim)).reshape(batch, m, dim)
    if dim <= _ORTHONORMAL_MAX_DIM:
        return torch.linalg.qr(projected.transpose(1, 2).to(torch.float64)).Q.transpose(1, 2).to(directions.dtype)
    return projected / projected.norm(dim=2, keepdim=True)


def _initial_radius(landscape: Landscape, x: torch.Tensor, directions: torch.Tensor, tau: float) -> torch.Tensor:
    """``sqrt(2 tau / c)``, ``c`` the mean ``v_j^T H v_j``; 1.0 where ``c <= 0`` or is not finite."""
    curvature = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for j in range(directions.shape[1]):
        v = directions[:, j]
        curvature += (v * landscape.hvp(x, v)).sum(1, dtype=torch.float64)
    curvature /= directions.shape[1]
    usable = torch.isfinite(curvature) & (curvature > 0)
    ones = torch.ones_like(curvature)
    return torch.where(usable, (2 * tau / torch.where(usable, curvature, ones)).sqrt(), ones)


class _RiseAlongDirections:
    """``g(r)``: the mean antithetic loss rise at per-run radii ``r`` (B,), as float64 (B,)."""

    def __init__(self, landscape: Landscape, x: torch.Tensor, directions: torch.Tensor) -> None:
        self.landscape = landscape
        self.x = x
        self.directions = directions
        self.f0 = landscape.loss(x)
        batch, m, dim = directions.shape
        self.chunk = max(1, min(m, _EVAL_MAX_ELEMENTS // (2 * batch * dim)))

    def __call__(self, radius: torch.Tensor) -> torch.Tensor:
        batch, m, dim = self.directions.shape
        r = radius.to(self.x.dtype)[:, None, None]
        total = torch.zeros(batch, dtype=torch.float64, device=self.x.device)
        for first in range(0, m, self.chunk):
            step = r * self.directions[:, first : first + self.chunk]
            points = torch.cat([self.x[:, None] + step, self.x[:, None] - step], 1).reshape(-1, dim)
            if self.landscape.constrained:
                points = self.landscape.retract(points)
            values = self.landscape.loss(points).reshape(batch, -1)
            total += (values - self.f0[:, None]).sum(1, dtype=torch.float64)
        return total / (2 * m)


def _first_crossing(rise: _RiseAlongDirections, r0: torch.Tensor, tau: float) -> torch.Tensor:
    """Per run, the first scan radius with ``g >= tau``, refined by bisection in ``log r``."""
    exponents = torch.tensor(list(_SCAN_EXPONENTS), dtype=torch.float64, device=r0.device)
    log_grid = r0.log()[:, None] + exponents * math.log(2.0)
    crossed = torch.stack([rise(log_grid[:, i].exp()) >= tau for i in range(len(exponents))], 1)
    first = crossed.to(torch.uint8).argmax(1, keepdim=True)
    log_hi = log_grid.gather(1, first).squeeze(1)
    log_lo = log_grid.gather(1, (first - 1).clamp(min=0)).squeeze(1)
    log_lo = torch.where(first.squeeze(1) == 0, log_hi, log_lo)
    for _ in range(_BISECTIONS):
        log_mid = 0.5 * (log_lo + log_hi)
        up = rise(log_mid.exp()) >= tau
        log_hi = torch.where(up, log_mid, log_hi)
        log_lo = torch.where(up, log_lo, log_mid)
    width = (0.5 * (log_lo + log_hi)).exp()
    return torch.where(crossed.any(1), width, torch.full_like(width, math.inf))
