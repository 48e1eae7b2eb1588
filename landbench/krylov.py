"""Batched Krylov methods on Hessian-vector products: the Newton-MR step by MINRES, and the whole
spectrum (hence the exact index) by a full Lanczos tridiagonalisation, without a dense Hessian.

Both work on B symmetric operators at once (one Hessian per run), given as a function
``op(rows, v)`` that returns ``H_r v_r`` for the runs ``rows`` (a LongTensor) and vectors ``v``
(``(len(rows), d)``); runs stop separately (masked): the batch of products shrinks as they do. On a
constrained landscape the operator is the Riemannian Hessian and every vector (the right-hand side,
the random starts) lies in the tangent space, so the Krylov spaces do too.

**Lanczos** (Golub and Van Loan, "Matrix Computations", 4th ed. 2013, 10.1): from ``q_1 = b/|b|``,
``beta_{j+1} q_{j+1} = H q_j - alpha_j q_j - beta_j q_{j-1}``, ``alpha_j = q_j^T H q_j``, gives
``H Q_k = Q_{k+1} Tbar_k``, ``Tbar_k`` the (k+1) x k tridiagonal with diagonal ``alpha`` and off-diagonal
``beta``. Here every new vector is orthogonalised again against all earlier ones, twice (full
reorthogonalisation, "twice is enough": Q stays orthonormal to a few ulps, at O(B k d) work per step and
a (B, k, d) basis in memory), so the Ritz values do not repeat and the recurrences stay exact to
rounding.

**MINRES** (C. C. Paige and M. A. Saunders, "Solution of sparse indefinite systems of linear
equations", SIAM J. Numer. Anal. 12(4), 1975): the k-th iterate minimises ``|H p + g|`` over
``p = Q_k y`` in the Krylov space ``K_k(H, g)``; since ``H Q_k y + g = Q_{k+1} (Tbar_k y + beta_1 e_1)``,
``beta_1 = |g|``, that is the small least-squares problem ``min_y |beta_1 e_1 + Tbar_k y|``. Paige and
Saunders solve it by Givens rotations updated at each step; :func:`minres_subspace` runs those
rotations only for their by-products, the residual norm ``|r_k|`` and the lagged ``|H r_{k-1}|``
(for the stopping tests, as in SciPy's ``minres``), and once a run stops solves the small problem by
an SVD of ``Tbar_k``, taking its **minimum-length** solution: this is the MINRES-QLP iterate (S.-C. T.
Choi, C. C. Paige and M. A. Saunders, "MINRES-QLP: a Krylov subspace method for indefinite or singular
symmetric systems", SIAM J. Sci. Comput. 33(4), 2011), which on a singular incompatible system
(a gradient with a component in the Hessian's kernel, the gradient-flat case) tends to the
pseudo-inverse solution ``-H^+ g`` where plain MINRES need not. When the Krylov space is invariant
(``beta_{k+1} = 0``: the Lanczos breakdown) the subspace solution is the global one, so at the latest
after ``n`` steps (``n`` the tangent dimension) the step is exactly the dense path's ``-H^+ g`` up to
the pseudo-inverse's cutoff, which here applies to the singular values of ``Tbar_k``. The same SVD
``Tbar_k = U S V^T`` gives, at no extra product, the Levenberg-Marquardt steps ``min |beta_1 e_1 +
Tbar_k y|^2 + mu |y|^2``, ``y = -V S (S^2 + mu)^{-1} U^T beta_1 e_1``, i.e. ``-(H^2 + mu I)^{-1} H g``
restricted to the Krylov space, and the exact decrease of the linear model ``|g + H p|^2 / 2`` for
every trial step (Newton-MR: F. Roosta, Y. Liu, P. Xu and M. W. Mahoney, "Newton-MR: Newton's method
without smoothness or convexity", 2018).

Stopping (per run): ``|r_k| <= rtol |g|`` (the Newton system solved), or ``|H r_{k-1}| <= rtol |H|
|r_{k-1}|`` (a least-squares solution: the residual is orthogonal to the Hessian's range, Newton-MR's
inexactness test at ``theta -> 0``), or the breakdown ``beta_{k+1} <= 1e-12 |H|``, or ``max_steps``.
Cost: one batched Hessian-vector product and O(B k d) reorthogonalisation per step.

**The spectrum** (:func:`lanczos_spectrum`): ``n`` Lanczos steps with full reorthogonalisation from a
seeded random tangent vector give ``Q^T H Q = T_n``, Q an orthonormal basis of the whole tangent space,
so ``T_n`` has exactly H's eigenvalues (to ``O(eps |H|)``, the reorthogonalised recurrence's rounding)
and ``index = #{eigenvalues of T_n < -cut}`` is exact (Sylvester's law of inertia). Where the recurrence
breaks down (``beta_{j+1} <= 1e-10 |H|``: the start vector had no component along some eigenvectors, as
with repeated eigenvalues - the saddle family's Hessian has only a few distinct ones) it continues from a
new seeded random vector orthogonalised against Q, and sets that ``beta`` to zero (an error of at most
``1e-10 |H|`` in each eigenvalue). Cost: ``n`` Hessian-vector products per run, ``O(n^2 d)`` work for
the reorthogonalisation, an ``n x n`` tridiagonal eigenvalue problem, and a (B, n, d) basis in memory -
as much as building the dense Hessian from ``d`` products, but in a form that also holds for fewer
steps: with ``k < n`` steps, Cauchy's interlacing gives ``#(Ritz values < 0) <= index <= n - #(Ritz
values > 0)`` and extreme Ritz values that converge to ``lambda_min`` and ``lambda_max`` first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from landbench.rng import cpu_generator

#: ``op(rows, v)``: the products ``H_r v_r`` for the runs ``rows`` (LongTensor) and vectors ``v`` (m, d).
Operator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Lanczos breakdown in the solve, relative to the running estimate of |H|.
SOLVE_BREAKDOWN = 1e-12
#: Lanczos breakdown in the spectrum (where the recurrence restarts), relative to the running |H|.
SPECTRUM_BREAKDOWN = 1e-10


@dataclass
class Subspace:
    """The Krylov space of a solve, per run: ``basis`` (B, k, d) (rows beyond a run's ``steps`` are
    zero), ``tbar`` (B, k+1, k) (likewise zero beyond), ``beta1`` = |g| (B,), ``steps`` (B,)."""

    basis: torch.Tensor
    tbar: torch.Tensor
    beta1: torch.Tensor
    steps: torch.Tensor


def _orthogonalise(w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``w - Q Q^T w`` twice, for w (m, d) against the rows of q (m, j, d)."""
    for _ in range(2):
        w = w - (q.transpose(1, 2) @ (q @ w[:, :, None]))[:, :, 0]
    return w


