"""Minima on a closed low-loss ring valley: the straight segment between neighbours crosses a high
barrier, the path along the ring a low one (mode connectivity).

After T. Garipov, P. Izmailov, D. Podoprikhin, D. Vetrov and A. G. Wilson, "Loss surfaces, mode
connectivity, and fast ensembling of DNNs", NeurIPS 2018, and F. Draxler, K. Veschgini,
M. Salmhofer and F. A. Hamprecht, "Essentially no barriers in neural network energy landscape",
ICML 2018: minima that the straight segment separates by a high barrier are joined by a curved
path of low loss. Here both barriers are known in closed form.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import (
    CriticalPoint,
    FamilyField,
    Known,
    Landscape,
    describe_ends,
    smoothstep,
    squared_norm,
    where_runs_ended,
)
from landbench.spec import Param

TWO_PI = 2.0 * math.pi


def gate(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The switch ``S(t) = t^3 (10 - 15 t + 6 t^2)`` on [0, 1], 1 for ``t >= 1``, and what the
    gradient and Hessian need, all finite at ``t = 0``:
    ``(S, S', S'', S/t, S/t^2, S'/t)``."""
    tc = t.clamp(max=1.0)
    poly = 10.0 - 15.0 * tc + 6.0 * tc * tc
    beyond = 1.0 / t.clamp(min=1.0)  # 1 for t <= 1, 1/t beyond (where S = 1)
    rest = 1.0 - tc
    return (
        *smoothstep(t),
        tc * tc * poly * beyond,
        tc * poly * beyond * beyond,
        30.0 * tc * rest * rest,
    )


