"""Linear regression with Gaussian inputs of a given spectrum: a finite sum with an exact test loss.

``f(w) = 1/(2n) sum_i (a_i.w - y_i)^2`` with ``a_i ~ N(0, Sigma)`` and ``y_i = a_i.w* + eps_i``,
``eps_i ~ N(0, label_noise^2)``. The population (test) loss is ``((w - w*)^T Sigma (w - w*) +
label_noise^2) / 2`` and the expected population loss of one-pass minibatch SGD obeys an exact
linear recursion (Gaussian fourth moments), from which the noisy quadratic model's facts follow:
the steady state depends on lr / batch size, the learning rate scales linearly with the batch size
up to a critical batch size and the gain saturates beyond it.

References: G. Zhang et al., "Which algorithmic choices matter at which batch sizes? Insights from a
noisy quadratic model", NeurIPS 2019; S. McCandlish, J. Kaplan, D. Amodei et al., "An empirical
model of large-batch training", 2018; P. Jain et al., "Parallelizing stochastic gradient descent for
least squares regression: mini-batching, averaging, and model misspecification", JMLR 2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from landbench.landscapes.base import CriticalPoint, Footprint, Known, Landscape, squared_norm
from landbench.landscapes.finite_sum import SAMPLES, FiniteSum, gather_rows
from landbench.spec import Param


def _batch_inverse(batch_sizes: Sequence[float]) -> np.ndarray:
    """``1/B`` for each batch size (0 for ``math.inf``: full-population gradient descent)."""
    out = []
    for b in batch_sizes:
        b = float(b)
        if not (b >= 1):
            raise ValueError(f"a batch size must be >= 1 (or math.inf), got {b}")
        out.append(0.0 if math.isinf(b) else 1.0 / b)
    return np.asarray(out, dtype=np.float64)


class LeastSquares(FiniteSum, Landscape):
    r"""``f(w) = 1/(2n) sum_i (a_i.w - y_i)^2``: least squares on n Gaussian examples.

    The data dimension and the search space are the same: ``self.dim = self.data_dim = dim``.

    * Instance: ``Sigma = Q diag(h) Q^T`` with eigenvalues ``h_i = condition^(-i/(d-1))``, log-spaced
      from 1 down to ``1/condition``, and Q a Haar-random rotation; ``w*`` uniform on the unit sphere
      (both from the generator of (dim,) alone); inputs ``a_i = Sigma^(1/2) z_i`` and noise
      ``eps_i = label_noise * e_i`` with ``z_i, e_i`` standard normals from the generator of
      (dim, samples): changing ``condition`` or ``label_noise`` rescales the same draw.
    * Gradient ``A^T (A w - y) / n``; the Hessian is constant, ``A^T A / n``, and ``hvp`` is
      ``A^T (A v) / n``. A minibatch's loss and gradient are the same over its examples.
    * Known: for ``n > d`` the unique minimiser ``w_hat`` (normal equations, float64) with value
      ``f* = |A w_hat - y|^2 / (2n)`` (the least-squares residual) and the Hessian's spectrum; for
      ``n <= d`` the model interpolates: ``f* = 0`` on an affine set of minimisers of dimension
      ``d - n`` (the minimum-norm interpolant is listed; ``lambda_min = 0`` when ``n < d``).
    * Test loss (closed form): ``L(w) = ((w - w*)^T Sigma (w - w*) + label_noise^2) / 2``.
    * One-pass SGD (each example used at most once: the first epoch of a minibatch run) with step
      ``lr`` and batch B: ``S_t = E (w_t - w*)(w_t - w*)^T`` obeys exactly, in Sigma's eigenbasis,
      ``s_i' = s_i (1 - 2 lr h_i + lr^2 h_i^2 (1 + 1/B)) + lr^2 h_i (T + label_noise^2) / B`` with
      ``T = sum_j h_j s_j`` (``E[a a^T M a a^T] = 2 Sigma M Sigma + Sigma tr(M Sigma)``), and
      ``E L(w_t) = (T_t + label_noise^2)/2`` (:meth:`sgd_test_loss`). Its steady state
      (:meth:`steady_state_excess`) is ``E L - label_noise^2/2 = label_noise^2 q / (2 (1 - q))``,
      ``q = sum_i lr h_i / (B (2 - lr h_i (1 + 1/B)))`` (stable iff q < 1), about ``label_noise^2
      lr tr(Sigma) / (4B)`` for small lr: a function of lr / B (the noisy quadratic model), while the
      decay of each mode, ``(1 - lr h_i)^2`` per step, depends on lr alone. Hence linear scaling.
    * Critical batch size (:meth:`critical_batch_size`): with the learning rate tuned for each B,
      the steps ``S(B)`` to bring the expected excess test loss to a target follow McCandlish et
      al.'s ``S(B) ~ S_min (1 + B_crit / B)``: they halve per doubling of B for ``B << B_crit`` (the
      best lr grows proportionally to B) and approach ``S_min`` (gradient descent on the population)
      for ``B >> B_crit``. ``B_crit`` is read off the exact recursion as the batch size at which
      ``S(B) = 2 S_min`` (:meth:`batch_size_scaling` gives the table). McCandlish's gradient noise
      scale at a point, ``B_noise = tr(Sigma C) / (g^T Sigma g) = 1 + 2 L(w) tr(Sigma^2) / (g^T Sigma
      g)`` with ``g = Sigma (w - w*)`` and the per-example gradient covariance ``C = 2 L(w) Sigma +
      g g^T`` (:meth:`gradient_noise_scale`), is the same notion for one greedy step.

    Start: ``w0 ~ N(0, I_d / d)``.
    """

    family = "least_squares"
    params = (
        Param("dim", int, doc="data dimension d (= the number of weights)", low=1),
        SAMPLES,
        Param("condition", float, 10.0, "condition number of the input covariance Sigma", low=1.0),
        Param("label_noise", float, 0.1, "standard deviation of the label noise", low=0.0),
    )
    formula = "f(w) = 1/(2n) sum_i (a_i.w - y_i)^2,  a_i ~ N(0, Sigma),  y_i = a_i.w* + eps_i"
    reference = "Zhang et al. 2019 (noisy quadratic model); McCandlish et al. 2018; Jain et al. 2018"
    start = "w0 ~ N(0, I_d / d)"
    test_loss_kind = "closed form"
    samples: int
    condition: float
    label_noise: float

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        d, n = int(self.dim), int(self.samples)  # the bound parameters: dim is the data dimension
        numbers = n * (d + 1) + d * d + 4 * d
        return Footprint(
            instance=numbers * dtype.itemsize,
            what=f"{n} examples of dimension {d}",
            per_run=2 * n * dtype.itemsize,
            host=(2 * n * (d + 1) + 3 * d * d) * 8,
        )

    def _build(self) -> None:
        d, n = int(self.values["dim"]), int(self.samples)
        self.data_dim = d
        self.dim = d
        population = self.instance_generator("population", d)
        gaussian = torch.randn(d, d, generator=population, dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        rotation = q * torch.sign(torch.diagonal(r))  # Haar (Mezzadri 2007)
        w_star = torch.randn(d, generator=population, dtype=torch.float64)
        w_star = w_star / w_star.norm()
        examples = self.instance_generator("examples", d, n)
        z = torch.randn(n, d, generator=examples, dtype=torch.float64)
        e = torch.randn(n, generator=examples, dtype=torch.float64)
        h = self.condition ** (-torch.arange(d, dtype=torch.float64) / max(d - 1, 1))
        root = rotation @ torch.diag(h.sqrt()) @ rotation.T
        a = z @ root
        y = a @ w_star + self.label_noise * e
        self.eigenvalues64, self.rotation64, self.w_star64 = h, rotation, w_star
        self.inputs64, self.targets64 = a, y
        self.covariance64 = rotation @ torch.diag(h) @ rotation.T
        self.inputs, self.targets = self._tensor(a), self._tensor(y)
        self.w_star = self._tensor(w_star)
        # the test loss reads |(w - w*) Q sqrt(h)|^2
        self.test_frame = self._tensor(rotation * h.sqrt())
        self.hessian64 = a.T @ a / n
        spectrum = torch.linalg.eigvalsh(self.hessian64)
        solution = torch.linalg.lstsq(a, y[:, None], driver="gelsd").solution[:, 0]
        if n > d:
            f_star = float(((a @ solution - y) ** 2).sum() / (2 * n))
            note = "the unique least-squares solution (normal equations, float64)"
        else:
            f_star = 0.0
            note = f"interpolation: an affine set of minimisers of dimension {d - n}; the minimum-norm one"
        lam_min = float(spectrum.min()) if n >= d else 0.0
        minimum = CriticalPoint(
            kind="minimum",
            value=f_star,
            point=solution,
            lambda_max=float(spectrum.max()),
            lambda_min=lam_min,
            trace=float(spectrum.sum()),
            note=note,
        )
        self.solution64 = solution
        self.known = Known(f_star=f_star, minima=[minimum])

    # --- the finite sum ------------------------------------------------------------------------

    def _residuals(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(residuals (B, m), inputs)``: inputs ``(n, d)`` when ``index`` is None, else ``(B, m, d)``."""
        if index is None:
            a = self.inputs.to(x.dtype)
            return x @ a.T - self.targets.to(x.dtype), a
        a = gather_rows(self.inputs.to(x.dtype), index)
        y = gather_rows(self.targets.to(x.dtype), index)
        return torch.einsum("bmd,bd->bm", a, x) - y, a

    def example_losses(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        residual, _ = self._residuals(x, index)
        return 0.5 * residual * residual

    def batch_loss_and_grad(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        residual, a = self._residuals(x, index)
        m = residual.shape[1]
        value = 0.5 * (residual * residual).mean(dim=1)
        grad = residual @ a / m if index is None else torch.einsum("bm,bmd->bd", residual, a) / m
        return value, grad

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``A^T (A v) / n`` (the Hessian does not depend on x)."""
        a = self.inputs.to(v.dtype)
        return (v @ a.T) @ a / self.samples

    def test_loss(self, x: torch.Tensor) -> torch.Tensor:
        """``((w - w*)^T Sigma (w - w*) + label_noise^2) / 2``."""
        u = (x - self.w_star.to(x.dtype)) @ self.test_frame.to(x.dtype)
        return 0.5 * (squared_norm(u) + self.label_noise**2)

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.dim, generator=generator, dtype=torch.float64) / math.sqrt(self.dim)

    # --- theory of SGD ---------------------------------------------------------------------------

    def _start_moments(self, start: torch.Tensor | np.ndarray | None) -> np.ndarray:
        """``diag(Q^T E[(w0 - w*)(w0 - w*)^T] Q)``: from a point, or over the start distribution (None)."""
        w_star = self.w_star64.numpy()
        rotation = self.rotation64.numpy()
        if start is None:
            return (rotation.T @ w_star) ** 2 + 1.0 / self.dim
        offset = np.asarray(torch.as_tensor(start, dtype=torch.float64).cpu(), dtype=np.float64).reshape(-1)
        return (rotation.T @ (offset - w_star)) ** 2

    def _recursion(
        self, lrs: np.ndarray, inverse_batch: np.ndarray, start: Any, steps: int, target: float | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The exact recursion for every (batch, lr) pair: the expected excess test loss after
        ``steps`` steps ``(nB, nlr)`` and the first step at which it is <= ``target`` (inf if never)."""
        h = self.eigenvalues64.numpy()
        sigma2 = self.label_noise**2
        lr = np.asarray(lrs, dtype=np.float64)[None, :, None]
        inv = np.asarray(inverse_batch, dtype=np.float64)[:, None, None]
        decay = 1.0 - 2.0 * lr * h + lr * lr * h * h * (1.0 + inv)
        feed = lr * lr * h * inv
        s = np.broadcast_to(self._start_moments(start), (inv.shape[0], lr.shape[1], h.size)).copy()
        hit = np.full(s.shape[:2], np.inf)
        excess = 0.5 * (s @ h)
        if target is not None:
            hit[excess <= target] = 0
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(1, steps + 1):
                total = s @ h
                s = s * decay + feed * (total + sigma2)[..., None]
                excess = 0.5 * (s @ h)
                if target is not None:
                    hit[(excess <= target) & np.isinf(hit)] = t
                    if t % 256 == 0 and np.all(np.isfinite(hit.min(axis=1))) and t > 2 * hit.min(axis=1).max():
                        break  # every batch size has reached the target at its best lr long ago
        return np.where(np.isfinite(excess), excess, np.inf), hit

    def sgd_test_loss(
        self, lr: float, batch_size: float, steps: int, start: torch.Tensor | np.ndarray | None = None
    ) -> np.ndarray:
        """The exact expected test loss ``E L(w_t)``, t = 0..steps, of one-pass SGD (fresh examples at
        every step; a minibatch run's first epoch) with step ``lr`` and batch ``batch_size``
        (``math.inf``: gradient descent on the population loss), from ``start`` (a point; None: the
        expectation over the start distribution)."""
        inv = _batch_inverse([batch_size])
        h = self.eigenvalues64.numpy()
        s = self._start_moments(start)
        out = [0.5 * (s @ h + self.label_noise**2)]
        decay = 1.0 - 2.0 * lr * h + lr * lr * h * h * (1.0 + inv[0])
        feed = lr * lr * h * inv[0]
        for _ in range(steps):
            s = s * decay + feed * (s @ h + self.label_noise**2)
            out.append(0.5 * (s @ h + self.label_noise**2))
        return np.asarray(out)

    def steady_state_excess(self, lr: float, batch_size: float) -> float:
        """The stationary expected excess test loss of one-pass SGD, ``label_noise^2 q / (2 (1 - q))``
        with ``q = sum_i lr h_i / (B (2 - lr h_i (1 + 1/B)))``; inf where SGD is unstable."""
        inv = float(_batch_inverse([batch_size])[0])
        h = self.eigenvalues64.numpy()
        margin = 2.0 - lr * h * (1.0 + inv)
        if np.any(margin <= 0):
            return math.inf
        q = float(np.sum(lr * h * inv / margin))
        return math.inf if q >= 1 else self.label_noise**2 * q / (2 * (1 - q))

    def batch_size_scaling(
        self,
        target: float,
        batch_sizes: Sequence[float],
        start: torch.Tensor | np.ndarray | None = None,
        lrs: Sequence[float] | None = None,
        max_steps: int = 100_000,
    ) -> dict[str, np.ndarray]:
        """For each batch size: the fewest steps of one-pass SGD for the expected excess test loss
        (``E L - label_noise^2/2``) to reach ``target``, over the learning rates ``lrs`` (default 97
        log-spaced from ``1e-5`` to ``2 / lambda_max(Sigma)`` = 2), and the learning rate that
        achieves it: ``{"batch_size", "steps", "lr"}`` (steps inf where none reaches it)."""
        if not target > 0:
            raise ValueError(f"the target excess test loss must be > 0, got {target}")
        grid = np.geomspace(1e-5, 2.0, 97) if lrs is None else np.asarray(lrs, dtype=np.float64)
        _, hit = self._recursion(grid, _batch_inverse(batch_sizes), start, max_steps, target)
        best = hit.argmin(axis=1)
        return {
            "batch_size": np.asarray([float(b) for b in batch_sizes]),
            "steps": hit.min(axis=1),
            "lr": grid[best],
        }

    def critical_batch_size(
        self, target: float, start: torch.Tensor | np.ndarray | None = None, max_batch: int = 2**16
    ) -> float:
        """McCandlish et al.'s critical batch size for reaching an expected excess test loss ``target``
        from ``start`` (None: the start distribution): the batch size B at which the tuned steps
        ``S(B)`` (:meth:`batch_size_scaling`) are twice ``S_min`` (gradient descent on the population,
        B = inf), interpolated log-linearly between powers of two. Below it the best lr grows in
        proportion to B and the steps halve per doubling; above it they approach ``S_min``."""
        sizes = [2.0**k for k in range(int(math.log2(max_batch)) + 1)] + [math.inf]
        table = self.batch_size_scaling(target, sizes, start)
        steps = table["steps"]
        s_min = steps[-1]
        if not math.isfinite(s_min):
            raise ValueError(f"gradient descent does not reach the excess test loss {target}")
        if steps[0] <= 2 * s_min:
            return 1.0
        for k in range(1, len(sizes) - 1):
            if steps[k] <= 2 * s_min:
                lo, hi = math.log(steps[k - 1]), math.log(steps[k])
                frac = (lo - math.log(2 * s_min)) / (lo - hi)
                return float(2.0 ** (k - 1 + frac))
        raise ValueError(f"no batch size up to {max_batch} comes within twice S_min = {s_min}")

    def gradient_noise_scale(self, x: torch.Tensor) -> dict[str, float]:
        """McCandlish et al.'s noise scales of the per-example population gradient at one point x
        ``(d,)``: ``B_noise = tr(Sigma C) / (g^T Sigma g)`` and ``B_simple = tr(C) / |g|^2`` with
        ``g = Sigma (x - w*)`` and ``C = 2 L(x) Sigma + g g^T`` (the exact covariance for Gaussian
        inputs). The best lr of one step with batch B is ``lr_max / (1 + B_noise / B)``."""
        e = torch.as_tensor(x, dtype=torch.float64).cpu().reshape(-1) - self.w_star64
        sigma = self.covariance64
        g = sigma @ e
        loss2 = float(e @ g) + self.label_noise**2  # 2 L(x)
        g_sigma_g = float(g @ sigma @ g)
        trace2 = float(torch.trace(sigma @ sigma))
        return {
            "B_noise": 1.0 + loss2 * trace2 / g_sigma_g if g_sigma_g > 0 else math.inf,
            "B_simple": 1.0 + loss2 * float(torch.trace(sigma)) / float(g @ g) if float(g @ g) > 0 else math.inf,
        }

    def _test_loss64(self, w: torch.Tensor) -> float:
        e = w - self.w_star64
        return 0.5 * (float(e @ self.covariance64 @ e) + self.label_noise**2)

    def facts(self) -> dict[str, Any]:
        return {
            **self.finite_sum_facts(),
            "sigma_eigenvalues": f"log-spaced from 1 to {1 / self.condition:.6g}, Haar rotation",
            "bayes_risk": 0.5 * self.label_noise**2,
            "test_loss_at_minimum": self._test_loss64(self.solution64),
            "interpolates": self.samples <= self.dim,
        }