class _Basis:
    """A (B, capacity, d) buffer of Lanczos vectors that doubles its capacity as needed."""

    def __init__(self, b: int, d: int, like: torch.Tensor, capacity: int) -> None:
        self.data = like.new_zeros((b, max(1, capacity), d))

    def ensure(self, columns: int) -> None:
        have = self.data.shape[1]
        if columns > have:
            grown = self.data.new_zeros((self.data.shape[0], max(columns, 2 * have), self.data.shape[2]))
            grown[:, :have] = self.data
            self.data = grown


def minres_subspace(op: Operator, g: torch.Tensor, *, max_steps: int, rtol: float) -> Subspace:
    """The Lanczos space of MINRES on ``H p = -g`` for each run (B, d), with the stopping tests of the
    module docstring; the step itself comes from :func:`subspace_steps`."""
    b, d = g.shape
    eps = torch.finfo(g.dtype).eps
    beta1 = torch.linalg.vector_norm(g, dim=1)
    basis = _Basis(b, d, g, min(max_steps, 32))
    basis.data[:, 0] = g / torch.where(beta1 > 0, beta1, torch.ones_like(beta1))[:, None]
    alpha = g.new_zeros((b, max_steps))
    beta = g.new_zeros((b, max_steps + 1))  # beta[:, j] couples q_{j-1} and q_j; beta[:, 0] = 0
    steps = torch.zeros(b, dtype=torch.long, device=g.device)
    active = beta1 > 0
    # Paige and Saunders' rotation state, per run
    cs = -torch.ones_like(beta1)
    sn = torch.zeros_like(beta1)
    dbar = torch.zeros_like(beta1)
    phibar = beta1.clone()
    hnorm = torch.zeros_like(beta1)
    for j in range(max_steps):
        rows = active.nonzero()[:, 0]
        if len(rows) == 0:
            break
        q = basis.data[rows, : j + 1]
        w = op(rows, q[:, j])
        hq = torch.linalg.vector_norm(w, dim=1)
        a = (q[:, j] * w).sum(1)
        w = w - a[:, None] * q[:, j]
        if j > 0:
            w = w - beta[rows, j][:, None] * q[:, j - 1]
        w = _orthogonalise(w, q)
        bnext = torch.linalg.vector_norm(w, dim=1)
        alpha[rows, j] = a
        beta[rows, j + 1] = bnext
        steps[rows] = j + 1
        hnorm[rows] = torch.maximum(hnorm[rows], hq)
        # MINRES rotations: |r_k| = phibar after the update, |H r_{k-1}| = phibar_{k-1} * |(gbar, dbar)|
        c, s, db, pb = cs[rows], sn[rows], dbar[rows], phibar[rows]
        gbar = s * db - c * a
        dnext = -c * bnext
        ar_norm = pb * torch.sqrt(gbar * gbar + dnext * dnext)
        gamma = torch.sqrt(gbar * gbar + bnext * bnext).clamp(min=eps)
        cs[rows], sn[rows], dbar[rows] = gbar / gamma, bnext / gamma, dnext
        phibar[rows] = (bnext / gamma) * pb
        scale = hnorm[rows]
        done = phibar[rows] <= rtol * beta1[rows]
        done |= ar_norm <= rtol * scale * pb
        done |= bnext <= SOLVE_BREAKDOWN * scale
        done |= ~torch.isfinite(bnext)
        if j + 1 >= max_steps:
            done |= True
        go = rows[~done]
        active[rows[done]] = False
        if len(go):
            basis.ensure(j + 2)
            keep = ~done
            basis.data[go, j + 1] = w[keep] / bnext[keep][:, None]
    k = int(steps.max()) if b else 0
    tbar = g.new_zeros((b, k + 1, k))
    idx = torch.arange(k, device=g.device)
    tbar[:, idx, idx] = alpha[:, :k]
    tbar[:, idx + 1, idx] = beta[:, 1 : k + 1]
    tbar[:, idx[:-1], idx[1:]] = beta[:, 1:k]
    return Subspace(basis=basis.data[:, :k], tbar=tbar, beta1=beta1, steps=steps)


