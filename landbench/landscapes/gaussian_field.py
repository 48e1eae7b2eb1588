"""A stationary Gaussian random field with squared-exponential covariance, by random Fourier features."""

from __future__ import annotations

import math
from typing import Any

import torch

from landbench.landscapes.base import DIM, FamilyField, Footprint, Landscape, squared_norm
from landbench.outcomes import median_of
from landbench.spec import Param

#: Elements of the frequency matrix drawn at a time (in float64, on the CPU): chunks of about 8 MB.
_DRAW_ELEMENTS = 1 << 20


def default_features(dim: int) -> int:
    """The automatic number of random features, ``M = max(256, 16 dim)``.

    The Hessian of the feature sum has rank at most 2M, and its law given the value (a shifted GOE,
    see :class:`GaussianField`) holds only for ``M >> d``. Measured (d = 10 and 30, 60 instances
    x 60 random points) against an exact finite-d GOE simulation of that law, the binned mean
    fraction of negative eigenvalues deviates by at most 0.03-0.06 at M = d..2d, 0.016-0.038 at
    M = 4d, and lies at the statistical noise floor (0.003-0.02) from M = 16d on.
    """
    return max(256, 16 * dim)


class GaussianField(Landscape):
    r"""``f(x) = s/sqrt(M) sum_m [a_m cos(w_m.x) + b_m sin(w_m.x)] + confinement/2 |x|^2``.

    A stationary Gaussian random field with covariance ``s^2 exp(-|x - y|^2 / (2 l^2))``
    (s = ``amplitude``, l = ``length_scale``) by random Fourier features (Rahimi and Recht 2007) in
    the cos + sin form, which is exactly Gaussian given the frequencies: ``w_m ~ N(0, I/l^2)``,
    ``a_m, b_m ~ N(0, 1)``, so ``f(x)`` is ``N(0, s^2)`` and ``E f(x) f(y) = (s^2/M) sum_m
    cos(w_m.(x - y))``, whose expectation over the frequencies is the squared exponential.
    Evaluated as ``s/sqrt(M) sum_m r_m cos(w_m.x - phi_m)`` with ``r_m = |(a_m, b_m)|`` and
    ``phi_m = atan2(b_m, a_m)`` (the same function, one trigonometric pass fewer); with
    ``theta = x W^T - phi`` (W the M x d frequency matrix):

    * gradient ``-s/sqrt(M) (r * sin theta) W + confinement x``;
    * Hessian-vector product ``-s/sqrt(M) ((r * cos theta) * (v W^T)) W + confinement v``.

    The index law (Bray and Dean 2007; the field part): given ``f(x) = u``, the Hessian is
    ``-(u/l^2) I + (s/l^2) G``, G a GOE matrix (off-diagonal variance 1, diagonal variance 2), so
    its spectrum is a semicircle centred at ``-u/l^2`` of radius ``2 s sqrt(d)/l^2`` and the
    fraction of negative eigenvalues is ``F((u/s)/(2 sqrt d))``, ``F(t) = 1/2 + (t sqrt(1 - t^2) +
    arcsin t)/pi`` on [-1, 1]: the typical Hessian is positive definite only below the edge
    ``u = -2 s sqrt d``. Minima, whose Hessians are atypically stable, can lie above it at finite d
    (``field_value`` in the records), and which ones gradient descent finds depends on its step:
    it cannot stay where ``lambda_max > 2/lr``. This needs ``M >> d`` (the
    Hessian has rank at most 2M); see :func:`default_features` for the automatic ``M``. The
    confinement adds ``c I`` to the Hessian: the fraction becomes ``F(((u - c l^2)/s)/(2 sqrt d))``.

    Instance: ``a``, ``b``, then ``w~ ~ N(0, I)`` (M x d, in chunks of rows), drawn from the
    generator of (dim, M) only, and ``w = w~ / l``: changing ``amplitude``, ``length_scale`` or
    ``confinement`` keeps the instance, and ``f_l(x) = f_1(x / l)``. Nothing is known in closed
    form: f*, saddles and minima are unknown. Runs start at ``x0 ~ N(0, l^2 I)``.

    Cost: W is M x d, ``4 M d`` bytes in float32 (8 in float64): with the default M,
    ``64 d^2`` bytes for d >= 16 (64 MB at d = 1000, 6.4 GB at d = 10^4), so d up to about 4000
    fits in 1 GB, 16000 in 16 GB, 35000 in 80 GB. A batch of B points adds two (B, M) work
    tensors (``128 B d`` bytes in float32). ``loss_and_grad`` and ``hvp`` each read W twice
    (``4 B M d`` and ``6 B M d`` flops): at small B their time is that of streaming W. The build
    draws W in float64 chunks of about 8 MB on the CPU: it never holds a float64 copy of all of W.

    References: A. Rahimi and B. Recht, "Random features for large-scale kernel machines",
    NeurIPS 2007; A. J. Bray and D. S. Dean, "Statistics of critical points of Gaussian fields on
    large-dimensional spaces", Phys. Rev. Lett. 98, 150201 (2007); Y. Dauphin et al.,
    "Identifying and attacking the saddle point problem in high-dimensional non-convex
    optimization", NeurIPS 2014.
    """

    family = "gaussian_field"
    outcome_fields = (
        FamilyField(
            "field_value",
            "the field's value u at the final point (the loss without the confinement term; null if diverged); "
            "summary: its median, diverged runs ranked highest",
            lambda records: {"median": median_of(records, "field_value")},
            lambda summary: "" if summary["median"] is None else f"field u {summary['median']:.3g}",
        ),
    )
    params = (
        DIM,
        Param("length_scale", float, 1.0, "correlation length l of the field", low=0.0, low_open=True),
        Param("amplitude", float, 1.0, "standard deviation s of the field's value", low=0.0, low_open=True),
        Param(
            "features",
            int,
            0,
            "number M of random Fourier features; 0 for the automatic max(256, 16 dim)",
            low=0,
        ),
        Param("confinement", float, 0.0, "coefficient c of the confining term c/2 |x|^2", low=0.0),
    )
    formula = (
        "f(x) = s/sqrt(M) sum_m [a_m cos(w_m.x) + b_m sin(w_m.x)] + confinement/2 |x|^2, "
        "w_m ~ N(0, I/l^2), a, b ~ N(0, 1): covariance s^2 exp(-|x-y|^2/(2 l^2))"
    )
    reference = "Rahimi and Recht 2007; Bray and Dean 2007; Dauphin et al. 2014"
    start = "x0 ~ N(0, length_scale^2 I)"

    length_scale: float
    amplitude: float
    features: int
    confinement: float

    def _build(self) -> None:
        m, d = self.features or default_features(self.dim), self.dim
        generator = self.instance_generator(d, m)
        a = torch.randn(m, generator=generator, dtype=torch.float64)
        b = torch.randn(m, generator=generator, dtype=torch.float64)
        self.n_features = m
        self.scale = self.amplitude / math.sqrt(m)
        self.weights = self._tensor(torch.hypot(a, b))
        self.offsets = self._tensor(torch.atan2(b, a))
        self.frequencies = self._draw_frequencies(generator, m, d)

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        """The M x d frequencies in ``dtype`` (drawn in float64 chunks on the host); an evaluation
        holds a few (B, M) work tensors."""
        m, size = self.features or default_features(self.dim), dtype.itemsize
        return Footprint(
            instance=m * self.dim * size + 4 * self.dim * (8 + size),
            what=f"its random features ({m} x {self.dim})",
            per_run=4 * m * size,
            host=min(m * self.dim, _DRAW_ELEMENTS + self.dim) * 16,
        )

    def _draw_frequencies(self, generator: torch.Generator, m: int, d: int) -> torch.Tensor:
        """``W = w~ / l``, ``w~ ~ N(0, I)`` (M x d), drawn in float64 on the CPU in chunks of rows
        and cast into place, so that the build never holds a float64 copy of the whole matrix."""
        frequencies = torch.empty(m, d, dtype=self.dtype, device=self.device)
        rows = max(1, _DRAW_ELEMENTS // d)
        for start in range(0, m, rows):
            chunk = torch.randn(min(rows, m - start), d, generator=generator, dtype=torch.float64)
            frequencies[start : start + rows] = self._tensor(chunk / self.length_scale)
        return frequencies

    def facts(self) -> dict[str, Any]:
        """The number of features M in use, and the index law with the level below which minima lie."""
        level = -2.0 * self.amplitude * math.sqrt(self.dim) + self.confinement * self.length_scale**2
        return {
            "features": self.n_features,
            "index_law": (
                "where the field (f without the confinement term) has value u, the fraction of negative Hessian "
                "eigenvalues is F(((u - c l^2)/s)/(2 sqrt d)), F(t) = 1/2 + (t sqrt(1 - t^2) + arcsin t)/pi on "
                "[-1, 1]; the typical Hessian is positive definite only below the edge -2 s sqrt(d) + c l^2 "
                "(minima, atypically stable, can lie somewhat above it at finite d)"
            ),
            "index_edge": level,
        }

    def record_fields(
        self, x: torch.Tensor, escape_steps: torch.Tensor | None, diverged: torch.Tensor
    ) -> dict[str, list[Any]]:
        """``field_value``: the field's value at the final point (the loss without the confinement
        term), the ``u`` of the index law (null for a diverged run)."""
        with torch.no_grad():
            field = torch.mv(self._phase(x).cos_(), self.weights).mul_(self.scale).double().cpu()
        broken = diverged.cpu()
        return {"field_value": [None if broken[i] else float(field[i]) for i in range(field.shape[0])]}

    # --- evaluation -----------------------------------------------------------------------------

    def _phase(self, x: torch.Tensor) -> torch.Tensor:
        """``theta = x W^T - phi``, shape (B, M), in one fused product."""
        return torch.addmm(self.offsets, x, self.frequencies.T, beta=-1.0)

    def _value(self, x: torch.Tensor, cosine: torch.Tensor) -> torch.Tensor:
        """``s/sqrt(M) cos(theta) r + confinement/2 |x|^2`` from ``cos(theta)``."""
        field = torch.mv(cosine, self.weights).mul_(self.scale)
        if self.confinement == 0.0:
            return field
        return field.add_(squared_norm(x), alpha=0.5 * self.confinement)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """``s/sqrt(M) sum_m r_m cos(w_m.x - phi_m) + confinement/2 |x|^2``."""
        return self._value(x, self._phase(x).cos_())

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad = -s/sqrt(M) (r * sin theta) W + confinement x``; two (B, M) work tensors."""
        phase = self._phase(x)
        sine = torch.sin(phase)
        value = self._value(x, phase.cos_())
        grad = torch.addmm(x, sine.mul_(self.weights), self.frequencies, beta=self.confinement, alpha=-self.scale)
        return value, grad

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``H v = -s/sqrt(M) ((r * cos theta) * (v W^T)) W + confinement v``; ``x W^T`` and ``v W^T``
        come from one product, so W is read twice, as in ``loss_and_grad``."""
        rows = x.shape[0]
        both = torch.mm(torch.cat((x, v)), self.frequencies.T)
        weighted = both[:rows].sub_(self.offsets).cos_().mul_(self.weights)
        projected = both[rows:].mul_(weighted)
        return torch.addmm(v, projected, self.frequencies, beta=self.confinement, alpha=-self.scale)

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return self.length_scale * torch.randn(self.dim, generator=generator, dtype=torch.float64)
