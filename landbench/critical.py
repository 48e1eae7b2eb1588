"""Critical points of any index, found by Newton's method on the gradient, batched over many starts.

A critical point of f is a root of its gradient ``g = grad f``, whatever its index (the number of
negative Hessian eigenvalues). Gradient descent finds minima; to find saddles and maxima too, one
solves ``g(x) = 0`` instead, by Newton's method on the gradient: the step ``delta = -H^+ g``
(``H`` the Hessian, ``H^+`` its pseudo-inverse), globalised by a backtracking line search on the
merit function ``phi(x) = |g(x)|^2 / 2``, whose gradient is ``grad phi = H g``. Along the Newton
step ``phi`` decreases at the rate ``-g^T H H^+ g = -|P_range(H) g|^2`` (``-2 phi`` where H is
invertible), so every limit point of the iteration is a stationary point of phi: ``H g = 0``.
Those are the critical points (``g = 0``) and the **gradient-flat points**, where g is not zero but
lies in the Hessian's kernel. Frye et al. (2021) show that such false positives are common for
Newton-type critical-point finders on neural-network losses; they are reported here as their own
kind and never counted as critical points.

With a dense Hessian (``dim <= dense_max_dim``) the pseudo-inverse is exact: the Hessian is built
column by column from the landscape's closed-form Hessian-vector products, ``H e_j``, in one
batched call over (run, column) pairs, and diagonalised by ``torch.linalg.eigh``; eigenvalues with
``|lambda| <= rcond * max|lambda|`` are treated as zero, which makes ``-H^+ g`` the minimum-norm
least-squares Newton step of Newton-MR (Roosta et al. 2018, the method Frye et al. use). Each
iteration tries, in one batched gradient evaluation, the Newton step at the lengths ``alpha = 1,
1/2, ..., 2^-30`` and takes the largest that passes Armijo's test ``phi(x + alpha delta) <= phi(x)
- 1e-4 * (decrease predicted by the linear model |g + alpha H delta|^2 / 2)`` (where H is
invertible the predicted decrease is ``(2 alpha - alpha^2) phi``). When none passes, it takes the
best of the Levenberg-Marquardt steps ``-(H^2 + mu I)^{-1} H g`` for ``mu = max|lambda|^2 4^-j``,
j = -10..20: from a short step along ``-H g = -grad phi`` (Gauss-Newton on phi, large mu) to the
Newton step (mu -> 0). A run with no acceptable step has stalled; it stops, like a run whose
gradient norm fell to ``grad_tol``. Runs stop separately (masked): the batch shrinks as they do.

**Beyond ``dense_max_dim``** (or with ``dense_max_dim=0``) the Krylov path runs (:mod:`landbench.krylov`):
each iteration's Newton and Levenberg-Marquardt trial steps are taken in the Krylov space of MINRES
(Paige and Saunders 1975) on ``H delta = -g``, built by a batched Lanczos recurrence with full
reorthogonalisation on the closed-form Hessian-vector products, with the minimum-length subspace
solution (as MINRES-QLP's, Choi, Paige and Saunders 2011) and the exact linear-model decrease that the
Armijo test uses; the final index and spectrum extremes come from a full Lanczos tridiagonalisation
(n products per start, exact inertia up to ``O(eps |H|)``); the gradient-flat test during the run uses
one product ``H g``. Cost per Newton iteration: the Lanczos steps to the residual ``krylov_rtol`` (at
most the tangent dimension n) and ``O(B k d)`` reorthogonalisation; at the end, ``O(n^2 d)`` per start.

**Restarts** (``restarts=N``): a start that ends gradient-flat runs again from a fresh seeded start, up
to N times; its gradient-flat ends stay in the report.

**Constrained landscapes** (the spherical spin glass, ``|x|^2 = N``) follow the Riemannian Newton
method (Absil, Mahony and Sepulchre 2008, ch. 6): the landscape's ``loss_and_grad`` gives the
Riemannian gradient ``P g`` and its ``hvp`` the Riemannian Hessian on tangent vectors (the
contract of :class:`~landbench.landscapes.base.Landscape` that the curvature metrics rely on); on
the sphere it is ``Hess f(x) = P (grad^2 f - (x.g / |x|^2) I) P`` (Absil et al. 2008, 5.5.6; the
second term is the sphere's Weingarten map). The Hessian is diagonalised on an orthonormal basis
of the tangent space (``dim - 1`` directions on the sphere: the normal direction is excluded, so
the index counts the negative eigenvalues on the sphere only), the step is taken in the tangent
space and mapped back by ``landscape.retract``, and ``phi`` is the squared Riemannian gradient norm,
whose Riemannian gradient is again ``Hess f [grad f]``.

**Deduplication.** Converged points within ``dedup_tol * max(1, |x|, |y|)`` of each other are one
point (counting the starts that found it); where the landscape is even (the spin glass with even
degrees: ``f(-s) = f(s)``), ``s`` and ``-s`` are one point too.

References: Y. Dauphin, R. Pascanu, C. Gulcehre, K. Cho, S. Ganguli and Y. Bengio, "Identifying
and attacking the saddle point problem in high-dimensional non-convex optimization", NeurIPS 2014
(Newton's method is attracted to saddles); C. G. Frye, J. Simon, N. S. Wadia, A. Ligeralde,
M. R. DeWeese and K. E. Bouchard, "Critical point-finding methods reveal gradient-flat regions of
deep network losses", Neural Computation 33(6), 2021; F. Roosta, Y. Liu, P. Xu and M. W. Mahoney,
"Newton-MR: Newton's method without smoothness or convexity", 2018; P.-A. Absil, R. Mahony and
R. Sepulchre, "Optimization Algorithms on Matrix Manifolds", Princeton University Press 2008;
J. Nocedal and S. J. Wright, "Numerical Optimization", 2nd ed., Springer 2006 (line searches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from landbench.errors import LandbenchError
from landbench.krylov import lanczos_spectrum, minres_subspace, subspace_steps
from landbench.landscapes.base import Landscape, available_memory
from landbench.rng import cpu_generator
from landbench.settings import MAX_SEED, MAX_SEEDS, is_integer
from landbench.threads import choose_threads, using_threads

#: The largest dimension whose Hessian is built densely (B x d x d numbers, a d x d eigendecomposition per run).
DENSE_MAX_DIM = 512
#: Work space, in bytes, that one chunk of Hessians (and their Hessian-vector products) may take.
CHUNK_BYTES = 256 * 2**20
#: Armijo's sufficient-decrease constant (on the decrease of phi that the linear model predicts).
ARMIJO = 1e-4
#: Step lengths at which each iteration tries the Newton step (1, 1/2, ..., 2^-30).
NEWTON_STEPS = tuple(0.5**k for k in range(31))
#: Levenberg-Marquardt damping factors tried at each iteration, in units of max|lambda|^2.
DAMPING = tuple(4.0**-j for j in range(-10, 21))

KINDS = ("minimum", "saddle", "maximum", "gradient-flat", "not converged")


class CriticalPointError(LandbenchError):
    """Bad input to :func:`critical_points` (starts, tolerances, a dimension beyond the dense limit)."""


@dataclass(frozen=True)
class FoundPoint:
    """One distinct point that the finder converged to, with how many starts found it.

    ``kind`` is ``"minimum"`` (index 0), ``"saddle"``, ``"maximum"`` (index = ``tangent_dim``) or,
    for a point where the iteration stopped on a nonzero gradient lying in the Hessian's near-kernel,
    ``"gradient-flat"`` (not a critical point). ``index``: Hessian eigenvalues below
    ``-eig_tol * max|lambda|``; ``nullity``: eigenvalues within ``eig_tol * max|lambda|`` of 0 (a
    degenerate point, e.g. a ring of minima, has some); ``starts``: the positions in the batch of
    the starts that ended here.
    """

    x: torch.Tensor
    value: float
    grad_norm: float
    index: int
    nullity: int
    lambda_min: float
    lambda_max: float
    kind: str
    starts: tuple[int, ...]

    @property
    def count(self) -> int:
        """How many starts found this point."""
        return len(self.starts)

    def as_record(self) -> dict[str, Any]:
        """JSON-ready: kind, value, index, nullity, gradient norm, spectrum extremes, found_by, point."""
        return {
            "kind": self.kind,
            "value": self.value,
            "index": self.index,
            "nullity": self.nullity,
            "grad_norm": self.grad_norm,
            "lambda_min": self.lambda_min,
            "lambda_max": self.lambda_max,
            "found_by": self.count,
            "point": [float(v) for v in self.x],
        }


@dataclass(frozen=True)
class CriticalPoints:
    """What :func:`critical_points` found: per start (tensors of B rows, on the CPU, float64) and
    the distinct points.

    Per start: ``x`` (where the run stopped), ``value``, ``grad_norm`` (Riemannian where
    constrained), ``hg_norm`` (``|H g|``, the gradient of phi), ``index``, ``nullity``,
    ``lambda_min``, ``lambda_max`` (of the Hessian, on the tangent space where constrained),
    ``iterations``, ``kind`` (one of :data:`KINDS`) and ``point_of`` (the position of the start's
    point in ``points``, or in ``gradient_flat`` for a gradient-flat run, -1 when not converged).
    ``points``: the distinct critical points, sorted by value; ``gradient_flat``: the distinct
    gradient-flat points (never counted as critical points). ``tangent_dim``: the dimension the
    index is counted in (``dim``, or ``dim - 1`` on the sphere).
    """

    spec: str
    dim: int
    tangent_dim: int
    x: torch.Tensor
    value: torch.Tensor
    grad_norm: torch.Tensor
    hg_norm: torch.Tensor
    index: torch.Tensor
    nullity: torch.Tensor
    lambda_min: torch.Tensor
    lambda_max: torch.Tensor
    iterations: torch.Tensor
    kind: list[str]
    point_of: torch.Tensor
    points: list[FoundPoint]
    gradient_flat: list[FoundPoint]
    settings: dict[str, Any] = field(default_factory=dict)
    #: per start, the restarts used after gradient-flat ends (B,); None where built without
    restarts: torch.Tensor | None = None
    #: gradient-flat ends of all attempts together (final ones and restarted ones)
    flat_ends: int | None = None

    @property
    def starts(self) -> int:
        return len(self.kind)

    def counts(self) -> dict[str, int]:
        """Starts per outcome: ``converged`` (to a critical point), ``gradient_flat``, ``not_converged``,
        and the number of distinct critical and gradient-flat points."""
        converged = sum(k in ("minimum", "saddle", "maximum") for k in self.kind)
        flat = sum(k == "gradient-flat" for k in self.kind)
        counts = {
            "starts": self.starts,
            "converged": converged,
            "gradient_flat": flat,
            "not_converged": self.starts - converged - flat,
            "unique_points": len(self.points),
            "unique_gradient_flat": len(self.gradient_flat),
        }
        if self.settings.get("restarts") and self.restarts is not None:
            # with restarts: the restarts used, and the gradient-flat ends of every attempt
            counts["restarts"] = int(self.restarts.sum())
            counts["gradient_flat_ends"] = int(self.flat_ends or 0)
        return counts

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the counts, the distinct critical points per kind, and the settings."""
        by_kind = {k: sum(p.kind == k for p in self.points) for k in ("minimum", "saddle", "maximum")}
        return {
            "problem": self.spec,
            "dim": self.dim,
            "tangent_dim": self.tangent_dim,
            **self.counts(),
            "unique_by_kind": by_kind,
            "settings": dict(self.settings),
        }

    def as_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per distinct point: the critical points (by value), then the
        gradient-flat points; each names the problem."""
        return [{"problem": self.spec, **p.as_record()} for p in self.points + self.gradient_flat]

    def per_start(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per start (without its point): kind, value, index, norms, iterations (of all
        its attempts), restarts (after gradient-flat ends)."""
        return [
            {
                "start": i,
                "kind": self.kind[i],
                "value": float(self.value[i]),
                "grad_norm": float(self.grad_norm[i]),
                "hg_norm": float(self.hg_norm[i]),
                "index": int(self.index[i]),
                "lambda_min": float(self.lambda_min[i]),
                "lambda_max": float(self.lambda_max[i]),
                "iterations": int(self.iterations[i]),
                "restarts": int(self.restarts[i]) if self.restarts is not None else 0,
                "point": int(self.point_of[i]),
            }
            for i in range(self.starts)
        ]


