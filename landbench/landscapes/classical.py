"""The classical test functions, batched, with closed-form gradients and Hessian-vector products.

Definitions and optima follow the Virtual Library of Simulation Experiments (S. Surjanovic and
D. Bingham, https://www.sfu.ca/~ssurjano/optimization.html) and M. Jamil and X.-S. Yang, "A
literature survey of benchmark functions for global optimization problems", 2013.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from landbench.errors import SpecError
from landbench.landscapes.base import DIM, CriticalPoint, Known, Landscape, uniform_box
from landbench.spec import Param

TWO_PI = 2.0 * math.pi


class Separable(Landscape):
    """``f(x) = constant + sum_i phi_i(x_i)``: gradient ``phi'(x)``, Hessian ``diag(phi''(x))``.

    Subclasses give ``_value``, ``_slope`` and ``_curvature`` elementwise on (B, d) tensors.
    """

    constant: float = 0.0

    def _value(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _slope(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _curvature(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self._value(x).sum(1) + self.constant

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss(x), self._slope(x)

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self._curvature(x) * v

    def _diagonal_minimum(self, point: torch.Tensor, note: str = "") -> CriticalPoint:
        """The minimum at ``point`` (float64, CPU), its Hessian read off ``phi''``."""
        diagonal = self._curvature(point[None])[0]
        value = float(self.loss(point[None])[0])
        return CriticalPoint(
            kind="minimum",
            value=value,
            point=point,
            lambda_max=float(diagonal.max()),
            lambda_min=float(diagonal.min()),
            trace=float(diagonal.sum()),
            note=note,
        )


class Quadratic(Separable):
    """``f(x) = 1/2 sum_i lambda_i x_i^2`` with ``lambda_i = condition^(i/(d-1))``, log-spaced in [1, condition].

    The convex baseline: minimum 0 at 0, Hessian ``diag(lambda)``, condition number ``condition``.
    Gradient descent with step ``lr`` converges iff ``lr < 2/condition``.
    """

    family = "quadratic"
    params = (DIM, Param("condition", float, 100.0, "ratio of the largest to the smallest Hessian eigenvalue", low=1.0))
    formula = "f(x) = 1/2 sum_i lambda_i x_i^2,  lambda_i = condition^(i/(d-1)), i = 0..d-1"
    reference = "Nesterov, Introductory Lectures on Convex Optimization, 2004"
    start = "x0 ~ N(0, I_d)"
    condition: float

    def _build(self) -> None:
        exponents = torch.arange(self.dim, dtype=torch.float64) / max(self.dim - 1, 1)
        self.eigenvalues64 = self.condition**exponents
        self.eigenvalues = self._tensor(self.eigenvalues64)
        minimum = CriticalPoint(
            kind="minimum",
            value=0.0,
            point=torch.zeros(self.dim, dtype=torch.float64),
            lambda_max=float(self.eigenvalues64.max()),
            lambda_min=float(self.eigenvalues64.min()),
            trace=float(self.eigenvalues64.sum()),
        )
        self.known = Known(f_star=0.0, minima=[minimum])

    def _value(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.eigenvalues.to(x.dtype) * x * x

    def _slope(self, x: torch.Tensor) -> torch.Tensor:
        return self.eigenvalues.to(x.dtype) * x

    def _curvature(self, x: torch.Tensor) -> torch.Tensor:
        return self.eigenvalues.to(x.dtype).expand_as(x)

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.dim, generator=generator, dtype=torch.float64)


class Rastrigin(Separable):
    """``f(x) = A d + sum_i [x_i^2 - A cos(2 pi x_i)]``, A = 10: global minimum 0 at 0.

    A regular grid of local minima near the integers; the Hessian at 0 is ``(2 + 4 pi^2 A) I``.
    Reference: L. A. Rastrigin, Systems of extremal control, 1974.
    """

    family = "rastrigin"
    params = (DIM,)
    formula = "f(x) = 10 d + sum_i [x_i^2 - 10 cos(2 pi x_i)]"
    reference = "Rastrigin 1974; Surjanovic and Bingham, Virtual Library of Simulation Experiments"
    start = "uniform in [-5.12, 5.12]^d (the standard domain)"
    amplitude = 10.0

    def _build(self) -> None:
        self.constant = self.amplitude * self.dim
        self.known = Known(f_star=0.0, minima=[self._diagonal_minimum(torch.zeros(self.dim, dtype=torch.float64))])

    def _value(self, x: torch.Tensor) -> torch.Tensor:
        return x * x - self.amplitude * torch.cos(TWO_PI * x)

    def _slope(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x + TWO_PI * self.amplitude * torch.sin(TWO_PI * x)

    def _curvature(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 + TWO_PI * TWO_PI * self.amplitude * torch.cos(TWO_PI * x)

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return uniform_box(generator, self.dim, -5.12, 5.12)


STYBLINSKI_TANG_ARGMIN = -2.903534027771178
STYBLINSKI_TANG_MIN_PER_DIM = -39.16616570377142


class StyblinskiTang(Separable):
    """``f(x) = 1/2 sum_i (x_i^4 - 16 x_i^2 + 5 x_i)``: minimum -39.16616570377142 d at x_i = -2.903534027771178.

    Each coordinate is a tilted double well, so there are 2^d local minima (x_i near -2.9035 or
    2.7468); the global one takes the deeper well everywhere.
    Reference: M. A. Styblinski and T.-S. Tang, Neural Networks 3(4), 1990.
    """

    family = "styblinski_tang"
    params = (DIM,)
    formula = "f(x) = 1/2 sum_i (x_i^4 - 16 x_i^2 + 5 x_i)"
    reference = "Styblinski and Tang 1990; Surjanovic and Bingham, Virtual Library of Simulation Experiments"
    start = "uniform in [-5, 5]^d (the standard domain)"

    def _build(self) -> None:
        point = torch.full((self.dim,), STYBLINSKI_TANG_ARGMIN, dtype=torch.float64)
        minimum = self._diagonal_minimum(
            point, note="the deeper well in every coordinate; 2^d - 1 local minima besides"
        )
        self.known = Known(f_star=STYBLINSKI_TANG_MIN_PER_DIM * self.dim, minima=[minimum])

    def _value(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x * x
        return 0.5 * (x2 * x2 - 16.0 * x2 + 5.0 * x)

    def _slope(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x * x * x - 16.0 * x + 2.5

    def _curvature(self, x: torch.Tensor) -> torch.Tensor:
        return 6.0 * x * x - 16.0

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return uniform_box(generator, self.dim, -5.0, 5.0)


class Levy(Landscape):
    """Levy's function, with ``w_i = 1 + (x_i - 1)/4``: global minimum 0 at x = 1.

    ``f = sin^2(pi w_1) + sum_{i<d} (w_i - 1)^2 [1 + 10 sin^2(pi w_i + 1)] + (w_d - 1)^2 [1 + sin^2(2 pi w_d)]``.
    Every term depends on one coordinate, so the Hessian is diagonal.
    Reference: Surjanovic and Bingham, Virtual Library of Simulation Experiments (Levy function).
    """

    family = "levy"
    params = (DIM,)
    formula = (
        "f(x) = sin^2(pi w_1) + sum_{i<d} (w_i-1)^2 [1 + 10 sin^2(pi w_i + 1)] + (w_d-1)^2 [1 + sin^2(2 pi w_d)],"
        "  w_i = 1 + (x_i - 1)/4"
    )
    reference = "Surjanovic and Bingham, Virtual Library of Simulation Experiments"
    start = "uniform in [-10, 10]^d (the standard domain)"

    def _build(self) -> None:
        point = torch.ones(self.dim, dtype=torch.float64)
        diagonal = self._diagonal(point[None])[0]
        minimum = CriticalPoint(
            kind="minimum",
            value=0.0,
            point=point,
            lambda_max=float(diagonal.max()),
            lambda_min=float(diagonal.min()),
            trace=float(diagonal.sum()),
        )
        self.known = Known(f_star=0.0, minima=[minimum])

    @staticmethod
    def _product(p: tuple[torch.Tensor, ...], q: tuple[torch.Tensor, ...], order: int) -> tuple[torch.Tensor, ...]:
        """``(p q)``, ``(p q)'`` and, for order 2, ``(p q)''`` from the derivatives of p and q."""
        out = (p[0] * q[0], p[1] * q[0] + p[0] * q[1])
        return out if order == 1 else (*out, p[2] * q[0] + 2.0 * p[1] * q[1] + p[0] * q[2])

    @classmethod
    def _middle(cls, w: torch.Tensor, order: int) -> tuple[torch.Tensor, ...]:
        """``M(w) = (w-1)^2 [1 + 10 sin^2(pi w + 1)]`` and its first ``order`` derivatives in w."""
        phase = math.pi * w + 1.0
        p = ((w - 1.0) ** 2, 2.0 * (w - 1.0), torch.full_like(w, 2.0))
        q = (1.0 + 10.0 * torch.sin(phase) ** 2, 10.0 * math.pi * torch.sin(2.0 * phase))
        if order == 2:
            q = (*q, 20.0 * math.pi**2 * torch.cos(2.0 * phase))
        return cls._product(p, q, order)

    @classmethod
    def _last(cls, w: torch.Tensor, order: int) -> tuple[torch.Tensor, ...]:
        """``L(w) = (w-1)^2 [1 + sin^2(2 pi w)]`` and its first ``order`` derivatives in w."""
        p = ((w - 1.0) ** 2, 2.0 * (w - 1.0), torch.full_like(w, 2.0))
        q = (1.0 + torch.sin(TWO_PI * w) ** 2, TWO_PI * torch.sin(2.0 * TWO_PI * w))
        if order == 2:
            q = (*q, 2.0 * TWO_PI**2 * torch.cos(2.0 * TWO_PI * w))
        return cls._product(p, q, order)

    @staticmethod
    def _first(w: torch.Tensor, order: int) -> tuple[torch.Tensor, ...]:
        """``A(w) = sin^2(pi w)`` and its first ``order`` derivatives in w."""
        out = (torch.sin(math.pi * w) ** 2, math.pi * torch.sin(TWO_PI * w))
        return out if order == 1 else (*out, 2.0 * math.pi**2 * torch.cos(TWO_PI * w))

    def _terms(self, x: torch.Tensor, order: int) -> tuple[torch.Tensor, ...]:
        """Per-coordinate value and its first ``order`` derivatives in x (chain rule: dw/dx = 1/4)."""
        w = 1.0 + 0.25 * (x - 1.0)
        middle, last, first = self._middle(w[:, :-1], order), self._last(w[:, -1:], order), self._first(w[:, :1], order)
        outputs = []
        for m, l_, f, scale in zip(middle, last, first, (1.0, 0.25, 0.0625)):
            out = torch.empty_like(x)
            out[:, :-1] = m * scale
            out[:, -1:] = l_ * scale
            out[:, :1] += f * scale
            outputs.append(out)
        return tuple(outputs)

    def _diagonal(self, x: torch.Tensor) -> torch.Tensor:
        return self._terms(x, 2)[2]

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Levy's function, written directly (the reference for the closed-form derivatives)."""
        w = 1.0 + 0.25 * (x - 1.0)
        total = torch.sin(math.pi * w[:, 0]) ** 2 + self._last(w[:, -1], 1)[0]
        if self.dim > 1:
            total = total + self._middle(w[:, :-1], 1)[0].sum(1)
        return total

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every term depends on one coordinate: the gradient is the per-coordinate derivative."""
        value, slope = self._terms(x, 1)
        return value.sum(1), slope

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The Hessian is diagonal: ``H v = f''(x_i) v_i``."""
        return self._diagonal(x) * v

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return uniform_box(generator, self.dim, -10.0, 10.0)


