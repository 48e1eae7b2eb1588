"""The spherical p-spin glass: a random homogeneous polynomial on the sphere ``|s|^2 = N``.

Convention of A. Auffinger, G. Ben Arous and J. Cerny, "Random matrices and complexity of spin
glasses", Comm. Pure Appl. Math. 66 (2013) (also A. Choromanska et al., "The loss surfaces of
multilayer networks", AISTATS 2015): ``H(s) = N^{-(p-1)/2} sum over all ordered tuples
J[i1..ip] s[i1] ... s[ip]``, ``J`` iid N(0, 1), so ``E[H(s) H(s')] = N q^p`` with ``q = s.s'/N``.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterator
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import (
    CriticalPoint,
    Footprint,
    Known,
    Landscape,
    available_memory,
    squared_norm,
    uniform_sphere,
)
from landbench.rng import counter_normal, derive_seed
from landbench.spec import Param

DEGREES = (2, 3, 4)
#: Ground-state energies per spin E_0(p) as N -> infinity (Crisanti and Sommers 1992; p = 2: -sqrt 2).
GROUND_STATE = {2: -math.sqrt(2.0), 3: -1.65700, 4: -1.79409}
#: Up to this N, pure p = 2 gets its exact finite-N ground state (a float64 eigendecomposition).
P2_EXACT_MAX_DIM = 2048
#: Couplings are generated (and, in blocks mode, contracted) about this many at a time.
BLOCK_ELEMENTS = 1 << 20
#: storage="auto" stores the couplings densely when they take at most this share of free memory.
DENSE_MEMORY_FRACTION = 0.5


def threshold_energy(xi: dict[int, float]) -> float:
    r"""The threshold energy per spin of the mixture ``xi(q) = sum_p xi_p q^p`` (``xi_p = c_p^2``):

    ``E_th = -(xi xi'' - xi xi' + xi'^2) / (xi' sqrt(xi''))`` at q = 1, the energy below which the
    Riemannian Hessian of the typical critical points has no negative eigenvalue (its semicircle
    bulk ``sqrt(xi'') W - R``, ``W`` on [-2, 2], touches zero). For a pure p-spin (``xi = q^p``)
    it is ``-2 sqrt((p-1)/p)``: -1.41421, -1.63299, -1.73205 for p = 2, 3, 4. It scales like
    ``|c|`` when every coefficient is multiplied by c.

    Reference: A. Auffinger and G. Ben Arous, "Complexity of random smooth functions on the
    high-dimensional sphere", Ann. Probab. 41 (2013) (their ``E_infinity``, with xi(1) = 1).
    """
    scale = max(xi.values())  # E_th(k xi) = sqrt(k) E_th(xi): normalise, so huge coefficients cannot overflow
    x0 = sum(c / scale for c in xi.values())
    x1 = sum(p * c / scale for p, c in xi.items())
    x2 = sum(p * (p - 1) * c / scale for p, c in xi.items())
    return -math.sqrt(scale) * (x0 * x2 - x0 * x1 + x1 * x1) / (x1 * math.sqrt(x2))


def step_size(dim: int, xi: dict[int, float]) -> float:
    """A stable, fast gradient-descent step for ``H/N``: about ``1/lambda_max`` of the Riemannian Hessian
    near the threshold, ``N / (2 sqrt(xi''(1)) + (xi'(1)/xi(1)) |E_th|)`` (0.102 N for the pure 3-spin;
    ``xi'/xi E`` is the expected radial derivative given the energy E)."""
    x0 = sum(xi.values())
    x1 = sum(p * c for p, c in xi.items())
    x2 = sum(p * (p - 1) * c for p, c in xi.items())
    return dim / (2 * math.sqrt(x2) + (x1 / x0) * abs(threshold_energy(xi)))


def _count(n: int) -> str:
    """A count in words: ``6.25e+14``, or the integer itself below a million."""
    return str(n) if n < 10**6 else f"{n:.3g}"


def _contract_last(t: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
    """``out[m, b] = sum_n t[m, n, b] v[b, n]``: ``t`` viewed as ``(M, N, B)``, ``vt`` = ``v^T`` ``(N, B)``."""
    n, batch = vt.shape
    return (t.view(-1, n, batch) * vt).sum(1)


class PSpin(Landscape):
    r"""Spherical p-spin glass, energy per spin: ``f(x) = H(x)/N``, ``|x|^2 = N``.

    ``H(s) = sum_p c_p N^{-(p-1)/2} sum_{i1..ip} J^(p)[i1..ip] s[i1]..s[ip]`` over all ordered
    tuples, ``J^(p)`` iid N(0, 1) and independent across p; pure p-spin: ``c_p = 1`` for one p.
    ``E[H(s)H(s')] = N xi(q)``, ``xi(q) = sum_p c_p^2 q^p``, ``q = s.s'/N``.

    **The sphere.** ``constrained = True``: the engine calls :meth:`project_` (``x <- sqrt(N) x/|x|``)
    after every optimizer step. :meth:`loss_and_grad` returns the loss ``H(x)/N`` at x as given and
    the *Riemannian* gradient ``P g``, ``g = grad(H/N)`` the Euclidean gradient and
    ``P = I - x x^T/|x|^2`` the projection onto the tangent space at x. The radial part it drops is
    ``(x.g/|x|^2) x`` with ``x.g = sum_p p H_p(x)/N`` (Euler: H_p is homogeneous of degree p), i.e.
    ``p f(x) x/N`` on the sphere for a pure p-spin: it would only rescale x, which the projection
    undoes. So a step moves along the sphere and the projection corrects the second-order drift
    ``|x - lr P g|^2 = N + lr^2 |P g|^2``. :meth:`hvp` is the Riemannian Hessian on tangent vectors,
    ``Hess_R v = P (grad^2 f) P v - (x.g/|x|^2) P v`` (0 along x). The curvature metrics probe it
    with tangent directions (see landbench.metrics.curvature).

    **Known values.** ``f_star``: pure p = 2, the exact finite-N ground state ``lambda_min(M)``,
    ``M = (J + J^T)/(2 sqrt N)`` (N <= 2048; beyond, its N -> infinity limit -sqrt 2); the minima are
    ``+-sqrt(N) v_min`` with Riemannian Hessian eigenvalues ``2 (lambda_k - lambda_min)/N``,
    k = 2..N. Pure p = 3, 4: the ground state ``E_0(p)`` = -1.65700, -1.79409 as N -> infinity, a
    reference only: finite-N ground states fluctuate about it, so ``loss_gap`` can be slightly
    negative. Mixtures: None. :attr:`ground_state_limit` is ``E_0(p)`` (None for a mixture) and
    :attr:`threshold_energy` is ``E_th`` (see :func:`threshold_energy`).

    **Dynamics.** Gradient descent from a random start approaches the threshold E_th, not E_0
    (Cugliandolo and Kurchan 1993), with large finite-N effects: projected GD on p = 3 ends near
    -1.56 at N = 100 and -1.59 at N = 200 (measured here with ``sgd(lr=0.1 * N)`` over 4 instances
    x 16 runs: -1.557 +- 0.006 at N = 100, -1.581 +- 0.003 at N = 200, run spreads 0.045 and 0.020).
    The gradient of ``H/N`` has norm O(1/sqrt N) (O(1/N) per coordinate) and the Riemannian
    Hessian's eigenvalues are O(1/N): ``(sqrt(xi''(1)) W - xi'(1) E)/N`` with W in [-2, 2] at energy
    E for a pure p-spin, at most 9.6/N for p = 3 near E = -1.56. So a plain GD step size scales like
    N: ``sgd(lr=0.1 * N)`` (lr = 10 at N = 100) is stable and converges in a few hundred steps;
    above 2/lambda_max, about 0.2 N, GD stops converging (at lr = 0.3 N it ends near -1.1).

    **Storage.** ``dense`` stores the symmetrised couplings ``A_p = c_p N^{-(p+1)/2}/p! S_p``,
    ``S_p = sum of J^(p) over the p! index permutations``: ``f = sum_p A_p[x, .., x]``,
    ``g = sum_p p A_p[., x, .., x]``, ``grad^2 f v = sum_p p (p-1) A_p[., v, x, .., x]``: one matmul
    of cost ``B N^p`` per evaluation, bound by reading ``A_p`` once. Memory: ``N^p`` elements of the
    dtype (4 bytes in float32), built in place block by block (no second copy; about 60 MB of
    generator temporaries on top). Largest N in float32 for p = 3 / 4: 1817 / 278 in 24 GB and
    2714 / 376 in 80 GB (all of it); ``auto`` takes at most half: 1442 / 234 and 2154 / 316. An
    evaluation of B runs also needs about ``2 B N^(p-1)`` numbers of work space (the first
    contraction's output): 175 MiB at N = 300, p = 3, B = 256; 11 GB at N = 278, p = 4, B = 64,
    so the batch must shrink as N^(p-1) grows.
    ``blocks`` regenerates each block of rows of ``J^(p)`` (rows ``i1`` in ``[r0, r1)``, about
    2**20 couplings) at every evaluation and contracts it with the p positional contractions (a
    hand-written reverse pass for the gradient, its derivative along v for the HVP): memory about
    2**20 couplings plus ``B N^{p-2}`` per row of a block, time dominated by generating the
    ``N^p`` couplings every evaluation (about 40-60 ns each on a 2-core CPU, far more than the matmul).
    ``auto`` is dense when the couplings take at most half the free memory of the device.

    Measured on a 2-core CPU, float32, B = 8, per ``loss_and_grad`` (``hvp`` costs the same):
    p = 3 dense 0.7 ms (N = 100), 4.3 ms (200), 20 ms (400); p = 4 dense 43 ms (N = 100);
    p = 3 blocks 39 ms (N = 100). Building the dense couplings: 0.08 s (p = 3, N = 100),
    2.8 s (p = 3, N = 400), 4.6 s (p = 4, N = 100); pure p = 2 adds an eigendecomposition (1.4 s at
    N = 2048). The couplings come from :func:`landbench.rng.counter_normal`, exact on every device,
    and are generated on the device itself: the instance is the same on the CPU and the GPU and in
    both storages (the stored ``A_p`` is bit-identical too; evaluations differ by rounding).

    References: A. Crisanti and H.-J. Sommers, Z. Phys. B 87 (1992) 341 (ground states);
    L. F. Cugliandolo and J. Kurchan, Phys. Rev. Lett. 71 (1993) 173 (dynamics);
    A. Auffinger, G. Ben Arous and J. Cerny, Comm. Pure Appl. Math. 66 (2013) 165 (convention).
    """

    family = "pspin"
    params = (
        Param("dim", int, doc="number of spins N (the iterate lives on the sphere |x|^2 = N)", low=2),
        Param("p", int, 3, "degree of the pure p-spin interaction (replaced by mix when given)", low=2, high=4),
        Param("mix", dict, {}, "mixture {p: c_p} with p in 2, 3, 4 (H = sum_p c_p H_p); {} for the pure p-spin"),
        Param(
            "storage",
            str,
            "auto",
            "dense couplings, blocks regenerated at every evaluation, or dense when they fit in half the free memory",
            choices=("auto", "dense", "blocks"),
        ),
    )
    formula = "f(s) = H(s)/N, H(s) = sum_p c_p N^{-(p-1)/2} sum_{i1..ip} J[i1..ip] s_i1..s_ip, |s|^2 = N, J iid N(0,1)"
    reference = "Auffinger, Ben Arous and Cerny 2013; Crisanti and Sommers 1992; Cugliandolo and Kurchan 1993"
    start = "uniform on the sphere |x|^2 = N"
    constrained = True

    p: int
    mix: dict
    storage: str

    def _check(self) -> None:
        if not self.mix:
            return
        if self.p != 3:
            raise SpecError(f"pspin: give either p or mix (mix replaces p), got p={self.p} and mix={self.mix!r}")
        for degree, coefficient in self.mix.items():
            if isinstance(degree, bool) or degree not in DEGREES:
                raise SpecError(f"pspin: the keys of mix must be degrees 2, 3 or 4, got {degree!r} in {self.mix!r}")
            if isinstance(coefficient, bool) or not isinstance(coefficient, numbers.Real):
                raise SpecError(f"pspin: mix coefficients must be numbers, got {coefficient!r} for p={degree}")
            if not (math.isfinite(coefficient) and abs(coefficient) <= 1e100):
                raise SpecError(
                    f"pspin: mix coefficients must be finite numbers of size at most 1e100, "
                    f"got {coefficient!r} for p={degree}"
                )
        if all(c == 0 for c in self.mix.values()):
            raise SpecError(f"pspin: at least one mix coefficient must be non-zero, got {self.mix!r}")
        # One canonical form, in place (the spec string is made from this very dict): sorted degrees, floats.
        canonical = {int(d): float(self.mix[d]) for d in sorted(self.mix)}
        self.mix.clear()
        self.mix.update(canonical)

    # --- the instance -------------------------------------------------------------------------------

    def _build(self) -> None:
        n = self.dim
        self.coefficients = {d: c for d, c in (self.mix or {self.p: 1.0}).items() if c != 0}
        self.xi = {d: c * c for d, c in self.coefficients.items()}
        self.threshold_energy = threshold_energy(self.xi)
        # A single degree (pure p, or a mix of one p with coefficient c) has the ground state |c| E_0(p).
        single = next(iter(self.coefficients)) if len(self.coefficients) == 1 else None
        scale = abs(self.coefficients[single]) if single is not None else 0.0
        self.ground_state_limit = None if single is None else scale * GROUND_STATE[single]
        self.dense = self._use_dense()
        for degree in DEGREES:
            setattr(self, f"symmetric{degree}", self._symmetrised(degree) if self.dense else None)
        if single is None:
            self.known = Known()
        elif single == 2 and n <= P2_EXACT_MAX_DIM:
            self.known = self._p2_ground_state(self.coefficients[2])
        else:
            self.known = Known(f_star=self.ground_state_limit)

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        """Dense: the symmetrised couplings (``N^p`` numbers per degree) and a block being drawn; an
        evaluation holds ``(N^{p-1}, B)`` partial contractions. Blocks: one block of couplings at a
        time (drawn in float64, cast to ``dtype``), ``N^p`` numbers regenerated per evaluation.
        Pure p = 2 up to :data:`P2_EXACT_MAX_DIM` adds the host's eigendecomposition."""
        n, size = self.dim, dtype.itemsize
        degrees = sorted(self.mix) if self.mix else [self.p]
        couplings = sum(n**d for d in degrees)
        block = max(max(BLOCK_ELEMENTS, n ** (d - 1)) for d in degrees)
        host = 4 * n * n * 8 if degrees == [2] and n <= P2_EXACT_MAX_DIM else 0
        host += block * 16
        dense = self.storage == "dense" or (self.storage == "auto" and couplings * size <= DENSE_MEMORY_FRACTION * free)
        if dense:
            return Footprint(
                instance=couplings * size + block * (16 + 2 * size),
                what=f"its dense couplings ({_count(couplings)} numbers)",
                per_run=2 * max(n ** (d - 1) for d in degrees) * size,
                host=host,
            )
        return Footprint(
            instance=block * (16 + 2 * size),
            what="its blocks of couplings",
            per_run=4 * (block // n) * size,
            host=host,
            streamed=couplings,
        )

    def _use_dense(self) -> bool:
        """Whether to store the couplings (see the class docstring), or stream them in blocks."""
        if self.storage == "blocks":
            return False
        size = sum(self.dim**d for d in self.coefficients) * self.dtype.itemsize
        free = available_memory(self.device)
        if self.storage == "dense" and size > free:
            raise SpecError(
                f"{self.spec}: dense couplings need {size / 2**30:.3g} GiB but {self.device} has "
                f"{free / 2**30:.3g} GiB free; use storage='blocks' or a smaller dim"
            )
        return self.storage == "dense" or size <= DENSE_MEMORY_FRACTION * free

    def _key(self, degree: int) -> int:
        """The stream of ``J^(p)``: a function of (instance seed, N, p) only (not of the coefficients)."""
        return derive_seed(self.family, self.seed, self.dim, degree, "couplings")

    def couplings(self, degree: int) -> torch.Tensor:
        """The raw couplings ``J^(p)`` (N, ..., N) as float64 on the CPU, regenerated from their stream
        (for tests and analysis; the landscape itself never holds them)."""
        return counter_normal(self._key(degree), 0, self.dim**degree).view((self.dim,) * degree)

    def _row_blocks(self, degree: int) -> Iterator[tuple[int, int]]:
        """Row ranges ``[r0, r1)`` of the first index, about :data:`BLOCK_ELEMENTS` couplings each."""
        rows = max(1, BLOCK_ELEMENTS // self.dim ** (degree - 1))
        for r0 in range(0, self.dim, rows):
            yield r0, min(self.dim, r0 + rows)

    def _block(self, degree: int, r0: int, r1: int, scale: float) -> torch.Tensor:
        """Rows ``[r0, r1)`` of ``scale * J^(p)`` as ``(r1 - r0, N^{p-1})`` in the landscape's dtype."""
        width = self.dim ** (degree - 1)
        values = counter_normal(self._key(degree), r0 * width, (r1 - r0) * width, self.device)
        return values.mul_(scale).to(self.dtype).view(r1 - r0, width)

    def _scale(self, degree: int) -> float:
        """``c_p N^{-(p-1)/2} / N``: the couplings' factor in the loss ``H/N``."""
        return self.coefficients[degree] * self.dim ** (-(degree + 1) / 2)

    def _symmetrised(self, degree: int) -> torch.Tensor | None:
        """``A_p = scale/p! * sum over index permutations of J^(p)``, built in place block by block:
        a block of rows ``i1`` is first summed over the (p-1)! orders of its other indices, then
        added with its row index at each of the p positions (p! terms in all)."""
        if degree not in self.coefficients:
            return None
        n = self.dim
        out = torch.zeros((n,) * degree, dtype=self.dtype, device=self.device)
        scale = self._scale(degree) / math.factorial(degree)
        for r0, r1 in self._row_blocks(degree):
            block = self._block(degree, r0, r1, scale).view((r1 - r0,) + (n,) * (degree - 1))
            local = torch.zeros_like(block)
            for order in itertools.permutations(range(1, degree)):
                local += block.permute(0, *order)
            for position in range(degree):
                others = [axis for axis in range(degree) if axis != position]
                out.permute(position, *others)[r0:r1].add_(local)
        return out

    def _p2_ground_state(self, coefficient: float) -> Known:
        """Exact ground state of the 2-spin ``c H_2``: ``lambda_min(c M)``, minima ``+-sqrt(N) v_min``."""
        n = self.dim
        j = self.couplings(2)
        eigenvalues, vectors = torch.linalg.eigh(coefficient * (j + j.T) / (2 * math.sqrt(n)))
        gaps = 2 * (eigenvalues[1:] - eigenvalues[0]) / n
        minimum = CriticalPoint(
            kind="minimum",
            value=float(eigenvalues[0]),
            point=math.sqrt(n) * vectors[:, 0],
            index=0,
            lambda_max=float(gaps[-1]),
            lambda_min=float(gaps[0]),
            trace=float(gaps.sum()),
            note="and its mirror image -x; Riemannian Hessian eigenvalues 2 (lambda_k - lambda_min)/N, k = 2..N",
        )
        return Known(f_star=minimum.value, minima=[minimum])

    # --- evaluation ---------------------------------------------------------------------------------

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """``H(x)/N`` at x as given (H is a homogeneous polynomial, defined off the sphere too)."""
        if not self.dense:
            return self._streamed(x, None, need_grad=False)[0]
        value = x.new_zeros(x.shape[0])
        for degree in self.coefficients:
            value = value + (self._dense_down(degree, x.T, 1).T * x).sum(1)
        return value

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``H(x)/N`` and the Riemannian gradient ``P g`` (see the class docstring)."""
        if self.dense:
            value = x.new_zeros(x.shape[0])
            grad = torch.zeros_like(x)
            for degree in self.coefficients:
                t = self._dense_down(degree, x.T, 1).T
                value += (t * x).sum(1)
                grad.add_(t, alpha=degree)
        else:
            value, grad, _ = self._streamed(x, None, need_grad=True)
        return value, self.tangent(x, grad)

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``Hess_R v = P (grad^2 f) P v - (x.g/|x|^2) P v``, the Riemannian Hessian on tangent vectors."""
        v = self.tangent(x, v)
        if self.dense:
            grad, curvature = torch.zeros_like(x), torch.zeros_like(x)
            for degree in self.coefficients:
                w, u = self._dense_pair(degree, x.T, v.T)
                grad.add_(w.T, alpha=degree)
                curvature.add_(u.T, alpha=degree * (degree - 1))
        else:
            _, grad, curvature = self._streamed(x, v, need_grad=True)
        radial = (x * grad).sum(1, keepdim=True) / squared_norm(x)[:, None]
        return self.tangent(x, curvature) - radial * v

    def _dense_down(self, degree: int, xt: torch.Tensor, free: int) -> torch.Tensor:
        """``A_p`` contracted with x on all but ``free`` (< p) indices: ``(N^free, B)``."""
        a = getattr(self, f"symmetric{degree}")
        t = a.view(-1, self.dim) @ xt
        for _ in range(degree - 1 - free):
            t = _contract_last(t, xt)
        return t

    def _dense_pair(self, degree: int, xt: torch.Tensor, vt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``A_p[., x, x, ..]`` and ``A_p[., v, x, ..]``, each ``(N, B)``."""
        if degree == 2:
            a = self.symmetric2
            return a @ xt, a @ vt
        t = self._dense_down(degree, xt, 2)
        return _contract_last(t, xt), _contract_last(t, vt)

    def _streamed(
        self, x: torch.Tensor, v: torch.Tensor | None, need_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Blocks mode: the loss, the Euclidean gradient and (with v) ``grad^2 f v``, accumulated over
        the blocks of rows of every ``J^(p)``."""
        xt, vt = x.T, (v.T if v is not None else None)
        value = x.new_zeros(x.shape[0])
        grad_t = torch.zeros_like(xt) if need_grad else None
        curvature_t = torch.zeros_like(xt) if v is not None else None
        for degree in self.coefficients:
            scale = self._scale(degree)
            for r0, r1 in self._row_blocks(degree):
                block = self._block(degree, r0, r1, scale).view(-1, self.dim)
                value += _block_terms(block, r0, r1, xt, vt, grad_t, curvature_t)
        grad = grad_t.T.contiguous() if grad_t is not None else None
        curvature = curvature_t.T.contiguous() if curvature_t is not None else None
        return value, grad, curvature

    # --- the sphere -----------------------------------------------------------------------------------

    def project_(self, x: torch.Tensor) -> None:
        """``x <- sqrt(N) x/|x|`` per row, in place."""
        x.mul_(math.sqrt(self.dim) / torch.linalg.vector_norm(x, dim=1, keepdim=True))

    def retract(self, x: torch.Tensor) -> torch.Tensor:
        """``sqrt(N) x/|x|`` per row."""
        return x * (math.sqrt(self.dim) / torch.linalg.vector_norm(x, dim=1, keepdim=True))

    def tangent(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``v - (x.v/|x|^2) x`` per row: the part of v tangent to the sphere at x."""
        return v - ((x * v).sum(1) / squared_norm(x))[:, None] * x

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return uniform_sphere(generator, self.dim, math.sqrt(self.dim))

    def facts(self) -> dict[str, Any]:
        """The threshold energy, the ground-state limit, the storage in use and the natural step size."""
        couplings = sum(self.dim**d for d in self.coefficients)
        return {
            "threshold_energy": self.threshold_energy,
            "ground_state_limit": self.ground_state_limit,
            "storage_used": "dense" if self.dense else "blocks",
            "step_size": f"sgd(lr={step_size(self.dim, self.xi):.3g}) converges in a few hundred steps",
            "cost": (
                f"{couplings:.3g} couplings ({couplings * self.dtype.itemsize / 2**20:.3g} MiB); dense evaluation "
                f"reads them once and needs about 2 B N^(p-1) numbers of work space for B runs"
                if self.dense
                else f"blocks: regenerates {couplings:.3g} couplings at every evaluation (about 50 ns each on a CPU)"
            ),
        }


def _block_terms(
    block: torch.Tensor,
    r0: int,
    r1: int,
    xt: torch.Tensor,
    vt: torch.Tensor | None,
    grad_t: torch.Tensor | None,
    curvature_t: torch.Tensor | None,
) -> torch.Tensor:
    """One block of rows ``[r0, r1)`` of a coupling tensor ``K`` (scaled ``J^(p)``), as
    ``(R N^{p-2}, N)``: returns its share of ``K(x, .., x)`` (B,) and adds its share of the gradient
    ``sum over positions k of K with index k free`` into ``grad_t`` (N, B) and, with ``vt``, its
    derivative along v (``grad^2 K(x..x) v``) into ``curvature_t``, all transposed (batch last).

    Forward: ``t_{p-1} = K x`` (last index), then ``t_{k-1} = t_k . x`` down to ``t_1`` (R, B), and the
    value ``sum_r t_1[r] x[r0 + r]``. Backward (the p positions): position 1 is ``t_1``; position
    k + 1 is ``sum a_k t_{k+1}`` with the adjoint ``a_1 = x[r0:r1]``, ``a_{k+1} = a_k (x) x``; the
    last position is ``K^T a_{p-1}``. The curvature is the same pass differentiated along v.
    """
    n, batch = xt.shape
    tangent = vt is not None
    first = block @ (torch.cat([xt, vt], 1) if tangent else xt)
    ts, dts = [first[:, :batch]], [first[:, batch:]]
    while ts[-1].shape[0] > r1 - r0:
        t = ts[-1]
        ts.append(_contract_last(t, xt))
        if tangent:
            dts.append(_contract_last(dts[-1], xt) + _contract_last(t, vt))
    a = xt[r0:r1]
    value = (ts[-1] * a).sum(0)
    if grad_t is None:
        return value
    grad_t[r0:r1] += ts[-1]
    da = vt[r0:r1] if tangent else None
    if tangent:
        curvature_t[r0:r1] += dts[-1]
    for k in range(len(ts) - 2, -1, -1):
        t, av = ts[k].view(-1, n, batch), a.view(-1, 1, batch)
        grad_t += (t * av).sum(0)
        if tangent:
            dav = da.view(-1, 1, batch)
            curvature_t += (t * dav + dts[k].view(-1, n, batch) * av).sum(0)
            da = (dav * xt + av * vt).view(-1, batch)
        a = (av * xt).view(-1, batch)
    back = block.T @ (torch.cat([a, da], 1) if tangent else a)
    grad_t += back[:, :batch]
    if tangent:
        curvature_t += back[:, batch:]
    return value
