"""Real Gaussian phase retrieval: recover x* up to sign from n magnitudes ``y_i = (a_i.x*)^2``.

``f(x) = 1/(4n) sum_i ((a_i.x)^2 - y_i)^2`` with ``a_i ~ N(0, I_d)``. Its global minima are ``+-x*``
(value 0); the population loss is a quartic in closed form whose only critical points are the
origin (a local maximum), ``+-x*`` (the minima) and a sphere of saddles in the hyperplane orthogonal
to x*; with ``n >= C d log^3 d`` examples the finite-sample loss has, with high probability, no
spurious local minimum and only strict saddles (Sun, Qu and Wright 2018).

References: J. Sun, Q. Qu and J. Wright, "A geometric analysis of phase retrieval", Foundations of
Computational Mathematics 2018; E. J. Candes, X. Li and M. Soltanolkotabi, "Phase retrieval via
Wirtinger flow", IEEE Trans. Inf. Theory 2015; Y. Chen, Y. Chi, J. Fan and C. Ma, "Gradient descent
with random initialization: fast global convergence for nonconvex phase retrieval", Math. Prog. 2019.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from landbench.landscapes.base import (
    CriticalPoint,
    FamilyField,
    Footprint,
    Known,
    Landscape,
    describe_ends,
    squared_norm,
    where_runs_ended,
)
from landbench.landscapes.finite_sum import SAMPLES, FiniteSum, gather_rows
from landbench.spec import Param

#: A run has recovered x* (or -x*) when it ends within this distance of it (|x*| = 1).
RECOVERY_RADIUS = 0.1


class PhaseRetrieval(FiniteSum, Landscape):
    r"""``f(x) = 1/(4n) sum_i ((a_i.x)^2 - y_i)^2``, ``y_i = (a_i.x*)^2``, ``a_i ~ N(0, I_d)``.

    The data dimension and the search space are the same: ``self.dim = self.data_dim = dim``.

    * Instance: x* uniform on the unit sphere (generator of (dim,)); the inputs ``a_i`` from the
      generator of (dim, samples).
    * Gradient ``1/n sum_i ((a_i.x)^2 - y_i) (a_i.x) a_i``; Hessian ``H(x) = 1/n sum_i (3 (a_i.x)^2
      - y_i) a_i a_i^T``; ``hvp = A^T ((3 z^2 - y) * (A v)) / n`` with ``z = A x``.
    * Known: the global minima ``+-x*``, value 0 (``f* = 0``), Hessian ``2/n sum_i y_i a_i a_i^T``
      (positive definite for n >= d); the origin, a critical point with Hessian ``-1/n sum_i y_i
      a_i a_i^T``: a local maximum for ``n >= d`` (negative definite almost surely); for ``n < d``
      f is constant (``mean y^2 / 4``) on the null space of A and the origin is a degenerate
      critical point of index n. It is ``known.saddle`` (kind "maximum"): runs from a small start
      escape it, and the escape threshold is halfway from ``f(0)`` to 0.
    * Population (test) loss in closed form, ``E[((a.x)^2 - (a.x*)^2)^2]/4 = (3|x|^4 + 3|x*|^4 -
      2 |x|^2 |x*|^2 - 4 (x.x*)^2) / 4`` (``E (a.x)^4 = 3|x|^4``, ``E (a.x)^2 (a.y)^2 = |x|^2|y|^2
      + 2 (x.y)^2``). Its gradient ``3|x|^2 x - |x*|^2 x - 2 (x.x*) x*`` vanishes exactly at 0
      (value 3/4, Hessian ``-I - 2 x* x*^T``: a maximum), at ``+-x*`` (value 0, Hessian ``2I + 4
      x* x*^T``) and on the sphere ``x.x* = 0, |x|^2 = 1/3`` (value 2/3, Hessian ``6 x x^T - 2 x*
      x*^T``: eigenvalues 2, -2 and 0 (d - 2 times, along the sphere of saddles): index 1), for
      ``|x*| = 1``. These are in :meth:`facts` (``population_critical_points``); the finite-sample
      saddles near that sphere are not computed.
    * Record field ``recovered``: +1 or -1 when the final iterate is within 0.1 of ``+x*`` or
      ``-x*``, null otherwise (and for diverged runs).

    Start: ``x0 ~ N(0, I_d / d)``.
    """

    family = "phase_retrieval"
    params = (
        Param("dim", int, doc="data dimension d (= the length of the signal x)", low=1),
        SAMPLES,
    )
    formula = "f(x) = 1/(4n) sum_i ((a_i.x)^2 - y_i)^2,  y_i = (a_i.x*)^2,  a_i ~ N(0, I_d)"
    reference = "Sun, Qu and Wright 2018; Candes, Li and Soltanolkotabi 2015"
    start = "x0 ~ N(0, I_d / d)"
    test_loss_kind = "closed form"
    outcome_fields = (
        FamilyField(
            "recovered",
            "+1 or -1 when the final iterate is within 0.1 of +x* or -x* (null: neither, or diverged); "
            "summary: runs per sign",
            lambda records: where_runs_ended(records, "recovered"),
            describe_ends("recovered"),
        ),
    )
    samples: int

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        d, n = int(self.dim), int(self.samples)  # the bound parameters: dim is the data dimension
        return Footprint(
            instance=(n * (d + 1) + 4 * d) * dtype.itemsize,
            what=f"{n} examples of dimension {d}",
            per_run=3 * n * dtype.itemsize,
            host=(n * (d + 1) + 3 * d * d) * 8,
        )

    def _build(self) -> None:
        d, n = int(self.values["dim"]), int(self.samples)
        self.data_dim = d
        self.dim = d
        x_star = torch.randn(d, generator=self.instance_generator("signal", d), dtype=torch.float64)
        x_star = x_star / x_star.norm()
        a = torch.randn(n, d, generator=self.instance_generator("examples", d, n), dtype=torch.float64)
        y = (a @ x_star) ** 2
        self.x_star64, self.inputs64, self.targets64 = x_star, a, y
        self.x_star, self.inputs, self.targets = self._tensor(x_star), self._tensor(a), self._tensor(y)
        weighted = a.T @ (y[:, None] * a) / n  # 1/n sum_i y_i a_i a_i^T
        spectrum = torch.linalg.eigvalsh(weighted)
        minima = [
            CriticalPoint(
                kind="minimum",
                value=0.0,
                point=sign * x_star,
                lambda_max=float(2 * spectrum.max()),
                lambda_min=float(2 * spectrum.min()),
                trace=float(2 * spectrum.sum()),
                note=f"{'+' if sign > 0 else '-'}x*, a global minimum",
            )
            for sign in (1.0, -1.0)
        ]
        tol = 1e-9 * float(spectrum.max())
        index = int((spectrum > tol).sum())
        origin = CriticalPoint(
            kind="maximum" if index == d else "saddle",
            value=float((y * y).mean() / 4),
            point=torch.zeros(d, dtype=torch.float64),
            index=index,
            lambda_max=float(-spectrum.min()),
            lambda_min=float(-spectrum.max()),
            trace=float(-spectrum.sum()),
            note="the origin: a local maximum for n >= d; degenerate (f constant on null(A)) for n < d",
        )
        self.known = Known(f_star=0.0, minima=minima, saddle=origin)

    # --- the finite sum ------------------------------------------------------------------------

    def _parts(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z = a.x (B, m), y (.., m), inputs)`` for the examples of each row."""
        if index is None:
            a = self.inputs.to(x.dtype)
            return x @ a.T, self.targets.to(x.dtype)[None], a
        a = gather_rows(self.inputs.to(x.dtype), index)
        return torch.einsum("bmd,bd->bm", a, x), gather_rows(self.targets.to(x.dtype), index), a

    def example_losses(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        z, y, _ = self._parts(x, index)
        r = z * z - y
        return 0.25 * r * r

    def batch_loss_and_grad(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        z, y, a = self._parts(x, index)
        r = z * z - y
        m = z.shape[1]
        value = 0.25 * (r * r).mean(dim=1)
        weight = r * z
        grad = weight @ a / m if index is None else torch.einsum("bm,bmd->bd", weight, a) / m
        return value, grad

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``A^T ((3 z^2 - y) * (A v)) / n``, ``z = A x``."""
        a = self.inputs.to(x.dtype)
        z = x @ a.T
        return ((3 * z * z - self.targets.to(x.dtype)) * (v @ a.T)) @ a / self.samples

    def test_loss(self, x: torch.Tensor) -> torch.Tensor:
        """``(3|x|^4 + 3 - 2|x|^2 - 4 (x.x*)^2) / 4`` (|x*| = 1)."""
        norm2 = squared_norm(x)
        overlap = x @ self.x_star.to(x.dtype)
        return 0.25 * (3 * norm2 * norm2 + 3.0 - 2 * norm2 - 4 * overlap * overlap)

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.dim, generator=generator, dtype=torch.float64) / math.sqrt(self.dim)

    def record_fields(
        self, x: torch.Tensor, escape_steps: torch.Tensor | None, diverged: torch.Tensor
    ) -> dict[str, list[Any]]:
        """``recovered``: +1 / -1 when the final iterate is within 0.1 of +x* / -x*, else null."""
        with torch.no_grad():
            x64 = x.detach().double().cpu()
            star = self.x_star64
            plus = (x64 - star).norm(dim=1)
            minus = (x64 + star).norm(dim=1)
        gone = diverged.cpu().tolist()
        out: list[Any] = []
        for p, q, lost in zip(plus.tolist(), minus.tolist(), gone):
            out.append(None if lost else 1 if p <= RECOVERY_RADIUS else -1 if q <= RECOVERY_RADIUS else None)
        return {"recovered": out}

    def facts(self) -> dict[str, Any]:
        return {
            **self.finite_sum_facts(),
            "oversampling": self.samples / self.data_dim,
            "population_critical_points": {
                "origin": "maximum, value 3/4, Hessian -I - 2 x* x*^T",
                "+-x*": "minima, value 0, Hessian 2 I + 4 x* x*^T",
                "saddles": "the sphere x.x* = 0, |x|^2 = 1/3: value 2/3, Hessian eigenvalues 2, -2, 0 (d-2 times)",
            },
        }