def classify(
    grad_norm: torch.Tensor,
    hg_norm: torch.Tensor,
    eigenvalues: torch.Tensor,
    *,
    grad_tol: float,
    flat_tol: float,
    eig_tol: float,
    curvature: torch.Tensor | None = None,
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Kinds, indices and nullities of B points from their gradient norms ``|g|`` (B,), ``|H g|`` (B,)
    and Hessian eigenvalues (B, n).

    * ``|g| <= grad_tol``: a critical point; its index is the number of eigenvalues below
      ``-eig_tol * max|lambda|``: ``"minimum"`` (0), ``"maximum"`` (n) or ``"saddle"``.
    * otherwise ``|H g| <= flat_tol * C * |g|``: phi = |g|^2/2 is stationary (its gradient ``H g``
      vanishes relative to the scales of H and g) but g is not zero: ``"gradient-flat"`` (Frye et al.
      2021). The curvature scale C is ``max|lambda|`` at the point, or ``curvature`` (B,) where larger
      (the finder passes the largest ``max|lambda|`` met along the run: in one dimension the Hessian
      at a gradient-flat point is itself ~0, and cannot be its own scale).
    * otherwise ``"not converged"``.
    """
    scale = eigenvalues.abs().amax(1) if eigenvalues.shape[1] else torch.zeros_like(grad_norm)
    flat_scale = scale if curvature is None else torch.maximum(scale, curvature.to(scale))
    cut = (eig_tol * scale)[:, None]
    index = (eigenvalues < -cut).sum(1)
    nullity = (eigenvalues.abs() <= cut).sum(1)
    n = eigenvalues.shape[1]
    kinds = []
    for g, hg, s, k in zip(grad_norm.tolist(), hg_norm.tolist(), flat_scale.tolist(), index.tolist()):
        if g <= grad_tol:
            kinds.append("minimum" if k == 0 else "maximum" if k == n else "saddle")
        elif math.isfinite(g) and hg <= flat_tol * s * g:
            kinds.append("gradient-flat")
        else:
            kinds.append("not converged")
    return kinds, index, nullity


def even_symmetry(landscape: Landscape) -> bool:
    """Whether ``f(-x) = f(x)`` is a known symmetry to identify points under: the spin glass whose
    degrees are all even (pure p = 2 or 4, or a mixture of even degrees)."""
    coefficients = getattr(landscape, "coefficients", None)
    return landscape.family == "pspin" and bool(coefficients) and all(p % 2 == 0 for p in coefficients)


def critical_points(
    landscape: Landscape,
    starts: int | torch.Tensor,
    *,
    seed: int = 0,
    max_iter: int = 500,
    grad_tol: float = 1e-9,
    eig_tol: float = 1e-6,
    flat_tol: float = 1e-4,
    rcond: float = 1e-10,
    dedup_tol: float = 1e-5,
    symmetric: bool | None = None,
    dense_max_dim: int = DENSE_MAX_DIM,
    restarts: int = 0,
    krylov_max_iter: int | None = None,
    krylov_rtol: float = 1e-10,
    spectrum: str = "auto",
) -> CriticalPoints:
    """Critical points of ``landscape`` from B starts, by Newton's method on the gradient (see the
    module docstring for the method and the references).

    ``starts``: a count B (the landscape's own start distribution, run seeds ``seed .. seed+B-1``,
    as :meth:`~landbench.landscapes.base.Landscape.sample_start` draws them) or a ``(B, dim)``
    tensor (retracted onto the feasible set where the landscape is constrained). The B runs are one
    batch on the landscape's device, in float64 (a float32 landscape is cast with ``astype``).

    Tolerances: a run has converged when its gradient norm is at most ``grad_tol``; Hessian
    eigenvalues below ``-eig_tol * max|lambda|`` count in the index; a stopped run is gradient-flat
    when ``|H g| <= flat_tol * C * |g|``, C the largest ``max|lambda|`` met along the run (see
    :func:`classify`); ``rcond`` is the pseudo-inverse's relative
    cutoff; points closer than ``dedup_tol * max(1, |x|, |y|)`` are one; ``symmetric`` identifies x
    and -x (None: where the landscape is known to be even, see :func:`even_symmetry`).

    The path: with ``dim <= dense_max_dim`` the Hessian is dense (B x d x d, exact pseudo-inverse);
    beyond, the Krylov path (:class:`_KrylovNewton`, :mod:`landbench.krylov`): MINRES's Krylov space on
    Hessian-vector products, at most ``krylov_max_iter`` Lanczos steps per Newton iteration (None: the
    tangent dimension n, exact in exact arithmetic) stopped at relative residual ``krylov_rtol``, and the
    final spectrum (index, extremes) of each point by ``spectrum``: ``"lanczos"``, a full Lanczos
    tridiagonalisation (n products per start; exact inertia), ``"dense"``, the dense Hessian built from
    d products and diagonalised, or ``"auto"`` (dense where one run's Hessian fits the chunk budget,
    about d <= 2300; Lanczos beyond). ``dense_max_dim=0`` forces the Krylov path.

    ``restarts``: a start whose run ends gradient-flat is run again, up to ``restarts`` times, from a new
    start drawn from the landscape's start distribution (see :func:`_restart_points`: the draw depends on
    the instance, the start's run seed ``seed + i`` and the restart number only, so it does not depend on
    the batch). The per-start results are its last attempt's (``iterations``: all attempts together;
    ``restarts``: the attempts beyond the first); the gradient-flat points of every attempt are kept
    in ``gradient_flat`` (a start can appear there and in a critical point).
    """
    _check_settings(landscape, max_iter, grad_tol, eig_tol, flat_tol, rcond, dedup_tol, dense_max_dim)
    _check_krylov(restarts, krylov_max_iter, krylov_rtol, spectrum)
    # the finder's tensors are B x d x d: one thread below 2^20 elements (a second one costs more than it
    # gains there, and 5-70 times that on a busy machine; landbench.threads), $LANDBENCH_THREADS wins
    count = len(starts) if isinstance(starts, torch.Tensor) and starts.dim() else starts if is_integer(starts) else 1
    with using_threads(choose_threads(count * landscape.dim * landscape.dim)):
        land = landscape if landscape.dtype == torch.float64 else landscape.astype(torch.float64)
        x0 = _starts(land, starts, seed)
        krylov = land.dim > dense_max_dim
        solver = _KrylovNewton(land, rcond, krylov_max_iter, krylov_rtol, spectrum) if krylov else _Newton(land, rcond)
        tolerances = dict(grad_tol=grad_tol, flat_tol=flat_tol, eig_tol=eig_tol)
        cpu, kinds, index, nullity, iterations = _attempt(solver, x0, max_iter, **tolerances)
        used = torch.zeros(len(kinds), dtype=torch.long)
        flat_ends: list[tuple[dict[str, torch.Tensor], list[str], torch.Tensor, torch.Tensor, list[int]]] = []
        for attempt in range(1, int(restarts) + 1):
            again = [i for i, k in enumerate(kinds) if k == "gradient-flat"]
            if not again:
                break
            rows = torch.tensor(again, dtype=torch.long)
            flat_ends.append(({key: v[rows].clone() for key, v in cpu.items()}, [kinds[i] for i in again], index[rows],
                              nullity[rows], again))  # fmt: skip
            fresh = _restart_points(land, [seed + i for i in again], attempt)
            c2, k2, i2, n2, it2 = _attempt(solver, fresh, max_iter, **tolerances)
            for key in cpu:
                cpu[key][rows] = c2[key]
            for position, i in enumerate(again):
                kinds[i] = k2[position]
            index[rows], nullity[rows] = i2, n2
            iterations[rows] += it2
            used[rows] += 1
        # the gradient-flat ends of earlier attempts join the final ones, as extra rows after the B starts
        b = len(kinds)
        owners = list(range(b))
        pool = {key: [v] for key, v in cpu.items()}
        pool_kinds, pool_index, pool_nullity = list(kinds), [index], [nullity]
        for c, k, i, n, who in flat_ends:
            for key in pool:
                pool[key].append(c[key])
            pool_kinds += k
            pool_index.append(i)
            pool_nullity.append(n)
            owners += who
        pooled = {key: torch.cat(v) for key, v in pool.items()}
        all_index, all_nullity = torch.cat(pool_index), torch.cat(pool_nullity)
        even = even_symmetry(landscape) if symmetric is None else bool(symmetric)
        point_of_pool = torch.full((len(owners),), -1, dtype=torch.long)
        critical = [i for i in range(b) if kinds[i] in ("minimum", "saddle", "maximum")]
        flat = [i for i, k in enumerate(pool_kinds) if k == "gradient-flat"]
        points = _unique(critical, pooled, pool_kinds, all_index, all_nullity, dedup_tol, even, point_of_pool, owners)
        # Gradient-flat points are approached slowly (linearly at best): merged with a looser tolerance.
        loose = math.sqrt(dedup_tol)
        flats = _unique(flat, pooled, pool_kinds, all_index, all_nullity, loose, even, point_of_pool, owners)
        settings = {
            "max_iter": max_iter,
            "grad_tol": grad_tol,
            "eig_tol": eig_tol,
            "flat_tol": flat_tol,
            "rcond": rcond,
            "dedup_tol": dedup_tol,
            "symmetric": even,
            "seed": seed if not isinstance(starts, torch.Tensor) else None,
            "path": "krylov" if krylov else "dense",
            "restarts": int(restarts),
        }
        if krylov:
            settings.update(
                krylov_max_iter=solver.max_steps,  # type: ignore[attr-defined]
                krylov_rtol=krylov_rtol,
                spectrum="dense" if solver.dense_spectrum else "lanczos",  # type: ignore[attr-defined]
            )
        return CriticalPoints(
            spec=landscape.spec,
            dim=landscape.dim,
            tangent_dim=solver.tangent_dim,
            index=index,
            nullity=nullity,
            iterations=iterations,
            kind=kinds,
            point_of=point_of_pool[:b].clone(),
            points=points,
            gradient_flat=flats,
            settings=settings,
            restarts=used,
            flat_ends=sum(len(end[4]) for end in flat_ends) + sum(k == "gradient-flat" for k in kinds),
            **cpu,
        )


def _attempt(
    solver: _Newton, x0: torch.Tensor, max_iter: int, *, grad_tol: float, flat_tol: float, eig_tol: float
) -> tuple[dict[str, torch.Tensor], list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """One run of every start in x0: the per-start numbers (on the CPU), kinds, indices, nullities and
    iterations."""
    x, iterations, curvature = solver.run(x0, max_iter=max_iter, grad_tol=grad_tol, flat_tol=flat_tol)
    value, grad = solver.evaluate(x)
    grad_norm = torch.linalg.vector_norm(grad, dim=1)
    eigenvalues, hg_norm = solver.spectrum(x, grad)
    kinds, index, nullity = classify(
        grad_norm.cpu(),
        hg_norm.cpu(),
        eigenvalues.cpu(),
        grad_tol=grad_tol,
        flat_tol=flat_tol,
        eig_tol=eig_tol,
        curvature=curvature.cpu(),
    )
    cpu = {
        "x": x.cpu(),
        "value": value.cpu(),
        "grad_norm": grad_norm.cpu(),
        "hg_norm": hg_norm.cpu(),
        "lambda_min": eigenvalues.amin(1).cpu() if eigenvalues.shape[1] else value.new_zeros(len(x)).cpu(),
        "lambda_max": eigenvalues.amax(1).cpu() if eigenvalues.shape[1] else value.new_zeros(len(x)).cpu(),
    }
    return cpu, kinds, index, nullity, iterations.cpu()


def _restart_points(landscape: Landscape, run_seeds: list[int], attempt: int) -> torch.Tensor:
    """Fresh start points (len(run_seeds), dim) for the ``attempt``-th restart of the starts with these
    run seeds: draws from the landscape's start distribution with a generator seeded by (instance seed,
    run seed, "critical-restart", attempt), so each depends on its own start only.

    A fresh draw, not a perturbation of the gradient-flat point: Frye et al. (2021) find gradient-flat
    regions wide, so a nearby restart tends to end there again, and the critical points found from
    restarts are then distributed as those found from first attempts (rejection of the gradient-flat
    ends), not biased towards the neighbourhood of gradient-flat regions."""
    rows = [
        landscape._sample_start(cpu_generator(landscape.seed, int(s), "critical-restart", int(attempt)))
        for s in run_seeds
    ]
    x = torch.stack(rows).to(device=landscape.device, dtype=torch.float64)
    return landscape.retract(x) if landscape.constrained else x


# --- input -------------------------------------------------------------------------------------------


def _check_settings(
    landscape: Landscape,
    max_iter: int,
    grad_tol: float,
    eig_tol: float,
    flat_tol: float,
    rcond: float,
    dedup_tol: float,
    dense_max_dim: int,
) -> None:
    if not isinstance(landscape, Landscape):
        raise CriticalPointError(f"critical_points needs a Landscape (landbench.make(spec)), got {landscape!r}")
    for name, value in (("max_iter", max_iter), ("dense_max_dim", dense_max_dim)):
        if not is_integer(value) or value < 0:
            raise CriticalPointError(f"critical_points: {name} must be a non-negative integer, got {value!r}")
    for name, value in (
        ("grad_tol", grad_tol),
        ("eig_tol", eig_tol),
        ("flat_tol", flat_tol),
        ("rcond", rcond),
        ("dedup_tol", dedup_tol),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < math.inf):
            raise CriticalPointError(f"critical_points: {name} must be a finite number >= 0, got {value!r}")


def _check_krylov(restarts: int, krylov_max_iter: int | None, krylov_rtol: float, spectrum: str = "auto") -> None:
    if spectrum not in ("auto", "dense", "lanczos"):
        raise CriticalPointError(f"critical_points: spectrum must be 'auto', 'dense' or 'lanczos', got {spectrum!r}")
    if not is_integer(restarts) or restarts < 0:
        raise CriticalPointError(f"critical_points: restarts must be a non-negative integer, got {restarts!r}")
    if krylov_max_iter is not None and (not is_integer(krylov_max_iter) or krylov_max_iter < 1):
        raise CriticalPointError(
            f"critical_points: krylov_max_iter must be a positive integer or None, got {krylov_max_iter!r}"
        )
    if isinstance(krylov_rtol, bool) or not isinstance(krylov_rtol, (int, float)) or not (0 <= krylov_rtol < 1):
        raise CriticalPointError(f"critical_points: krylov_rtol must be a number in [0, 1), got {krylov_rtol!r}")


def _starts(landscape: Landscape, starts: int | torch.Tensor, seed: int) -> torch.Tensor:
    """The ``(B, dim)`` float64 start points on the landscape's device."""
    if isinstance(starts, torch.Tensor):
        if starts.ndim != 2 or starts.shape[1] != landscape.dim or starts.shape[0] < 1:
            raise CriticalPointError(
                f"critical_points: starts must be a count or a (B, {landscape.dim}) tensor with B >= 1, "
                f"got shape {tuple(starts.shape)}"
            )
        if not starts.is_floating_point() or not bool(torch.isfinite(starts).all()):
            raise CriticalPointError("critical_points: start points must be finite floating-point numbers")
        x = starts.detach().to(device=landscape.device, dtype=torch.float64).clone()
        if landscape.constrained:
            x = landscape.retract(x)
            if not bool(torch.isfinite(x).all()):
                raise CriticalPointError(
                    "critical_points: a start point cannot be placed on the feasible set (the origin of the sphere?)"
                )
        return x
    if not is_integer(starts) or not 1 <= starts <= MAX_SEEDS:
        raise CriticalPointError(
            f"critical_points: starts must be a count between 1 and {MAX_SEEDS}, or a (B, dim) tensor; got {starts!r}"
        )
    if not is_integer(seed) or not 0 <= seed <= MAX_SEED - int(starts):
        raise CriticalPointError(f"critical_points: seed must be a non-negative integer, got {seed!r}")
    return landscape.sample_start(range(int(seed), int(seed) + int(starts))).to(torch.float64)