class Rosenbrock(Landscape):
    """``f(x) = sum_{i<d} [100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2]``: global minimum 0 at x = 1.

    A curved, narrow valley. For d >= 4 there is also a local minimum near (-1, 1, ..., 1), of
    value 3.7014 at d = 4 (Y.-W. Shang and Y.-H. Qiu, Evolutionary Computation 14(1), 2006; S. Kok
    and C. Sandrock, Evolutionary Computation 17(3), 2009); it is located by Newton's method at
    construction for 4 <= d <= 10000. The Hessian is tridiagonal, so the Hessian-vector product is
    closed form. Reference: H. H. Rosenbrock, The Computer Journal 3(3), 1960.
    """

    family = "rosenbrock"
    params = (DIM,)
    formula = "f(x) = sum_{i<d} [100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2]"
    reference = "Rosenbrock 1960; Shang and Qiu 2006 (the local minimum for d >= 4)"
    start = "uniform in [-2, 2]^d"
    second_minimum_max_dim = 10000

    def _check(self) -> None:
        if self.dim < 2:
            raise SpecError(f"rosenbrock: dim must be at least 2 (the function couples neighbours), got dim={self.dim}")

    def _build(self) -> None:
        minima = [self._minimum_at(torch.ones(self.dim, dtype=torch.float64), "global")]
        if 4 <= self.dim <= self.second_minimum_max_dim:
            minima.append(self._minimum_at(self._local_minimum(), "the local minimum near (-1, 1, ..., 1)"))
        self.known = Known(f_star=0.0, minima=minima)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_{i<d} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``."""
        head, tail = x[:, :-1], x[:, 1:]
        return (100.0 * (tail - head * head) ** 2 + (1.0 - head) ** 2).sum(1)

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``g_i = -400 x_i (x_{i+1} - x_i^2) - 2 (1 - x_i) + 200 (x_i - x_{i-1}^2)`` (terms that exist)."""
        head, tail = x[:, :-1], x[:, 1:]
        valley = tail - head * head
        loss = (100.0 * valley * valley + (1.0 - head) ** 2).sum(1)
        grad = torch.zeros_like(x)
        grad[:, :-1] = -400.0 * head * valley - 2.0 * (1.0 - head)
        grad[:, 1:] += 200.0 * valley
        return loss, grad

    def _bands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Diagonal (B, d) and off-diagonal (B, d-1) of the tridiagonal Hessian."""
        head, tail = x[:, :-1], x[:, 1:]
        diagonal = torch.zeros_like(x)
        diagonal[:, :-1] = 1200.0 * head * head - 400.0 * tail + 2.0
        diagonal[:, 1:] += 200.0
        return diagonal, -400.0 * head

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Tridiagonal: ``H_ii = 1200 x_i^2 - 400 x_{i+1} + 2 (+200 if i > 0)``, ``H_{i,i+1} = -400 x_i``."""
        diagonal, off = self._bands(x)
        out = diagonal * v
        out[:, :-1] += off * v[:, 1:]
        out[:, 1:] += off * v[:, :-1]
        return out

    def _minimum_at(self, point: torch.Tensor, note: str) -> CriticalPoint:
        import scipy.linalg  # here: every command imports the catalogue (see _local_minimum)

        diagonal, off = (b[0].numpy() for b in self._bands(point[None]))
        lowest, highest = (
            scipy.linalg.eigvalsh_tridiagonal(diagonal, off, select="i", select_range=(i, i))[0]
            for i in (0, self.dim - 1)
        )
        return CriticalPoint(
            kind="minimum",
            value=float(self.loss(point[None])[0]),
            point=point,
            lambda_max=float(highest),
            lambda_min=float(lowest),
            trace=float(diagonal.sum()),
            note=note,
        )

    def _local_minimum(self) -> torch.Tensor:
        """Newton-CG from (-1, 1, ..., 1) in float64 with the closed-form gradient and Hessian."""
        import scipy.linalg  # here: every command imports the catalogue, scipy.optimize costs 0.4 s
        import scipy.optimize

        def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
            loss, grad = self.loss_and_grad(torch.from_numpy(z)[None])
            return float(loss[0]), grad[0].numpy()

        def hessp(z: np.ndarray, p: np.ndarray) -> np.ndarray:
            return self.hvp(torch.from_numpy(z)[None], torch.from_numpy(p)[None])[0].numpy()

        start = np.ones(self.dim)
        start[0] = -1.0
        point = scipy.optimize.minimize(
            fun, start, jac=True, hessp=hessp, method="trust-ncg", options={"gtol": 1e-12}
        ).x
        for _ in range(20):  # polish with exact Newton steps: the Hessian is tridiagonal, a banded solve
            z = torch.from_numpy(point)[None]
            grad = self.loss_and_grad(z)[1][0].numpy()
            if np.abs(grad).max() < 1e-13:
                break
            diagonal, off = (band[0].numpy() for band in self._bands(z))
            bands = np.stack([np.concatenate([[0.0], off]), diagonal, np.concatenate([off, [0.0]])])
            point = point - scipy.linalg.solve_banded((1, 1), bands, grad)
        return torch.from_numpy(point)

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return uniform_box(generator, self.dim, -2.0, 2.0)