def subspace_steps(
    space: Subspace, newton_lengths: torch.Tensor, damping: torch.Tensor, rcond: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The trial steps (B, K, d) of one Newton-MR iteration in the Krylov space, the decrease of the
    linear model ``|g + H p|^2 / 2`` each achieves (B, K), and ``max singular value of Tbar`` (B,), a
    lower bound on ``max|lambda|`` (the curvature scale).

    With ``Tbar = U S V^T`` and ``c = U^T beta_1 e_1``: the minimum-length least-squares Newton step
    ``y = -V S^+ c`` (singular values below ``rcond * max S`` dropped) at the lengths ``newton_lengths``,
    then the damped steps ``y = -V S c / (S^2 + mu)``, ``mu = (max S)^2 * damping``; with ``a_i`` the
    factor each step applies to ``c_i / S_i``, the decrease is ``sum_i c_i^2 (2 a_i - a_i^2) / 2``.
    """
    tbar, beta1 = space.tbar, space.beta1
    b, k = tbar.shape[0], tbar.shape[2]
    if k == 0:
        return (
            tbar.new_zeros((b, len(newton_lengths) + len(damping), space.basis.shape[2])),
            tbar.new_zeros((b, len(newton_lengths) + len(damping))),
            tbar.new_zeros(b),
        )
    u, s, vh = torch.linalg.svd(tbar, full_matrices=False)  # (b, k+1, k), (b, k), (b, k, k)
    c = beta1[:, None] * u[:, 0, :]  # U^T beta_1 e_1
    smax = s.amax(1, keepdim=True)
    keep = s > rcond * smax
    inverse = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
    newton_factor = keep.to(s.dtype)[:, None, :] * newton_lengths[None, :, None]  # a_i, (b, A, k)
    mu = (smax * smax) * damping[None, :]  # (b, J)
    denominator = s[:, None, :] ** 2 + mu[:, :, None]
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    damped_factor = torch.where(denominator > 0, s[:, None, :] ** 2 / safe, torch.zeros_like(safe))
    factor = torch.cat([newton_factor, damped_factor], dim=1)  # (b, K, k)
    predicted = 0.5 * ((c * c)[:, None, :] * (2 * factor - factor * factor)).sum(2)
    coefficients = -factor * (c * inverse)[:, None, :]  # in V's basis: y = V coefficients
    y = coefficients @ vh  # (b, K, k): rows are y^T = coefficients^T V^T
    steps = y @ space.basis  # (b, K, d)
    return steps, predicted, smax[:, 0]


def _random_tangent(
    x: torch.Tensor, draw: int, tangent: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The ``draw``-th seeded random direction (the same for every run: results do not depend on the
    batch), projected on each run's tangent space, (b, d)."""
    generator = cpu_generator(0, int(draw), "lanczos-spectrum")
    v = torch.randn(x.shape[1], generator=generator, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
    return tangent(x, v.expand_as(x).clone())


def lanczos_spectrum(
    op: Operator,
    x: torch.Tensor,
    n: int,
    tangent: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int | None = None,
) -> torch.Tensor:
    """The eigenvalues (B, k), ascending, of the Lanczos tridiagonal ``T_k`` of each run's operator on
    its n-dimensional tangent space, ``k = steps`` (default n: then they are H's eigenvalues, see the
    module docstring). ``x`` (B, d) are the points (for ``tangent``)."""
    b, d = x.shape
    k = n if steps is None else max(0, min(int(steps), n))
    if b == 0 or k == 0:
        return x.new_zeros((b, k))
    basis = x.new_zeros((b, k, d))
    alpha = x.new_zeros((b, k))
    beta = x.new_zeros((b, k + 1))
    hnorm = x.new_zeros(b)
    all_rows = torch.arange(b, device=x.device)
    start = _random_tangent(x, 0, tangent)
    basis[:, 0] = start / torch.linalg.vector_norm(start, dim=1, keepdim=True)
    for j in range(k):
        q = basis[:, : j + 1]
        w = op(all_rows, q[:, j])
        hnorm = torch.maximum(hnorm, torch.linalg.vector_norm(w, dim=1))
        a = (q[:, j] * w).sum(1)
        w = w - a[:, None] * q[:, j]
        if j > 0:
            w = w - beta[:, j][:, None] * q[:, j - 1]
        w = _orthogonalise(w, q)
        bnext = torch.linalg.vector_norm(w, dim=1)
        alpha[:, j] = a
        if j + 1 == k:
            break
        broken = bnext <= SPECTRUM_BREAKDOWN * hnorm
        beta[:, j + 1] = torch.where(broken, torch.zeros_like(bnext), bnext)
        if bool(broken.any()):
            # continue from fresh random directions orthogonal to the basis; try t at step j is the
            # draw j * 8 + t + 1 for every run, so a run's spectrum does not depend on its batch
            rows = broken.nonzero()[:, 0]
            q_rows = q if len(rows) == b else q[rows]
            fresh = w[rows].clone()
            need = torch.ones(len(rows), dtype=torch.bool, device=x.device)
            for t in range(8):
                v = _random_tangent(x[rows], j * 8 + t + 1, tangent)
                before = torch.linalg.vector_norm(v, dim=1)
                v = _orthogonalise(v, q_rows)
                norm = torch.linalg.vector_norm(v, dim=1)
                good = need & (norm > 1e-3 * before)
                fresh[good] = v[good] / norm[good][:, None]
                need &= ~good
                if not bool(need.any()):
                    break
            w[rows] = fresh
            bnext = torch.where(broken, torch.ones_like(bnext), bnext)
        basis[:, j + 1] = w / bnext[:, None]
    t = torch.diag_embed(alpha) + torch.diag_embed(beta[:, 1:k], 1) + torch.diag_embed(beta[:, 1:k], -1)
    return torch.linalg.eigvalsh(t)


def ritz_bounds(ritz: torch.Tensor, n: int, cut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on the number of eigenvalues below ``-cut`` (B,) of an n x n operator from k of its Ritz
    values (B, k) (Cauchy interlacing): at least the number of Ritz values below ``-cut``, at most n
    minus the number at or above it. Equal when k = n."""
    below = (ritz < -cut[:, None]).sum(1)
    above = (ritz >= -cut[:, None]).sum(1)
    return below, n - above


__all__ = ["Subspace", "lanczos_spectrum", "minres_subspace", "ritz_bounds", "subspace_steps"]