def rotate_quarter(z: torch.Tensor) -> torch.Tensor:
    """``J z = (-z_2, z_1)`` for each row of ``z`` (B, 2): the tangent of the circle through z."""
    return torch.stack((-z[:, 1], z[:, 0]), dim=1)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of two (B, 2) tensors, as a (B, 1) column."""
    return (a * b).sum(1, keepdim=True)


class Valley(Landscape):
    r"""``f(x) = a (rho - R)^2 + S(4 rho^2/R^2) h/2 (1 - cos(m theta)) + c/2 |x_perp|^2``.

    ``z = Q^T x`` are the coordinates of x in a 2-plane spanned by an orthonormal frame
    ``Q = [q_1, q_2]`` (e_1, e_2, or with ``rotate=True`` a seeded random orthonormal d x 2 frame;
    never a d x d matrix); ``rho = |z|``, ``theta = atan2(z_2, z_1)``, ``x_perp = x - Q z``;
    a = ``radial``, R = ``radius``, h = ``ring_barrier``, m = ``modes``, c = ``confinement``.
    ``S`` is the quintic smoothstep (0 at 0, 1 from ``rho >= R/2`` on): it switches the angular
    term off near the axis ``rho = 0``, where ``theta`` is undefined, so that f is continuous there;
    everywhere else (every known point, every path below, the start distribution) ``S = 1``.

    * Minima (modes) k = 0..m-1 at ``rho = R``, ``theta_k = 2 pi k/m``, ``x_perp = 0``: value 0 = f*,
      Hessian eigenvalues ``2a`` (radial), ``h m^2/(2 R^2)`` (along the ring), ``c`` (d - 2 times).
    * Saddles on the ring between neighbours, at ``theta = (2k+1) pi/m``: value h, index 1,
      eigenvalues ``2a``, ``-h m^2/(2 R^2)``, ``c`` (d - 2 times).
    * Barrier (max of f along a path minus the larger end value) between neighbouring minima:
      along the ring arc exactly h, and no path does better: any path between neighbours crosses
      the half-plane ``theta = pi/m`` (where the minimum of f is h, at the saddle) or the axis
      ``rho = 0`` (where ``f >= a R^2 >= 8h``). Along the straight segment it is
      ``a R^2 (1 - cos(pi/m))^2 + h`` for m >= 3 (both terms peak at the midpoint, at
      ``rho = R cos(pi/m) >= R/2``); for m = 2 the segment passes through the axis, where
      ``theta`` jumps from 0 to pi and the angular term is 0 on both halves, and it is ``a R^2``.
    * The axis ``rho = 0`` is a cone (a maximum within the plane, value ``a R^2 + c/2 |x|^2``) where f
      is not differentiable; the gradient there is defined as ``c x`` (0 in the plane: the
      subgradient at the apex) and the Hessian as that of the smooth part (``2a`` in the plane).

    ``h <= a R^2 / 8`` is required: then ``df/drho < 0`` wherever ``0 < rho < R/2`` (the switch's
    slope times ``h`` stays below the radial pull, which takes ``h < a R^2 / 4.38``), so the minima
    and the ring saddles are the only critical points off the axis, and ``f > a R^2/4 >= 2h`` there.
    """

    family = "valley"
    outcome_fields = (
        FamilyField(
            "mode",
            "the minimum on the ring whose well the run ended trapped in (null: none, or diverged); summary: runs "
            "per mode",
            lambda records: where_runs_ended(records, "mode"),
            describe_ends("mode"),
        ),
    )
    params = (
        Param("dim", int, doc="dimension d of the search space (the ring lies in a 2-plane)", low=2),
        Param("modes", int, 4, "number m of minima on the ring", low=2),
        Param("radius", float, 1.0, "radius R of the ring", low=0.0, low_open=True),
        Param("radial", float, 10.0, "stiffness a of the radial term a (rho - R)^2", low=0.0, low_open=True),
        Param("ring_barrier", float, 0.1, "barrier h along the ring (value of the saddles)", low=0.0, low_open=True),
        Param("confinement", float, 1.0, "curvature c across the plane of the ring", low=0.0, low_open=True),
        Param("rotate", bool, False, "ring in the plane of a random orthonormal 2-frame instead of e_1, e_2"),
        Param("init_perp", float, 1.0, "typical start distance from the ring's plane, in units of R", low=0.0),
    )
    formula = (
        "f(x) = a (rho - R)^2 + S h/2 (1 - cos(m theta)) + c/2 |x_perp|^2,  (rho, theta) polar in a 2-plane, "
        "S = 1 for rho >= R/2 (a smoothstep to 0 at rho = 0)"
    )
    reference = "Garipov et al. 2018; Draxler et al. 2018"
    start = (
        "rho uniform in [R/2, 3R/2], theta uniform in [0, 2 pi), "
        "x_perp ~ N(0, (init_perp R)^2/(d-2)) in each of the d-2 directions across the plane"
    )

    modes: int
    radius: float
    radial: float
    ring_barrier: float
    confinement: float
    rotate: bool
    init_perp: float

    def _check(self) -> None:
        ceiling = self.radial * self.radius**2 / 8
        if self.ring_barrier > ceiling:
            raise SpecError(
                f"valley: ring_barrier must be at most radial * radius^2 / 8 = {ceiling:g} (higher, the switch "
                f"near the centre of the ring would create critical points of its own), "
                f"got ring_barrier={self.ring_barrier:g}"
            )

    def _build(self) -> None:
        d, m, a, h, r = self.dim, self.modes, self.radial, self.ring_barrier, self.radius
        self._frame64: torch.Tensor | None = None
        self.frame: torch.Tensor | None = None
        if self.rotate:
            gaussian = torch.randn(d, 2, generator=self.instance_generator(d), dtype=torch.float64)
            # d x 2, stored column by column: frame.T holds q_1 and q_2 as contiguous rows.
            self._frame64 = torch.linalg.qr(gaussian)[0].T.contiguous().T
            self.frame = self._tensor(self._frame64)
        self.ring_curvature = h * m * m / (2 * r * r)
        self.linear_barrier = a * r * r * (1 - math.cos(math.pi / m)) ** 2 + (h if m >= 3 else 0.0)
        self.axis_value = a * r * r  # min of f on the axis rho = 0
        self.known = Known(f_star=0.0, minima=[self._minimum(0), self._minimum(1)], saddles=[self.ring_saddle(0)])

    # --- what is known ----------------------------------------------------------------------------

    def _in_plane(self, theta: float) -> torch.Tensor:
        """The point at radius R and angle theta in the ring's plane (float64, CPU)."""
        z = self.radius * torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64)
        if self._frame64 is not None:
            return self._frame64 @ z
        return torch.cat([z, torch.zeros(self.dim - 2, dtype=torch.float64)])

    def _spectrum(self, along_ring: float) -> dict[str, float]:
        spectrum = [2 * self.radial, along_ring] + ([self.confinement] if self.dim > 2 else [])
        trace = 2 * self.radial + along_ring + (self.dim - 2) * self.confinement
        return {"lambda_max": max(spectrum), "lambda_min": min(spectrum), "trace": trace}

    def _minimum(self, k: int) -> CriticalPoint:
        m = self.modes
        note = f"mode {k} of {m}, theta = 2 pi {k}/{m}; " + (
            "mode 1 is its neighbour: barrier h along the ring, linear_barrier along the segment"
            if k == 0
            else f"every mode j is mode 0 turned by 2 pi j/{m} in the ring's plane (Valley.minimum(j))"
        )
        return CriticalPoint(
            kind="minimum",
            value=0.0,
            point=self._in_plane(TWO_PI * k / m),
            **self._spectrum(self.ring_curvature),
            note=note,
        )

    def minimum(self, k: int) -> CriticalPoint:
        """Mode k (0 <= k < modes): ``rho = R``, ``theta = 2 pi k / m``, value 0, on the device."""
        return self.place(self._minimum(k % self.modes))

    def ring_saddle(self, k: int) -> CriticalPoint:
        """The saddle between modes k and k+1: ``rho = R``, ``theta = (2k+1) pi/m``, value h, index 1."""
        return self.place(
            CriticalPoint(
                kind="saddle",
                value=self.ring_barrier,
                point=self._in_plane(math.pi * (2 * (k % self.modes) + 1) / self.modes),
                index=1,
                **self._spectrum(-self.ring_curvature),
                note=f"on the ring between modes {k % self.modes} and {(k + 1) % self.modes}",
            )
        )

    def facts(self) -> dict[str, Any]:
        """The barriers between neighbouring modes, f on the axis, and the definition of ``mode``."""
        return {
            "ring_barrier": self.ring_barrier,
            "linear_barrier": self.linear_barrier,
            "axis_value": self.axis_value,
            "mode_field": "record 'mode': k if f(x) < h/2 (below every ring saddle) and theta is nearest "
            "2 pi k/m; null otherwise",
        }

    # --- evaluation -------------------------------------------------------------------------------

    # Skinny (d x 2) matrix products are slow in CPU BLAS (a GEMM with n = 2 runs 5x slower than two
    # matrix-vector products): the frame is applied column by column (contiguous rows of frame.T),
    # by mv and in-place updates.

    def _plane(self, x: torch.Tensor) -> torch.Tensor:
        """``z = Q^T x`` (B, 2)."""
        if self.frame is None:
            return x[:, :2]
        q1, q2 = self.frame.T
        return torch.stack((x @ q1, x @ q2), dim=1)

    def _add_plane(self, out: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """``out += Q coefficients`` in place, for a rotated frame; returns ``out``."""
        assert self.frame is not None
        q1, q2 = self.frame.T
        return out.addcmul_(coefficients[:, :1], q1).addcmul_(coefficients[:, 1:], q2)

    def _across(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``x_perp = x - Q z``, formed explicitly (not ``|x|^2 - |z|^2``, which cancels near the
        plane): the last d - 2 coordinates (a view), or a fresh (B, d) tensor when rotated."""
        if self.frame is None:
            return x[:, 2:]
        q1, q2 = self.frame.T
        return torch.addcmul(x, z[:, :1], q1, value=-1.0).addcmul_(z[:, 1:], q2, value=-1.0)

    def _lift(self, x: torch.Tensor, plane: torch.Tensor) -> torch.Tensor:
        """``c x_perp + Q plane`` for the unrotated frame: a fresh (B, d) tensor."""
        out = torch.empty_like(x)
        out[:, :2] = plane
        torch.mul(x[:, 2:], self.confinement, out=out[:, 2:])
        return out

    def _polar(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``rho``, ``theta`` (B,) and ``t = 4 rho^2 / R^2``, the gate's argument. ``rho`` is
        ``hypot(z_1, z_2)``, exact down to the smallest floats (``rho^2`` would underflow first)."""
        rho = torch.hypot(z[:, 0], z[:, 1])
        theta = torch.atan2(z[:, 1], z[:, 0])
        return rho, theta, rho * rho * (4.0 / self.radius**2)

    @staticmethod
    def _over_rho(vectors: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        """``vectors / rho`` per row, 0 where ``rho = 0`` (the cone's apex, where the subgradient is 0)."""
        safe = torch.where(rho > 0, rho, torch.ones_like(rho))[:, None]
        return torch.where((rho > 0)[:, None], vectors / safe, torch.zeros_like(vectors))

    def _angular(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``A = h/2 (1 - cos m theta)``, ``A' = h m/2 sin m theta``, ``A'' = h m^2/2 cos m theta``."""
        h, m = self.ring_barrier, self.modes
        cos, sin = torch.cos(m * theta), torch.sin(m * theta)
        return 0.5 * h * (1.0 - cos), 0.5 * h * m * sin, 0.5 * h * m * m * cos

    def _value(
        self, rho: torch.Tensor, angular: torch.Tensor, switch: torch.Tensor, perp_sq: torch.Tensor
    ) -> torch.Tensor:
        return self.radial * (rho - self.radius).square() + switch * angular + 0.5 * self.confinement * perp_sq

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """``a (rho - R)^2 + S h/2 (1 - cos m theta) + c/2 |x_perp|^2``."""
        z = self._plane(x)
        rho, theta, t = self._polar(z)
        return self._value(rho, self._angular(theta)[0], gate(t)[0], squared_norm(self._across(x, z)))

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """In the plane ``2a (rho - R) z/rho + kappa A' (S/t) J z + 2 kappa A S' z`` (``kappa = 4/R^2``,
        ``J z = (-z_2, z_1)``, ``z/rho := 0`` at ``rho = 0``); across it ``c x_perp``."""
        z = self._plane(x)
        rho, theta, t = self._polar(z)
        angular, slope, _ = self._angular(theta)
        switch, switch_slope, _, switch_t, _, _ = gate(t)
        kappa = 4.0 / self.radius**2
        unit = self._over_rho(z, rho)
        plane = (
            (2.0 * self.radial * (rho - self.radius))[:, None] * unit
            + (kappa * slope * switch_t)[:, None] * rotate_quarter(z)
            + (2.0 * kappa * angular * switch_slope)[:, None] * z
        )
        across = self._across(x, z)
        value = self._value(rho, angular, switch, squared_norm(across))
        if self.frame is None:
            return value, self._lift(x, plane)
        return value, self._add_plane(across.mul_(self.confinement), plane)

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``c v_perp + Q H_plane Q^T v`` with, for ``u = Q^T v``, ``w = J z / rho``:
        ``H_plane u = 2a u - (2aR/rho) w (w.u) + kappa^2 A'' (S/t^2) Jz (Jz.u)
        + kappa^2 A' (2S'/t - S/t^2) (Jz (z.u) + z (Jz.u)) + 4 kappa^2 A S'' z (z.u) + 2 kappa A S' u``."""
        z, u = self._plane(x), self._plane(v)
        rho, theta, t = self._polar(z)
        a, kappa = self.radial, 4.0 / self.radius**2
        angular, slope, curvature = (c[:, None] for c in self._angular(theta))
        _, s1, s2, _, s_t2, s1_t = (c[:, None] for c in gate(t))
        jz = rotate_quarter(z)
        w = self._over_rho(jz, rho)
        along, outward = dot(jz, u), dot(z, u)
        plane = (
            2.0 * a * u
            - (2.0 * a * self.radius) * self._over_rho(w * dot(w, u), rho)
            + (kappa**2 * curvature * s_t2) * jz * along
            + (kappa**2 * slope * (2.0 * s1_t - s_t2)) * (jz * outward + z * along)
            + (4.0 * kappa**2 * angular * s2) * z * outward
            + (2.0 * kappa * angular * s1) * u
        )
        if self.frame is None:
            return self._lift(v, plane)
        return self._add_plane(v * self.confinement, plane - self.confinement * u)

    # --- runs ---------------------------------------------------------------------------------------

    def record_fields(
        self, x: torch.Tensor, escape_steps: torch.Tensor | None, diverged: torch.Tensor
    ) -> dict[str, list[Any]]:
        """``mode``: k if the run ended trapped in mode k's well (its loss below h/2, half the ring
        barrier, so below every saddle, and theta nearest ``2 pi k/m``); null otherwise, and for a
        diverged run."""
        x = x.detach()
        z = self._plane(x)
        theta = torch.atan2(z[:, 1], z[:, 0])
        nearest = torch.remainder(torch.round(theta * (self.modes / TWO_PI)).long(), self.modes)
        trapped = (self.loss(x) < 0.5 * self.ring_barrier) & ~diverged.to(x.device)
        modes, trapped = nearest.cpu().tolist(), trapped.cpu().tolist()
        return {"mode": [k if ok else None for k, ok in zip(modes, trapped)]}

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        r, d = self.radius, self.dim
        rho = r * (0.5 + torch.rand((), generator=generator, dtype=torch.float64))
        theta = TWO_PI * torch.rand((), generator=generator, dtype=torch.float64)
        z = torch.stack((rho * torch.cos(theta), rho * torch.sin(theta)))
        spread = self.init_perp * r / math.sqrt(max(d - 2, 1))
        if self._frame64 is None:
            return torch.cat([z, spread * torch.randn(d - 2, generator=generator, dtype=torch.float64)])
        frame = self._frame64.double()  # float64 even on a twin cast by astype
        noise = spread * torch.randn(d, generator=generator, dtype=torch.float64)
        return frame @ (z - frame.T @ noise) + noise
