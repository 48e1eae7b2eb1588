"""Curvature metrics of a landscape at a batch of points: sharpness, Hessian trace, basin width.

Every metric is computed per row (run) of ``x`` with shape ``(B, dim)`` and returned as a float64
CPU tensor of shape ``(B,)``. Random probes are per run: run seed ``s`` draws from
``cpu_generator(landscape.seed, s, "<metric name>")`` on the CPU (all runs' generators made in one
pass: ``generators``; Gaussians in float64, Rademacher signs as random bytes), and the draw is
then cast to the landscape's dtype and moved to its device.
A run's value therefore does not depend on which other runs share its batch (nor on the device, up
to floating point). Rows whose ``x`` is not finite give NaN. All work is batched over runs (and
over probes, within a memory budget); the host waits only for the final result and, in the basin
width's search, for one small ``(B,)`` comparison per loss evaluation.
:func:`curvature_metrics` computes the three as the engine records them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from landbench.errors import LandbenchError
from landbench.landscapes.base import Landscape
from landbench.rng import generators

DEFAULT_LANCZOS_ITERATIONS = 32
DEFAULT_HUTCHINSON_PROBES = 32
DEFAULT_TAU = 0.1
DEFAULT_BASIN_PROBES = 8

#: The largest float64 twin (bytes of its tensors) that :func:`curvature_metrics` builds.
TWIN_MAX_BYTES = 1 << 30

# Lanczos keeps its vectors (full reorthogonalisation) where dim is at most this and B * k * dim
# at most that; elsewhere it runs the three-term recurrence.
_REORTH_MAX_DIM = 64
_REORTH_MAX_ELEMENTS = 2**24
# basin_width draws orthonormal directions (QR) up to this dimension, unit Gaussian ones above it.
_ORTHONORMAL_MAX_DIM = 4096
# The basin width evaluates its points in chunks of about this many elements.
_EVAL_MAX_ELEMENTS = 2**22
# Hessian-vector products with several probes at once (rows (B * c, dim), x repeated) up to this
# many elements: it saves the per-call overhead of small batches; above, the copies of x cost more.
_PROBE_BATCH_ELEMENTS = 2**17
# The basin width's grid r0 * 2**i: its floor and its ceiling are the ends of this range.
_SCAN_EXPONENTS = range(-12, 13)
# The basin width's search ends once its bracket [lo, hi] has log2(hi / lo) at most this ...
_LOG2_PRECISION = 2.0**-12
# ... or after this many refinements (at most two per halving of the bracket: 2 * 12, and spare).
_MAX_REFINEMENTS = 26
# curvature_metrics computes a run's basin width in float64 when eps * |f(x)| > tau * this.
_TWIN_RESOLUTION = 2.0**-15
# Lanczos stops a run when beta_j is at most this many units in the last place of max |H q|.
_BREAKDOWN_ULPS = 16


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
    rounding stays far below the ``hvp`` error even at ``dim ~ 1e6`` (in float32 it would not:
    ghosts 2e-3 above the top eigenvalue at ``dim = 1e6``). It is the plain three-term
    recurrence, in O(B * dim) memory: its extreme Ritz value converges as in exact arithmetic and
    stays within rounding of the spectrum (Paige 1980), so reorthogonalisation, which would cost
    about k/2 times the rest of a step's vector work, buys nothing for lambda_max. Only where
    ``dim <= 64`` (the Krylov space can fill the space) are the Lanczos vectors kept and ``w``
    reorthogonalised against them (twice), which costs little there. A run breaks down when
    ``beta_j <= 16 eps * max_i |H q_i|`` (``|H q_i|^2`` taken as
    ``beta_{i-1}^2 + alpha_i^2 + beta_i^2``), eps of the landscape's dtype: the rounding of a
    Hessian-vector product in that dtype, so an invariant subspace (``dim < k``, ``H = c I``, few
    distinct eigenvalues as at the saddle family's critical points) stops the run, while a start
    vector's small component along the top eigenvector (about ``1 / sqrt(dim)``: 1e-3 at
    ``dim = 1e6``) does not (a threshold of ``sqrt(eps)``, 3e-4 in float32, stopped one run in six
    there at the second-largest eigenvalue). A breakdown missed in a noisier ``hvp`` only restarts
    the recurrence from a rounding-noise vector, whose Ritz values stay within the spectrum;
    it then leaves the batch, and its remaining entries of T are decoupled (``beta = 0``, diagonal
    at the Gershgorin lower bound of its valid block), so they add no eigenvalue above the true
    maximum. Hessian-vector products: one ``(B, dim)`` call per step, over the runs not yet broken
    down.

    References: C. Lanczos, "An iteration method for the solution of the eigenvalue problem of
    linear differential and integral operators", J. Res. Nat. Bur. Standards 45 (1950);
    G. H. Golub and C. F. Van Loan, "Matrix Computations", 4th ed., ch. 10 (2013);
    C. C. Paige, "Accuracy and effectiveness of the Lanczos algorithm for the symmetric
    eigenproblem", Linear Algebra Appl. 34 (1980).
    """
    _check_count("iterations", iterations)
    x, finite = _prepare(landscape, x, seeds)
    start = _start_vectors(landscape, seeds)
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

    Unbiased, with variance ``2 sum_{i != j} H_ij^2 / P``: exact when H is diagonal. A run draws
    its P probes at once, as ``P * ceil(dim / 8)`` random bytes (bit i of byte k is the sign of
    entry ``8k + i``: -1 where set; signs are exact in any dtype). The products ``H z`` are
    evaluated for several probes at once (rows ``(B * c, dim)``, x repeated) while that is at most
    2**17 elements, else one probe ``(B, dim)`` at a time; ``z . H z`` is summed in the landscape's
    dtype, at least float32 (a relative ``eps * log2(dim)`` at most, far below the estimator's
    spread), the mean over probes in float64.

    Reference: M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Comm. Statist. Simul. Comput. 19 (1990) 433-450.
    """
    _check_count("probes", probes)
    x, finite = _prepare(landscape, x, seeds)
    batch, dim = x.shape
    sign_bytes = _sign_bytes(landscape, seeds, probes).to(x.device)
    values = torch.zeros((batch, probes), dtype=torch.float64, device=x.device)
    chunk = _chunk(probes, batch * dim, _PROBE_BATCH_ELEMENTS)
    for first in range(0, probes, chunk):
        z = _unpack_signs(sign_bytes[:, first : first + chunk], dim, x.dtype)
        count = z.shape[0] // batch
        rows = _repeat_rows(x, count)
        if landscape.constrained:
            z = landscape.tangent(rows, z)
        products = (z * landscape.hvp(rows, z)).sum(1, dtype=_accumulator(x.dtype))
        values[:, first : first + count] = products.view(batch, count)
    return _finish(values.sum(1) / probes, finite)


def basin_width(
    landscape: Landscape,
    x: torch.Tensor,
    seeds: Sequence[int],
    tau: float = DEFAULT_TAU,
    probes: int = DEFAULT_BASIN_PROBES,
) -> torch.Tensor:
    r"""The radius r at which the mean loss rise along random unit directions crosses tau.

    ``g(r) = (1/m) sum_j [(f(x + r v_j) + f(x - r v_j)) / 2 - f(x)]``; the antithetic pair cancels
    the linear term where x is not exactly stationary. On a quadratic with Hessian H,
    ``g(r) = r^2 (1/m) sum_j v_j^T H v_j / 2`` with expectation ``r^2 tr(H) / (2 dim)``, so the width
    is ``sqrt(2 tau dim / tr H)``. This is our definition, a mean-rise relative of the
    epsilon-sharpness of Keskar et al. (which takes the worst rise in a box).

    Directions: ``m = min(probes, dim)`` per run, from an ``m x dim`` float32 Gaussian draw; for
    ``dim <= 4096`` an orthonormal set (its rows orthonormalised by QR in float64), so with
    ``probes >= dim`` the sum over a full basis is exactly ``tr H`` and the width on a quadratic is
    exact; above, the rows normalised to unit length in float32 (nearly orthogonal there).

    Search, per run, on the grid ``r0 * 2**i``, ``i = -12..12``, where ``r0 = sqrt(2 tau / c)`` with
    ``c = (1/m) sum_j v_j^T H v_j`` from ``hvp`` (``r0 = 1`` where ``c <= 0`` or is not finite), so
    that ``g(r0) = tau`` on a quadratic. The run evaluates ``g(r0)`` and walks the grid away from
    r0, one step per evaluation: up (``i = 1, 2, ...``) while ``g < tau``, or down
    (``i = -1, -2, ...``) while ``g >= tau``. It stops at the first grid crossing it meets, the one
    NEAREST TO r0 in the direction ``g(r0)`` points to: neighbouring grid radii ``lo < hi`` with
    ``g(lo) < tau <= g(hi)``. g need not be monotone (e.g. Rastrigin): a crossing on the other side
    of r0, or beyond a grid radius where g is already on the far side of tau, is not looked for
    (where g is monotone there is only one). Returns ``r0 * 2**-12`` where g is at least tau at
    every grid radius from r0 down to that floor, and ``+inf`` where g stays below tau at every grid
    radius from r0 up to ``r0 * 2**12`` ("wider than the scan"). The bracket is then narrowed,
    always keeping ``g(lo) < tau <= g(hi)``: regula falsi in ``r^2`` (exact where g is quadratic
    in r), kept at least a quarter of the final precision inside the bracket, and a bisection in
    ``log r`` after any step that did not halve the bracket, until ``log2(hi / lo) <= 2**-12``.
    The result is the regula-falsi point in ``r^2`` between the final lo and hi: within a relative
    ``2**-12 ln 2 ~ 1.7e-4`` of a crossing of g whatever its shape, exact to rounding where g is
    quadratic in r, and to about ``(2**-12)**2`` where g is smooth. Crossings narrower than a factor
    2 in r can be missed by the walk. Loss evaluations (all runs in one batch, runs that are done
    dropping out): one at r0, one per grid step, then typically one to ten refinements (26 at
    most); a quadratic takes three in all. Memory: the directions (``B * m * dim`` elements) and
    one chunk of evaluation points (about 2**22 elements, but at least one antithetic pair per run).

    Reference: N. S. Keskar et al., "On large-batch training for deep learning: generalization gap
    and sharp minima", ICLR 2017.
    """
    _check_count("probes", probes)
    _check_tau(tau)
    x, finite = _prepare(landscape, x, seeds)
    directions = _unit_directions(landscape, seeds, min(probes, landscape.dim))
    if landscape.constrained:
        directions = _tangent_directions(landscape, x, directions)
    rise = _RiseAlongDirections(landscape, x, directions)
    r0 = _initial_radius(landscape, x, directions, tau)
    return _finish(_crossing(rise, r0, tau), finite)


def needs_float64(landscape: Landscape, x: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    r"""Per row of x, whether its basin width must be computed on a float64 twin: ``(B,)`` bool, CPU.

    The rise ``g = mean f(x +- r v) - f(x)`` is a difference of losses of size ``|f(x)|`` that must
    resolve tau. In the landscape's dtype each loss carries a rounding error of about
    ``c * eps * |f|``, eps of the dtype, c a few units for a sum over dim terms that do not cancel
    much; g carries about twice that. The search narrows the width to a relative ``2**-12``, and on a
    quadratic an error ``delta`` in g moves the crossing by a relative ``delta / (2 tau)``; so the
    dtype suffices while ``2 c eps |f| <= tau 2**-12``, i.e. with c = 4, while
    ``eps |f(x)| <= tau * 2**-15``. True where that fails (or ``f(x)`` is not finite), for a row
    with finite x of a landscape not already in float64. For float32 and tau = 0.1: ``|f| > 25.6``
    (Styblinski-Tang at d = 1e5 has ``|f| = 4e6``; the saddle at its minima ``|f| = gamma^2 / 4``).
    The rule looks at each row alone, so a run's choice does not depend on its batch.
    """
    if landscape.dtype == torch.float64:
        return torch.zeros(x.shape[0], dtype=torch.bool)
    return ~_resolves_tau(landscape, x, tau, landscape.dtype)


def _resolves_tau(landscape: Landscape, x: torch.Tensor, tau: float, dtype: torch.dtype) -> torch.Tensor:
    """Per row, whether ``eps |f(x)| <= tau 2**-15`` in ``dtype`` (see :func:`needs_float64`); True
    for a row whose x is not finite (it has no width to resolve). ``(B,)`` bool, CPU."""
    _check_shape(landscape, x)
    x = x.detach().to(device=landscape.device, dtype=landscape.dtype)
    finite = _finite_rows(x)
    if not bool(finite.any()):
        return torch.ones(x.shape[0], dtype=torch.bool)
    values = landscape.loss(torch.where(finite[:, None], x, torch.zeros_like(x))).to(torch.float64)
    limit = tau * _TWIN_RESOLUTION / torch.finfo(dtype).eps
    return (~finite | (values.abs() <= limit)).cpu()


def curvature_metrics(
    landscape: Landscape,
    x: torch.Tensor,
    seeds: Sequence[int],
    *,
    iterations: int = DEFAULT_LANCZOS_ITERATIONS,
    probes: int = DEFAULT_HUTCHINSON_PROBES,
    tau: float = DEFAULT_TAU,
    basin_probes: int = DEFAULT_BASIN_PROBES,
    twin_max_bytes: int = TWIN_MAX_BYTES,
) -> dict[str, torch.Tensor]:
    """The three metrics as a record holds them: ``{"sharpness", "hessian_trace", "basin_width"}``.

    Sharpness and trace come from Hessian-vector products, whose relative precision does not
    depend on ``|f|``: they run in the landscape's dtype. The basin width of the rows that
    :func:`needs_float64` marks runs on a float64 twin of the landscape (``landscape.astype``), built
    only when some row needs it and the twin takes at most ``twin_max_bytes``; the other rows run
    in the landscape's dtype. A row whose ``|f(x)|`` even float64 cannot resolve tau against
    (``eps64 |f| > tau 2**-15``, about ``|f| > 1e10`` at tau = 0.1) gets NaN. The directions are
    the same draw either way (float32 Gaussians on the CPU, orthonormalised in float64 or
    normalised in float32, then cast).
    """
    return {
        "sharpness": sharpness(landscape, x, seeds, iterations=iterations),
        "hessian_trace": hessian_trace(landscape, x, seeds, probes=probes),
        "basin_width": _recorded_basin_width(landscape, x, seeds, tau, basin_probes, twin_max_bytes),
    }


def _recorded_basin_width(
    landscape: Landscape,
    x: torch.Tensor,
    seeds: Sequence[int],
    tau: float = DEFAULT_TAU,
    probes: int = DEFAULT_BASIN_PROBES,
    twin_max_bytes: int = TWIN_MAX_BYTES,
) -> torch.Tensor:
    """basin_width, each row on the twin or the landscape as :func:`curvature_metrics` says; NaN
    where even float64 cannot resolve tau against ``|f(x)|`` (a loss of 1e14 after a near-divergence:
    the width would be rounding noise, or inf)."""
    _check_tau(tau)
    if len(seeds) != x.shape[0]:
        raise LandbenchError(f"need one run seed per row of x: got {len(seeds)} seeds for {x.shape[0]} rows")
    hopeless = ~_resolves_tau(landscape, x, tau, torch.float64)
    width = _basin_width_on_twin_where_needed(landscape, x, seeds, tau, probes, twin_max_bytes)
    return torch.where(hopeless, torch.full_like(width, math.nan), width)


def _basin_width_on_twin_where_needed(
    landscape: Landscape, x: torch.Tensor, seeds: Sequence[int], tau: float, probes: int, twin_max_bytes: int
) -> torch.Tensor:
    precise = needs_float64(landscape, x, tau)
    twin_bytes = landscape.tensor_bytes() * 8 // landscape.dtype.itemsize
    if not bool(precise.any()) or twin_bytes > twin_max_bytes:
        return basin_width(landscape, x, seeds, tau=tau, probes=probes)
    twin = landscape.astype(torch.float64)
    if bool(precise.all()):
        return basin_width(twin, x, seeds, tau=tau, probes=probes)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for rows, on in ((precise, twin), (~precise, landscape)):
        index = rows.nonzero().squeeze(1)
        out[index] = basin_width(on, x[index.to(x.device)], [seeds[i] for i in index.tolist()], tau=tau, probes=probes)
    return out


# --- shared plumbing -------------------------------------------------------------------------


def _check_tau(tau: float) -> None:
    if not (math.isfinite(tau) and tau > 0):
        raise LandbenchError(f"basin_width: tau must be a positive finite number, got {tau!r}")


def _check_shape(landscape: Landscape, x: torch.Tensor) -> None:
    if x.ndim != 2 or x.shape[1] != landscape.dim:
        raise LandbenchError(f"x must have shape (B, {landscape.dim}), got {tuple(x.shape)}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LandbenchError(f"{name} must be a positive integer, got {value!r}")


def _prepare(landscape: Landscape, x: torch.Tensor, seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` on the landscape's device and dtype with non-finite rows zeroed, and the finite-row mask."""
    _check_shape(landscape, x)
    if len(seeds) != x.shape[0]:
        raise LandbenchError(f"need one run seed per row of x: got {len(seeds)} seeds for {x.shape[0]} rows")
    x = x.detach().to(device=landscape.device, dtype=landscape.dtype)
    finite = _finite_rows(x)
    return torch.where(finite[:, None], x, torch.zeros_like(x)), finite


