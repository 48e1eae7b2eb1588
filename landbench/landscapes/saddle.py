"""A strict saddle of tunable index, with a ring of minima around it."""

from __future__ import annotations

import math

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import DIM, CriticalPoint, Footprint, Known, Landscape, squared_norm, uniform_sphere
from landbench.spec import Param


class Saddle(Landscape):
    r"""``f(x) = 1/2 mu |P_s x|^2 - 1/2 gamma |P_u x|^2 + 1/4 quartic |P_u x|^4``.

    ``P_u`` projects onto a k-dimensional unstable subspace U (k = ``index``): the first k
    coordinates, or, with ``rotate=True``, the span of a seeded random orthonormal k-frame Q
    (a d x k matrix; never a dense d x d one). ``P_s = I - P_u``.

    * Saddle at 0, value 0, Hessian eigenvalues ``-gamma`` (k times) and ``mu`` (d - k times).
    * Minima on the (k-1)-sphere ``|P_u x|^2 = gamma/quartic``, ``P_s x = 0``, with
      ``f* = -gamma^2 / (4 quartic)`` and Hessian eigenvalues ``2 gamma`` (radial), 0 (k - 1
      times, along the ring) and ``mu`` (d - k times).
    * Gradient descent from ``eps`` along U leaves in ``ceil(log(r/eps) / log(1 + lr gamma))``
      steps while linear; from a random direction it needs about ``1/2 log d / log(1 + lr gamma)``
      more (Dauphin et al. 2014; Jin et al. 2017).

    References: Y. Dauphin et al., "Identifying and attacking the saddle point problem in
    high-dimensional non-convex optimization", NeurIPS 2014; R. Ge et al., "Escaping from saddle
    points", COLT 2015; C. Jin et al., "How to escape saddle points efficiently", ICML 2017.
    """

    family = "saddle"
    params = (
        DIM,
        Param("index", int, 1, "number k of unstable directions (Morse index of the saddle)", low=1),
        Param("gamma", float, 1.0, "negative curvature along the unstable subspace", low=0.0, low_open=True),
        Param("mu", float, 1.0, "positive curvature along the stable subspace", low=0.0, low_open=True),
        Param("quartic", float, 1.0, "quartic coefficient that bounds the loss below", low=0.0, low_open=True),
        Param("rotate", bool, False, "unstable subspace spanned by a random orthonormal frame instead of e_1..e_k"),
        Param(
            "init",
            str,
            "random",
            "start on a random point of the sphere, or along the first unstable direction",
            choices=("random", "unstable"),
        ),
        Param("init_radius", float, 1e-3, "distance of the start point from the saddle", low=0.0),
    )
    formula = "f(x) = mu/2 |P_s x|^2 - gamma/2 |P_u x|^2 + quartic/4 |P_u x|^4,  P_u onto a k-dim subspace"
    reference = "Dauphin et al. 2014; Ge et al. 2015; Jin et al. 2017"
    start = "init='random': uniform on the sphere of radius init_radius about 0; init='unstable': init_radius * u_1"

    index: int
    gamma: float
    mu: float
    quartic: float
    rotate: bool
    init: str
    init_radius: float

    def _check(self) -> None:
        if self.index > self.dim:
            raise SpecError(
                f"saddle: index must be between 1 and dim={self.dim} (the number of unstable directions "
                f"cannot exceed the dimension), got index={self.index}"
            )

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        """Rotated: the d x k frame (drawn and orthonormalised in float64 on the host, then cast);
        an evaluation projects onto it, (B, k) per run."""
        known = super()._footprint(dtype, free)
        if not self.rotate:
            return known
        frame = self.dim * self.index
        return Footprint(
            instance=frame * dtype.itemsize + known.instance,
            what=f"its rotated frame ({self.dim} x {self.index})",
            per_run=2 * self.index * dtype.itemsize,
            host=3 * frame * 8 + known.host,
        )

    def _build(self) -> None:
        k, d = self.index, self.dim
        self.frame: torch.Tensor | None = None
        if self.rotate:
            gaussian = torch.randn(d, k, generator=self.instance_generator(d, k), dtype=torch.float64)
            frame64, _ = torch.linalg.qr(gaussian)
            self._first_direction = frame64[:, 0].clone()
            self.frame = self._tensor(frame64)
        else:
            self._first_direction = torch.zeros(d, dtype=torch.float64)
            self._first_direction[0] = 1.0
        g, mu, q = self.gamma, self.mu, self.quartic
        stable = d - k
        saddle = CriticalPoint(
            kind="saddle",
            value=0.0,
            point=torch.zeros(d, dtype=torch.float64),
            index=k,
            lambda_max=mu if stable else -g,
            lambda_min=-g,
            trace=-k * g + stable * mu,
            note="the designated saddle; runs start near it",
        )
        radial = [2 * g] + [0.0] * (k - 1) + ([mu] if stable else [])
        minimum = CriticalPoint(
            kind="minimum",
            value=-g * g / (4 * q),
            point=math.sqrt(g / q) * self._first_direction,
            index=0,
            lambda_max=max(radial),
            lambda_min=min(radial),
            trace=2 * g + stable * mu,
            note=(
                "the ring |P_u x|^2 = gamma/quartic, P_s x = 0 (a (k-1)-sphere; every point is a global minimum)"
                if k > 1
                else "and its mirror image -x (the two global minima)"
            ),
        )
        self.known = Known(f_star=minimum.value, saddle=saddle, minima=[minimum])

    # --- evaluation -----------------------------------------------------------------------------

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, u2, s2)``: the unstable coordinates (B, k) (``z = Q^T x``, or the first k entries),
        ``|P_u x|^2`` and ``|P_s x|^2``. The stable part is formed explicitly (one fused
        ``x - z Q^T``) rather than as ``|x|^2 - u2``, which would cancel catastrophically once
        ``P_s x`` has decayed."""
        if self.frame is None:
            z = x[:, : self.index]
            stable = x[:, self.index :]
        else:
            z = x @ self.frame
            stable = torch.addmm(x, z, self.frame.T, alpha=-1.0)
        return z, squared_norm(z), squared_norm(stable)

    def _value(self, u2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.mu * s2 - 0.5 * self.gamma * u2 + 0.25 * self.quartic * u2 * u2

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """``mu/2 |P_s x|^2 - gamma/2 |P_u x|^2 + quartic/4 |P_u x|^4``."""
        _, u2, s2 = self._parts(x)
        return self._value(u2, s2)

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad = mu P_s x + (quartic |P_u x|^2 - gamma) P_u x``."""
        z, u2, s2 = self._parts(x)
        radial = self.quartic * u2 - self.gamma
        if self.frame is None:
            grad = torch.empty_like(x)
            torch.mul(z, radial[:, None], out=grad[:, : self.index])
            torch.mul(x[:, self.index :], self.mu, out=grad[:, self.index :])
        else:  # mu x + (radial - mu) Q z, in one fused pass over x
            grad = torch.addmm(x, z * (radial - self.mu)[:, None], self.frame.T, beta=self.mu)
        return self._value(u2, s2), grad

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``H v = mu P_s v + (quartic |P_u x|^2 - gamma) P_u v + 2 quartic (P_u x . v) P_u x``."""
        k = self.index
        if self.frame is None:
            xu, vu = x[:, :k], v[:, :k]
            u2 = xu.square().sum(1, keepdim=True)
            out = torch.empty_like(v)
            out[:, :k] = (self.quartic * u2 - self.gamma) * vu + 2 * self.quartic * (xu * vu).sum(1, keepdim=True) * xu
            torch.mul(v[:, k:], self.mu, out=out[:, k:])
            return out
        z, zv = x @ self.frame, v @ self.frame
        u2 = z.square().sum(1, keepdim=True)
        coefficient = (self.quartic * u2 - self.gamma) * zv + 2 * self.quartic * (z * zv).sum(1, keepdim=True) * z
        return self.mu * (v - zv @ self.frame.T) + coefficient @ self.frame.T

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        if self.init == "unstable":
            return self.init_radius * self._first_direction
        return uniform_sphere(generator, self.dim, self.init_radius)