# --- the iteration -----------------------------------------------------------------------------------


def _trial_buffers(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, ...]:
    """What one iteration's trial steps fill, for B = len(x) runs and K = len(NEWTON_STEPS) +
    len(DAMPING) trials: the steps (B, K, dim), their predicted decreases (B, K), the curvature scale
    (B,), and the Newton step lengths and damping factors as tensors on x's device."""
    b, k = len(x), len(NEWTON_STEPS) + len(DAMPING)
    newton_alpha = torch.tensor(NEWTON_STEPS, dtype=x.dtype, device=x.device)
    damping = torch.tensor(DAMPING, dtype=x.dtype, device=x.device)
    return x.new_empty((b, k, dim)), x.new_empty((b, k)), x.new_empty(b), newton_alpha, damping


class _Newton:
    """Newton's method on the (Riemannian) gradient with a dense Hessian, over a batch of runs."""

    def __init__(self, landscape: Landscape, rcond: float) -> None:
        self.landscape = landscape
        self.rcond = rcond
        self.dim = landscape.dim
        self.constrained = landscape.constrained
        self.tangent_dim = self.dim - 1 if self.constrained else self.dim  # checked in _tangent_basis
        per_row = 0
        try:
            free = available_memory(landscape.device)
            per_row = type(landscape).footprint(torch.float64, free, **landscape.values).per_run
        except Exception:  # noqa: BLE001 - an estimate only; families without one take the default
            per_row = 0
        d = self.dim
        budget = CHUNK_BYTES
        try:
            budget = max(2**20, min(CHUNK_BYTES, available_memory(landscape.device) // 4))
        except Exception:  # noqa: BLE001 - pragma: no cover
            pass
        self.budget = budget
        trials = len(NEWTON_STEPS) + len(DAMPING)
        # one call of hvp or loss_and_grad: rows of (x, v, the result, temporaries) and the family's work space
        self.rows_per_call = max(1, budget // (6 * d * 8 + per_row))
        # one chunk of runs: a few d x d matrices (Hessian, eigenvectors, tangent basis) and the trial steps
        self.runs_per_chunk = max(1, budget // (10 * d * d * 8 + 4 * trials * d * 8))
        self.dense_runs_per_chunk = self.runs_per_chunk  # the dense spectrum's chunks (the Krylov path keeps them)

    # evaluation

    def evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and (Riemannian) gradient."""
        value, grad = self.landscape.loss_and_grad(x)
        if self.constrained:
            grad = self.landscape.tangent(x, grad)
        return value, grad

    def _hessians(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The Hessians (b, n, n) (on an orthonormal tangent basis U (b, d, n) where constrained)."""
        b, d = x.shape
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        rows = x.repeat_interleave(d, dim=0)
        basis = eye.repeat(b, 1)
        # row j of a run's block is H e_j, the j-th column of H (of Hess P on the sphere: hvp projects v first)
        products = [self.landscape.hvp(rows[r0:r1], basis[r0:r1]) for r0, r1 in self._row_chunks(b * d)]
        m = torch.cat(products).reshape(b, d, d).transpose(1, 2)
        if not self.constrained:
            return 0.5 * (m + m.transpose(1, 2)), None
        u = self._tangent_basis(x, rows, basis)
        h = u.transpose(1, 2) @ m @ u
        return 0.5 * (h + h.transpose(1, 2)), u

    def _tangent_basis(self, x: torch.Tensor, rows: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """An orthonormal basis (b, d, n) of the tangent space at each x: the eigenvectors of the
        projection ``P = tangent(x, .)`` with eigenvalue 1."""
        b, d = x.shape
        p = torch.cat([self.landscape.tangent(rows[r0:r1], basis[r0:r1]) for r0, r1 in self._row_chunks(b * d)])
        p = p.reshape(b, d, d)
        eigenvalues, vectors = torch.linalg.eigh(0.5 * (p + p.transpose(1, 2)))
        counts = (eigenvalues > 0.5).sum(1)
        if not bool((counts == self.tangent_dim).all()):
            raise CriticalPointError(
                f"critical_points: {self.landscape.spec}'s tangent space has dimension {counts.tolist()}, expected "
                f"{self.tangent_dim} (a constrained landscape other than a sphere is not supported)"
            )
        return vectors[:, :, d - self.tangent_dim :]

    def _chunks(self, b: int) -> list[tuple[int, int]]:
        step = self.runs_per_chunk
        return [(r0, min(b, r0 + step)) for r0 in range(0, b, step)]

    def candidates(self, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The trial steps of one iteration, (b, K, d), and the decrease of phi that the linear model
        ``phi(x + delta) ~ |g + H delta|^2 / 2`` predicts for each, (b, K).

        In the Hessian's eigenbasis (``H = sum lambda_i v_i v_i^T``, ``c_i = v_i . g``): the Newton step
        ``-H^+ g = -sum_{|lambda_i| > rcond max|lambda|} (c_i / lambda_i) v_i`` at the step lengths of
        :data:`NEWTON_STEPS`, and the Levenberg-Marquardt path ``-(H^2 + mu I)^{-1} H g = -sum
        lambda_i c_i / (lambda_i^2 + mu) v_i`` for ``mu = max|lambda|^2 4^-j`` (:data:`DAMPING`): from a
        short Gauss-Newton step along ``-H g = -grad phi`` (large mu) to the Newton step (mu -> 0).
        """
        b = len(x)
        steps, predicted, curvature, newton_alpha, damping = _trial_buffers(x, self.dim)
        for r0, r1 in self._chunks(b):
            h, u = self._hessians(x[r0:r1])
            lam, vectors = torch.linalg.eigh(h)
            g = grad[r0:r1]
            gt = g if u is None else (u.transpose(1, 2) @ g[:, :, None])[:, :, 0]
            c = (vectors.transpose(1, 2) @ gt[:, :, None])[:, :, 0]  # g in the eigenbasis, (m, n)
            scale = lam.abs().amax(1, keepdim=True)
            curvature[r0:r1] = scale[:, 0]
            keep = lam.abs() > self.rcond * scale
            inverse = torch.where(keep, 1.0 / torch.where(keep, lam, torch.ones_like(lam)), torch.zeros_like(lam))
            newton = -(inverse * c)[:, None, :] * newton_alpha[None, :, None]  # (m, a, n)
            mu = (scale * scale) * damping[None, :]  # (m, j)
            denominator = lam[:, None, :] ** 2 + mu[:, :, None]
            safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
            marquardt = torch.where(denominator > 0, -(lam * c)[:, None, :] / safe, torch.zeros_like(safe))
            coefficients = torch.cat([newton, marquardt], dim=1)  # (m, K, n) in the eigenbasis
            residual = c[:, None, :] + lam[:, None, :] * coefficients  # g + H delta
            predicted[r0:r1] = 0.5 * ((c * c).sum(1, keepdim=True) - (residual * residual).sum(2))
            step = coefficients @ vectors.transpose(1, 2)  # (m, K, n): sum_i coefficient_i v_i^T
            if u is not None:
                step = step @ u.transpose(1, 2)
            steps[r0:r1] = step
        return steps, predicted, curvature

    def spectrum(self, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hessian eigenvalues (B, n), ascending, and ``|H g|`` (B,)."""
        eigenvalues = x.new_empty((len(x), self.tangent_dim))
        hg_norm = x.new_empty(len(x))
        step = self.dense_runs_per_chunk
        for r0, r1 in ((r0, min(len(x), r0 + step)) for r0 in range(0, len(x), step)):
            h, u = self._hessians(x[r0:r1])
            eigenvalues[r0:r1] = torch.linalg.eigvalsh(h)
            g = grad[r0:r1]
            gt = g if u is None else (u.transpose(1, 2) @ g[:, :, None])[:, :, 0]
            hg_norm[r0:r1] = torch.linalg.vector_norm((h @ gt[:, :, None])[:, :, 0], dim=1)
        return eigenvalues, hg_norm

    def run(
        self, x: torch.Tensor, *, max_iter: int, grad_tol: float, flat_tol: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Iterate until every run has converged (``|g| <= grad_tol``), stalled (no trial step
        decreases phi enough) or settled on a gradient-flat point, or ``max_iter`` iterations;
        returns the final points, the iterations each run took and the largest ``max|lambda|`` met.

        Each iteration evaluates every trial step of :meth:`candidates` at once (one batched gradient
        evaluation, no host synchronisation per trial) and keeps those with ``phi(x + delta) <=
        phi(x) - 1e-4 * predicted`` (Armijo's condition on the decrease the linear model predicts). It
        takes the Newton step at the largest acceptable length (1: quadratic convergence near a
        nondegenerate critical point), else the damped (Levenberg-Marquardt) step with the lowest phi;
        with none acceptable the run has stalled. A run is settled on a gradient-flat point when
        ``|H g| <= flat_tol C |g|`` (C: the largest ``max|lambda|`` met along the run) and its last
        step decreased phi by less than 1%: phi is stationary and |g| is not going to 0 (at a
        degenerate critical point, where ``|H g| / |g|`` vanishes too, phi falls by a fixed factor at
        every step).
        """
        x = x.clone()
        _, grad = self.evaluate(x)
        iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        curvature = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(max_iter):
            norm = torch.linalg.vector_norm(grad, dim=1)
            active &= ~(norm <= grad_tol) & torch.isfinite(norm)
            if not bool(active.any()):
                break
            rows = active.nonzero()[:, 0]
            iterations[rows] += 1
            for c0, c1 in self._chunks(len(rows)):
                self._step(x, grad, rows[c0:c1], norm[rows[c0:c1]], active, curvature, flat_tol)
        return x, iterations, curvature

    def _step(
        self,
        x: torch.Tensor,
        grad: torch.Tensor,
        rows: torch.Tensor,
        norm: torch.Tensor,
        active: torch.Tensor,
        curvature: torch.Tensor,
        flat_tol: float,
    ) -> None:
        """One iteration of the runs ``rows``: ``x``, ``grad``, ``active`` and ``curvature`` are updated in place."""
        xa, ga = x[rows], grad[rows]
        phi = 0.5 * norm.square()
        steps, predicted, scale = self.candidates(xa, ga)
        curvature[rows] = torch.maximum(curvature[rows], scale)
        b, k, d = steps.shape
        trial = (xa[:, None, :] + steps).reshape(b * k, d)
        if self.constrained:
            trial = self.landscape.retract(trial)
        trial_grad = torch.cat([self.evaluate(trial[r0:r1])[1] for r0, r1 in self._row_chunks(b * k)])
        trial_phi = 0.5 * torch.linalg.vector_norm(trial_grad, dim=1).square().reshape(b, k)
        ok = (trial_phi <= phi[:, None] - ARMIJO * predicted) & (predicted > 0)  # False for NaN
        ok &= torch.isfinite(trial).all(1).reshape(b, k)
        best = self._select(ok, trial_phi)
        moved = ok.any(1)
        pick = torch.arange(b, device=x.device) * k + best
        x[rows[moved]] = trial[pick[moved]]
        grad[rows[moved]] = trial_grad[pick[moved]]
        active[rows[~moved]] = False  # stalled: no step decreases phi
        # settled on a gradient-flat point: phi stationary, and barely decreasing
        new_phi = trial_phi[torch.arange(b, device=x.device), best]
        slow = moved & (new_phi >= 0.99 * phi)
        if bool(slow.any()):
            slow_rows = rows[slow]
            hg, scale = self.flat_measure(x[slow_rows], grad[slow_rows], curvature[slow_rows])
            flat = hg <= flat_tol * scale * torch.linalg.vector_norm(grad[slow_rows], dim=1)
            active[slow_rows[flat]] = False

    def flat_measure(
        self, x: torch.Tensor, grad: torch.Tensor, curvature: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``|H g|`` and the curvature scale C (``max|lambda|`` here, or the run's ``curvature`` where
        larger) of the gradient-flat test, at the points x."""
        eigenvalues, hg = self.spectrum(x, grad)
        scale = eigenvalues.abs().amax(1) if eigenvalues.shape[1] else torch.zeros_like(hg)
        return hg, torch.maximum(scale, curvature)

    @staticmethod
    def _select(ok: torch.Tensor, trial_phi: torch.Tensor) -> torch.Tensor:
        """Per run, the trial step to take among the acceptable ones (``ok``, (b, K)): the Newton step
        at its largest acceptable length, else the Levenberg-Marquardt step with the lowest phi."""
        a, k = len(NEWTON_STEPS), ok.shape[1]
        positions = torch.arange(a, device=ok.device)
        newton_ok = ok[:, :a].any(1)
        first_newton = torch.where(ok[:, :a], positions, torch.full_like(positions, k)).amin(1)
        damped = torch.where(ok[:, a:], trial_phi[:, a:], torch.full_like(trial_phi[:, a:], math.inf)).argmin(1) + a
        return torch.where(newton_ok, first_newton, damped)

    def _row_chunks(self, rows: int) -> list[tuple[int, int]]:
        step = self.rows_per_call
        return [(r0, min(rows, r0 + step)) for r0 in range(0, rows, step)]


class _KrylovNewton(_Newton):
    """Newton's method on the (Riemannian) gradient by Krylov methods on Hessian-vector products, for
    dimensions beyond ``dense_max_dim``: each iteration's trial steps come from MINRES's Krylov space
    (:func:`landbench.krylov.minres_subspace`, :func:`landbench.krylov.subspace_steps`), the final
    spectrum from a full Lanczos tridiagonalisation (:func:`landbench.krylov.lanczos_spectrum`), and the
    gradient-flat test during the run from one product ``H g`` and the largest singular value of the
    Lanczos matrices met (a lower bound on ``max|lambda|``)."""

    def __init__(
        self, landscape: Landscape, rcond: float, max_steps: int | None, rtol: float, spectrum: str = "lanczos"
    ) -> None:
        super().__init__(landscape, rcond)
        self.max_steps = self.tangent_dim if max_steps is None else max(1, min(int(max_steps), self.tangent_dim))
        self.rtol = rtol
        d, k, n = self.dim, self.max_steps, self.tangent_dim
        budget = self.budget
        trials = len(NEWTON_STEPS) + len(DAMPING)
        # one chunk of runs: the Krylov basis (k x d), a few temporaries and the trial steps
        self.runs_per_chunk = max(1, budget // (3 * (k + 2) * d * 8 + 4 * trials * d * 8 + 6 * k * k * 8))
        self.spectrum_runs = max(1, budget // (2 * n * d * 8 + 4 * n * n * 8))
        # the final spectrum: dense where one run's Hessian (built from d products: the rows, the basis, the
        # products, the Hessian and eigvalsh's work space, about 6 d x d matrices) fits the chunk budget;
        # 10-25 times faster than d Lanczos steps with reorthogonalisation at d = 1000
        self.dense_spectrum = spectrum == "dense" or (spectrum == "auto" and 6 * d * d * 8 <= budget)

    def _operator(self, x: torch.Tensor):
        def op(rows: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            xr = x[rows]
            return torch.cat([self.landscape.hvp(xr[r0:r1], v[r0:r1]) for r0, r1 in self._row_chunks(len(rows))])

        return op

    def candidates(self, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`_Newton.candidates`, in the Krylov space of MINRES on ``H delta = -g``."""
        b = len(x)
        steps, predicted, curvature, newton_alpha, damping = _trial_buffers(x, self.dim)
        for r0, r1 in self._chunks(b):
            space = minres_subspace(self._operator(x[r0:r1]), grad[r0:r1], max_steps=self.max_steps, rtol=self.rtol)
            steps[r0:r1], predicted[r0:r1], curvature[r0:r1] = subspace_steps(space, newton_alpha, damping, self.rcond)
        return steps, predicted, curvature

    def spectrum(self, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hessian eigenvalues (B, n) by a full Lanczos tridiagonalisation (or densely, where chosen),
        and ``|H g|`` (B,)."""
        if self.dense_spectrum:
            return super().spectrum(x, grad)
        eigenvalues = x.new_empty((len(x), self.tangent_dim))
        hg_norm = x.new_empty(len(x))
        tangent = self.landscape.tangent
        step = self.spectrum_runs
        for r0 in range(0, len(x), step):
            r1 = min(len(x), r0 + step)
            op = self._operator(x[r0:r1])
            eigenvalues[r0:r1] = lanczos_spectrum(op, x[r0:r1], self.tangent_dim, tangent)
            rows = torch.arange(r1 - r0, device=x.device)
            hg_norm[r0:r1] = torch.linalg.vector_norm(op(rows, grad[r0:r1]), dim=1)
        return eigenvalues, hg_norm

    def flat_measure(
        self, x: torch.Tensor, grad: torch.Tensor, curvature: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``|H g|`` from one product, and the run's curvature scale (no spectrum during the run)."""
        rows = torch.arange(len(x), device=x.device)
        return torch.linalg.vector_norm(self._operator(x)(rows, grad), dim=1), curvature


# --- deduplication -----------------------------------------------------------------------------------


def same_point(points: torch.Tensor, x: torch.Tensor, tol: float, *, symmetric: bool = False) -> torch.Tensor:
    """Which rows of ``points`` (m, d) are the same point as ``x`` (d,): ``|p - x| <= tol max(1, |p|,
    |x|)`` (and, ``symmetric``, ``|p + x|`` too, for an even landscape). The one rule for "the same
    point" of the finder's deduplication and of the claims that count distinct minima."""
    dist = torch.linalg.vector_norm(points - x, dim=1)
    if symmetric:
        dist = torch.minimum(dist, torch.linalg.vector_norm(points + x, dim=1))
    scale = torch.clamp(torch.maximum(torch.linalg.vector_norm(points, dim=1), x.norm()), min=1.0)
    return dist <= tol * scale


def _unique(
    members: list[int],
    cpu: dict[str, torch.Tensor],
    kinds: list[str],
    index: torch.Tensor,
    nullity: torch.Tensor,
    tol: float,
    even: bool,
    point_of: torch.Tensor,
    owners: list[int] | None = None,
) -> list[FoundPoint]:
    """Greedy clustering of the runs ``members`` by distance (up to sign when ``even``): each run
    joins the first representative within ``tol * max(1, |x|, |rep|)``, else founds a new one; the
    representative is the group's run with the smallest gradient norm. Sorted by value; fills
    ``point_of``; a point's ``starts`` are ``owners`` of its runs (the start each row belongs to) where given."""
    x = cpu["x"]
    reps: list[int] = []
    groups: list[list[int]] = []
    for i in members:
        if reps:
            close = same_point(x[reps], x[i], tol, symmetric=even).nonzero()
            if len(close):
                groups[int(close[0, 0])].append(i)
                continue
        reps.append(i)
        groups.append([i])
    found = []
    for group in groups:
        best = min(group, key=lambda i: float(cpu["grad_norm"][i]))
        found.append(
            (
                group,
                FoundPoint(
                    x=x[best].clone(),
                    value=float(cpu["value"][best]),
                    grad_norm=float(cpu["grad_norm"][best]),
                    index=int(index[best]),
                    nullity=int(nullity[best]),
                    lambda_min=float(cpu["lambda_min"][best]),
                    lambda_max=float(cpu["lambda_max"][best]),
                    kind=kinds[best],
                    starts=tuple(group) if owners is None else tuple(owners[i] for i in group),
                ),
            )
        )
    found.sort(key=lambda item: (item[1].value, item[1].index))
    for position, (group, _) in enumerate(found):
        point_of[group] = position
    return [point for _, point in found]