def _finite_rows(x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: rows of x without NaN or inf (max |x| propagates both; 7x faster than isfinite.all)."""
    return torch.isfinite(x.abs().amax(1))


def _finish(values: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """``(B,)`` float64 on the CPU, NaN where the row of x was not finite."""
    values = values.to(device="cpu", dtype=torch.float64)
    return torch.where(finite.cpu(), values, torch.full_like(values, math.nan))


def _generators(landscape: Landscape, seeds: Sequence[int], metric: str) -> list[torch.Generator]:
    return generators((landscape.seed,), [int(s) for s in seeds], (metric,))


def _sign_bytes(landscape: Landscape, seeds: Sequence[int], probes: int) -> torch.Tensor:
    """``(B, probes, ceil(dim / 8))`` uint8 on the CPU: each run's Rademacher probes, one draw per run."""
    out = torch.empty((len(seeds), probes, (landscape.dim + 7) // 8), dtype=torch.uint8)
    for block, generator in zip(out, _generators(landscape, seeds, "hessian_trace")):
        block.random_(0, 256, generator=generator)
    return out


def _unpack_signs(sign_bytes: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, c, n) uint8 -> (B * c, dim)`` of +-1 in ``dtype``: entry ``8k + i`` is ``1 - 2 * bit i of byte k``."""
    bits = torch.arange(8, device=sign_bytes.device)
    table = 1 - 2 * ((torch.arange(256, device=sign_bytes.device)[:, None] >> bits) & 1).to(dtype)
    signs = table.index_select(0, sign_bytes.reshape(-1).long()).view(-1, sign_bytes.shape[-1] * 8)
    return signs if signs.shape[1] == dim else signs[:, :dim].contiguous()


def _chunk(count: int, elements_each: int, budget: int) -> int:
    """How many of ``count`` probes of ``elements_each`` elements to evaluate at once (at least one)."""
    return max(1, min(count, budget // max(elements_each, 1)))


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    """The dtype sums over dim run in: the landscape's, but at least float32."""
    return torch.promote_types(dtype, torch.float32)


def _repeat_rows(x: torch.Tensor, count: int) -> torch.Tensor:
    """``(B, d) -> (B * count, d)``: rows ``b * count`` to ``(b + 1) * count - 1`` are row b of x."""
    if count == 1:
        return x
    return x[:, None].expand(x.shape[0], count, x.shape[1]).reshape(-1, x.shape[1])


def _start_vectors(landscape: Landscape, seeds: Sequence[int]) -> torch.Tensor:
    """``(B, dim)`` in the landscape's dtype, on its device: one float32 Gaussian CPU draw per run."""
    out = torch.empty((len(seeds), landscape.dim), dtype=torch.float32)
    for row, generator in zip(out, _generators(landscape, seeds, "sharpness")):
        torch.randn(landscape.dim, generator=generator, out=row)
    return out.to(device=landscape.device, dtype=landscape.dtype)


# --- Lanczos ------------------------------------------------------------------------------------


def _lanczos(
    landscape: Landscape, x: torch.Tensor, start: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k batched Lanczos steps in float64: alpha ``(B, k)``, beta ``(B, k-1)``, valid ``(B, k)`` (CPU).

    ``valid[b, j]`` is False once run b has broken down before step j; its alpha and beta there
    are 0. A run that breaks down leaves the batch: the later steps multiply only the others.
    """
    batch, dim = x.shape
    work = {"dtype": torch.float64, "device": x.device}
    alphas = torch.zeros((batch, k), **work)
    betas = torch.zeros((batch, k - 1), **work)
    valid = torch.zeros((batch, k), dtype=torch.bool, device=x.device)
    reorthogonalise = dim <= _REORTH_MAX_DIM and batch * k * dim <= _REORTH_MAX_ELEMENTS
    basis = torch.empty((batch, k, dim), **work) if reorthogonalise else None
    tolerance = _BREAKDOWN_ULPS * torch.finfo(x.dtype).eps
    rows = torch.arange(batch, device=x.device)  # the runs still in the batch
    q = start.to(**work)
    q = q / torch.linalg.vector_norm(q, dim=1, keepdim=True)
    q_prev = torch.zeros_like(q)
    beta = torch.zeros(batch, **work)
    scale = torch.zeros(batch, **work)
    for j in range(k):
        product = landscape.hvp(x, q.to(x.dtype)).to(torch.float64)
        alpha = torch.linalg.vecdot(q, product)
        alphas[rows, j] = alpha
        valid[rows, j] = True
        if j == k - 1:
            break
        w = torch.addcmul(product, alpha[:, None], q, value=-1)  # out of place: hvp may return its v
        w.addcmul_(beta[:, None], q_prev, value=-1)
        if basis is not None:
            basis[:, j] = q
            w = _reorthogonalise(w, basis[:, : j + 1])
        previous, beta = beta, torch.linalg.vector_norm(w, dim=1)
        # |H q_j|^2 = beta_{j-1}^2 + alpha_j^2 + beta_j^2 (+ what reorthogonalisation removed)
        scale = torch.maximum(scale, (previous.square() + alpha.square() + beta.square()).sqrt())
        alive = beta > tolerance * scale
        betas[rows, j] = torch.where(alive, beta, torch.zeros_like(beta))
        q_prev, q = q, w.div_(beta[:, None])
        if not bool(alive.all()):
            keep = alive.nonzero()[:, 0]
            if keep.numel() == 0:
                break
            rows, x, q, q_prev, beta, scale = (t.index_select(0, keep) for t in (rows, x, q, q_prev, beta, scale))
            if basis is not None:
                basis = basis.index_select(0, keep)
    return alphas.cpu(), betas.cpu(), valid.cpu()


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
    """``(B, m, dim)`` unit directions per run: orthonormal for small dim, else normalised Gaussian.

    Run b draws an ``m x dim`` float32 Gaussian matrix G on the CPU; the directions are the rows of
    G orthonormalised (QR of ``G^T`` in float64) or normalised (in float32: unit to 1e-7), then cast."""
    dim = landscape.dim
    gaussian = torch.empty((len(seeds), m, dim), dtype=torch.float32)
    for block, generator in zip(gaussian, _generators(landscape, seeds, "basin_width")):
        torch.randn(m, dim, generator=generator, out=block)
    if dim <= _ORTHONORMAL_MAX_DIM:
        frame = torch.linalg.qr(gaussian.to(torch.float64).mT).Q.mT
        return frame.to(device=landscape.device, dtype=landscape.dtype).contiguous()
    gaussian /= torch.linalg.vector_norm(gaussian, dim=2, keepdim=True)
    return gaussian.to(device=landscape.device, dtype=landscape.dtype)


def _tangent_directions(landscape: Landscape, x: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Directions projected onto the tangent space at each run's x, then made unit (orthonormal
    again where they were orthonormal), for constrained landscapes."""
    batch, m, dim = directions.shape
    projected = landscape.tangent(_repeat_rows(x, m), directions.reshape(-1, dim)).reshape(batch, m, dim)
    if dim <= _ORTHONORMAL_MAX_DIM:
        return torch.linalg.qr(projected.transpose(1, 2).to(torch.float64)).Q.transpose(1, 2).to(directions.dtype)
    return projected / projected.norm(dim=2, keepdim=True)


def _initial_radius(landscape: Landscape, x: torch.Tensor, directions: torch.Tensor, tau: float) -> torch.Tensor:
    """``sqrt(2 tau / c)``, ``c`` the mean ``v_j^T H v_j``; 1.0 where ``c <= 0`` or is not finite."""
    batch, m, dim = directions.shape
    values = torch.zeros((batch, m), dtype=torch.float64, device=x.device)
    chunk = _chunk(m, batch * dim, _PROBE_BATCH_ELEMENTS)
    for first in range(0, m, chunk):
        v = directions[:, first : first + chunk]
        count = v.shape[1]
        v = v.reshape(-1, dim)
        products = (v * landscape.hvp(_repeat_rows(x, count), v)).sum(1, dtype=_accumulator(x.dtype))
        values[:, first : first + count] = products.view(batch, count)
    curvature = values.sum(1) / m
    usable = torch.isfinite(curvature) & (curvature > 0)
    ones = torch.ones_like(curvature)
    return torch.where(usable, (2 * tau / torch.where(usable, curvature, ones)).sqrt(), ones)


class _RiseAlongDirections:
    """``g(r)``: the mean antithetic loss rise at per-run radii, as float64, for all runs or some."""

    def __init__(self, landscape: Landscape, x: torch.Tensor, directions: torch.Tensor) -> None:
        self.landscape = landscape
        self.all = (x, directions, landscape.loss(x).to(torch.float64))
        self.rows: torch.Tensor | None = None
        self.selected = self.all
        self.buffer = torch.empty(0, dtype=x.dtype, device=x.device)

    def _select(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if rows is None or rows.numel() == self.all[0].shape[0]:
            return self.all
        if self.rows is None or self.rows.shape != rows.shape or not torch.equal(self.rows, rows):
            self.rows = rows
            self.selected = tuple(t.index_select(0, rows) for t in self.all)  # type: ignore[assignment]
        return self.selected

    def __call__(self, radius: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``g`` at ``radius`` (one per run of ``rows``, or of all runs when None)."""
        x, directions, f0 = self._select(rows)
        batch, m, dim = directions.shape
        chunk = _chunk(m, 2 * batch * dim, _EVAL_MAX_ELEMENTS)
        if self.buffer.numel() < 2 * batch * chunk * dim:
            self.buffer = torch.empty(2 * batch * chunk * dim, dtype=x.dtype, device=x.device)
        r = radius.to(x.dtype)[:, None, None]
        values = torch.empty((batch, m), dtype=torch.float64, device=x.device)
        for first in range(0, m, chunk):
            v = directions[:, first : first + chunk]
            count = v.shape[1]
            points = self.buffer[: 2 * batch * count * dim].view(2, batch, count, dim)
            torch.addcmul(x[:, None], r, v, out=points[0])
            torch.addcmul(x[:, None], r, v, value=-1, out=points[1])
            flat = points.view(-1, dim)
            if self.landscape.constrained:
                flat = self.landscape.retract(flat)
            loss = self.landscape.loss(flat).view(2, batch, count).to(torch.float64)
            values[:, first : first + count] = loss.sum(0)
        return (values.sum(1) - 2 * m * f0) / (2 * m)


def _crossing(rise: _RiseAlongDirections, r0: torch.Tensor, tau: float) -> torch.Tensor:
    """Per run, the crossing of ``g = tau`` found from r0 (see :func:`basin_width`)."""
    batch = r0.shape[0]
    ln2 = math.log(2.0)
    log_r0 = r0.log()
    g0 = rise(r0)
    down = g0 >= tau  # g reached tau at r0: walk down the grid; else walk up
    nan = torch.full_like(r0, math.nan)
    lo, g_lo = torch.where(down, nan, log_r0), torch.where(down, nan, g0)
    hi, g_hi = torch.where(down, log_r0, nan), torch.where(down, g0, nan)
    walking = torch.ones(batch, dtype=torch.bool, device=r0.device)
    steps_down, steps_up = -_SCAN_EXPONENTS[0], _SCAN_EXPONENTS[-1]
    for step in range(1, max(steps_down, steps_up) + 1):
        rows = (walking & torch.where(down, step <= steps_down, step <= steps_up)).nonzero()[:, 0]
        if rows.numel() == 0:
            break
        going_down = down[rows]
        log_r = log_r0[rows] + torch.where(going_down, -step * ln2, step * ln2)
        g = rise(log_r.exp(), rows)
        reached = g >= tau
        hi[rows] = torch.where(reached, log_r, hi[rows])
        g_hi[rows] = torch.where(reached, g, g_hi[rows])
        lo[rows] = torch.where(reached, lo[rows], log_r)
        g_lo[rows] = torch.where(reached, g_lo[rows], g)
        walking[rows] = reached == going_down  # walking down while reached, up while not
    floor, wider = walking & down, walking & ~down

    precision = _LOG2_PRECISION * ln2
    margin = precision / 4
    active = ~walking
    bisect = torch.zeros_like(active)
    for _ in range(_MAX_REFINEMENTS):
        active &= (hi - lo) > precision
        rows = active.nonzero()[:, 0]
        if rows.numel() == 0:
            break
        low, high, width = lo[rows], hi[rows], hi[rows] - lo[rows]
        guess = _regula_falsi(low, high, g_lo[rows], g_hi[rows], tau)
        guess = torch.minimum(torch.maximum(guess, low + margin), high - margin)
        halve = bisect[rows] | ~torch.isfinite(guess)
        guess = torch.where(halve, 0.5 * (low + high), guess)
        g = rise(guess.exp(), rows)
        reached = g >= tau
        hi[rows] = torch.where(reached, guess, high)
        g_hi[rows] = torch.where(reached, g, g_hi[rows])
        lo[rows] = torch.where(reached, low, guess)
        g_lo[rows] = torch.where(reached, g_lo[rows], g)
        bisect[rows] = ~halve & (hi[rows] - lo[rows] > 0.5 * width)

    guess = _regula_falsi(lo, hi, g_lo, g_hi, tau)
    guess = torch.where(torch.isfinite(guess), torch.minimum(torch.maximum(guess, lo), hi), 0.5 * (lo + hi))
    width = guess.exp()
    width = torch.where(floor, r0 * 2.0 ** _SCAN_EXPONENTS[0], width)
    return torch.where(wider, torch.full_like(width, math.inf), width)


def _regula_falsi(
    log_lo: torch.Tensor, log_hi: torch.Tensor, g_lo: torch.Tensor, g_hi: torch.Tensor, tau: float
) -> torch.Tensor:
    """``log r`` where the chord of g through ``(lo^2, g_lo)`` and ``(hi^2, g_hi)`` reaches tau."""
    s_lo, s_hi = (2 * log_lo).exp(), (2 * log_hi).exp()
    return 0.5 * (s_lo + (tau - g_lo) * (s_hi - s_lo) / (g_hi - g_lo)).log()