class Ackley(Landscape):
    """``f(x) = -a exp(-b sqrt(|x|^2/d)) - exp(sum_i cos(c x_i)/d) + a + e``, a=20, b=0.2, c=2 pi.

    Global minimum 0 at 0, where f has a kink (a cone), so the Hessian there does not exist: its
    ``lambda_max`` and ``trace`` are ``None``. Closed-form gradient and Hessian-vector product:
    with ``r = sqrt(|x|^2/d)``, ``phi = a b exp(-b r)/(d r)`` and ``E = exp(sum cos(c x)/d)``,
    ``grad = phi x + (c/d) E sin(c x)`` and
    ``H v = phi v - phi (b + 1/r)/(d r) (x.v) x + (c^2/d) E cos(c x) v - (c/d)^2 E (sin(c x).v) sin(c x)``.
    Reference: D. H. Ackley, A connectionist machine for genetic hillclimbing, 1987.
    """

    family = "ackley"
    params = (DIM,)
    formula = "f(x) = -20 exp(-0.2 sqrt(|x|^2/d)) - exp(sum_i cos(2 pi x_i)/d) + 20 + e"
    reference = "Ackley 1987; Surjanovic and Bingham, Virtual Library of Simulation Experiments"
    start = "uniform in [-5, 5]^d (the rugged centre of the standard domain [-32.768, 32.768]^d, which is flat far out)"
    a, b, c = 20.0, 0.2, TWO_PI

    def _build(self) -> None:
        minimum = CriticalPoint(
            kind="minimum",
            value=0.0,
            point=torch.zeros(self.dim, dtype=torch.float64),
            note="a kink (cone): the Hessian does not exist at the minimum",
        )
        self.known = Known(f_star=0.0, minima=[minimum])

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Ackley's function, written directly (the reference for the closed-form derivatives)."""
        r = torch.sqrt((x * x).mean(1))
        return -self.a * torch.exp(-self.b * r) - torch.exp(torch.cos(self.c * x).mean(1)) + self.a + math.e

    def _radial(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``r``, ``phi`` (0 at r = 0, the subgradient) and ``E``."""
        r = torch.sqrt((x * x).mean(1, keepdim=True))
        safe_r = torch.where(r > 0, r, torch.ones_like(r))
        phi = torch.where(r > 0, self.a * self.b * torch.exp(-self.b * r) / (self.dim * safe_r), torch.zeros_like(r))
        return r, phi, torch.exp(torch.cos(self.c * x).mean(1, keepdim=True))

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad = phi x + (c/d) E sin(c x)`` (see the class docstring)."""
        r, phi, big_e = self._radial(x)
        loss = (-self.a * torch.exp(-self.b * r) - big_e + self.a + math.e)[:, 0]
        grad = phi * x + (self.c / self.dim) * big_e * torch.sin(self.c * x)
        return loss, grad

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``H v`` of the class docstring: a rank-two update of a diagonal."""
        r, phi, big_e = self._radial(x)
        safe_r = torch.where(r > 0, r, torch.ones_like(r))
        radial = phi * (self.b + 1.0 / safe_r) / (self.dim * safe_r)
        sine, cosine = torch.sin(self.c * x), torch.cos(self.c * x)
        scale = self.c / self.dim
        return (
            phi * v
            - radial * (x * v).sum(1, keepdim=True) * x
            + self.c * scale * big_e * cosine * v
            - scale * scale * big_e * (sine * v).sum(1, keepdim=True) * sine
        )

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return uniform_box(generator, self.dim, -5.0, 5.0)
