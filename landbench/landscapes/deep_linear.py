r"""A deep linear network fit to a linear teacher on whitened inputs (a finite sum).

The network maps ``a`` in R^d (d = the spec's ``dim``, the *data* dimension) to ``W a`` with the
end-to-end map ``W = W_L ... W_1`` (L = ``depth`` >= 2 layers; ``W_1`` is h x d, ``W_2 .. W_{L-1}``
are h x h, ``W_L`` is d x h, h = ``width``). The search space is all the weights, flattened layer
after layer (each row-major): ``self.dim = h d + (L - 2) h^2 + d h`` coordinates.

Data model (drawn per instance, float64 on the CPU):

* teacher ``M = U diag(s) V^T`` with U, V Haar-orthogonal d x d and singular values ``s``
  (``teacher``; by default d values log-spaced from 4 down to 0.5);
* inputs: ``G`` (n x d) with iid N(0, 1) entries. When n >= d the sample is *whitened exactly*:
  ``A = sqrt(n) Q`` with ``G = Q R`` (QR, signs fixed so that Q is Haar on the Stiefel manifold),
  so that ``A^T A / n = I``: each row is a rotation-invariant draw whose sample covariance is the
  population's. When n < d no sample can be white; then ``A = G`` (raw Gaussian rows);
* labels ``y_i = M a_i + label_noise * e_i``, ``e_i ~ N(0, I_d)``;
* per-example loss ``l_i = |W a_i - y_i|^2 / 2``, training loss ``f = mean_i l_i``.

With ``Sigma = A^T A / n`` and ``C = Y^T A / n`` (the sample cross-covariance), the training loss
is ``f = c0 + 1/2 tr((W - W0) Sigma (W - W0)^T)`` with ``W0 = C Sigma^+`` the least-squares map and
``c0`` its residual: on a whitened sample ``f = c0 + |W - C|_F^2 / 2`` (what :meth:`loss` computes,
in O(d^2) per run; with noiseless labels ``C = M`` and ``c0 = 0``).

Known structure:

* Every local minimum is global (Kawaguchi 2016). The end-to-end map has rank at most
  ``r = min(h, d)``, so ``f* = c0 + 1/2 sum_{j > r} tau_j^2``, ``tau_j`` the singular values of
  ``T = W0 V_A Lambda^{1/2}`` (``Sigma = V_A Lambda V_A^T``; ``T = C`` on a whitened sample): the
  best rank-r fit (Eckart-Young). The known minimum is the balanced factorisation of that fit
  (each layer ``diag(tau_j^{1/L})`` between orthonormal frames), with its Hessian summary from the
  dense Hessian when the search space has at most :data:`DENSE_HESSIAN_MAX` coordinates (on a
  whitened noiseless sample with r >= rank M its largest eigenvalue is ``L s_1^{2 - 2/L}``).
* The origin is a critical point of value ``mean_i |y_i|^2 / 2``: for L = 2 a strict saddle with
  Hessian eigenvalues ``+-sigma_j(C)`` (each h times); for L >= 3 all derivatives of order < L vanish
  there (the Hessian is 0): a degenerate saddle of order L - 1. The engine's escape threshold is the
  escape from the origin.
* Saxe, McClelland and Ganguli 2014: from a balanced start aligned with the singular vectors of C
  (``init='balanced'``), with mode strengths ``u_k = p_k^T W q_k`` all ``u0 = init_scale^L`` (the
  top r modes), gradient flow on a whitened sample decouples into ``du_k/dt = L u_k^{2-2/L}
  (sigma_k - u_k)``. For L = 2 this is the logistic ``u(t) = s e^{2 s t} / (e^{2 s t} - 1 + s/u0)``,
  and mode k reaches half its value at ``t_k = ln(s_k/u0 - 1) / (2 s_k)``; for L >= 3
  :func:`mode_time` integrates the flow (closed form plus a regular quadrature). Gradient descent
  with learning rate lr follows it with ``t = lr * steps`` as lr s -> 0.
* Population loss (``a ~ N(0, I_d)``): ``|W - M|_F^2 / 2 + label_noise^2 d / 2`` (closed form).

References: K. Kawaguchi, "Deep learning without poor local minima", NeurIPS 2016; A. M. Saxe,
J. L. McClelland and S. Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep
linear neural networks", ICLR 2014; P. Baldi and K. Hornik, "Neural networks and principal
component analysis", Neural Networks 2(1), 1989.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import CriticalPoint, Footprint, Known, Landscape
from landbench.landscapes.finite_sum import SAMPLES, FiniteSum, gather_rows
from landbench.spec import Param

#: The dense Hessian of the known minimum is computed (closed-form HVPs against the identity, then
#: ``eigvalsh``) up to this many coordinates; above it the minimum's Hessian summary is None.
DENSE_HESSIAN_MAX = 1024

#: The default teacher spectrum: d singular values log-spaced from TOP down to BOTTOM.
DEFAULT_TOP, DEFAULT_BOTTOM = 4.0, 0.5


def default_spectrum(d: int) -> list[float]:
    """``s_k = 4 (1/8)^((k-1)/(d-1))``, k = 1..d (4 when d = 1)."""
    if d == 1:
        return [DEFAULT_TOP]
    ratio = DEFAULT_BOTTOM / DEFAULT_TOP
    return [DEFAULT_TOP * ratio ** (k / (d - 1)) for k in range(d)]


def mode_strength(t: float, s: float, u0: float) -> float:
    """Saxe et al.'s sigmoid for depth 2: ``u(t) = s e^{2st} / (e^{2st} - 1 + s/u0)``, the solution of
    ``du/dt = 2 u (s - u)`` from ``u(0) = u0`` (gradient-flow time)."""
    growth = math.exp(min(2.0 * s * t, 700.0))
    return s * growth / (growth - 1.0 + s / u0)


def mode_time(s: float, u0: float, depth: int, fraction: float = 0.5) -> float:
    """Gradient-flow time for one mode to grow from ``u0`` to ``fraction * s`` under
    ``du/dt = L u^{2-2/L} (s - u)`` (balanced layers of strength ``a = u^{1/L}``).

    With ``a = u^{1/L}``, ``dt = da / (a^{L-1} (s - a^L))`` and the partial fractions
    ``1/(a^{L-1}(s - a^L)) = (1/s) [a^{1-L} + a/(s - a^L)]``:
    L = 2: ``t = ln[u (s - u0) / (u0 (s - u))] / (2 s)`` (``ln(s/u0 - 1) / (2 s)`` at half);
    L >= 3: ``t = (1/s) [(a0^{2-L} - a^{2-L}) / (L - 2) + int_{a0}^{a} b / (s - b^L) db]``, the
    integral regular (``a < s^{1/L}``) and done by quadrature."""
    u = fraction * s
    if not 0.0 < u0 < u < s:
        raise ValueError(f"need 0 < u0 < fraction * s < s, got u0={u0}, s={s}, fraction={fraction}")
    if depth == 2:
        return math.log(u * (s - u0) / (u0 * (s - u))) / (2.0 * s)
    import scipy.integrate  # here: every command imports the catalogue, scipy.integrate costs 0.5 s

    a0, a = u0 ** (1.0 / depth), u ** (1.0 / depth)
    power = (a0 ** (2 - depth) - a ** (2 - depth)) / (depth - 2)
    regular, _ = scipy.integrate.quad(lambda b: b / (s - b**depth), a0, a, epsabs=0.0, epsrel=1e-12, limit=200)
    return (power + regular) / s


def _haar(generator: torch.Generator, rows: int, cols: int) -> torch.Tensor:
    """A Haar-distributed ``rows x cols`` matrix with orthonormal columns (rows >= cols): QR of a
    Gaussian with the signs of R's diagonal moved into Q (Mezzadri 2007)."""
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=generator, dtype=torch.float64))
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return q * signs


class DeepLinear(FiniteSum, Landscape):
    """``f(W_1..W_L) = 1/(2n) sum_i |W_L ... W_1 a_i - y_i|^2``, ``y_i = M a_i (+ noise)``, on whitened inputs.

    See the module docstring for the data model and what is known (every local minimum global,
    the saddle at the origin, Saxe's learning dynamics, the closed-form population loss).
    """

    family = "deep_linear"
    params = (
        Param(
            "dim", int, doc="data dimension d (inputs and outputs); the search space has h d + (L-2) h^2 + d h", low=1
        ),
        Param("depth", int, 3, "layers L of the network W_L ... W_1", low=2, high=64),
        Param("width", int, 0, "hidden width h (0: the data dimension d)", low=0),
        SAMPLES,
        Param(
            "teacher",
            tuple,
            (),
            "teacher singular values s_1 >= s_2 >= ... > 0 (at most d of them, the rest 0); "
            "() gives d values log-spaced from 4 down to 0.5",
        ),
        Param("label_noise", float, 0.0, "standard deviation of the Gaussian noise on each label coordinate", low=0.0),
        Param(
            "init",
            str,
            "gaussian",
            "start: Gaussian layers of scale init_scale, or Saxe's balanced start aligned with the data's modes",
            choices=("gaussian", "balanced"),
        ),
        Param(
            "init_scale",
            float,
            0.1,
            "per-layer scale of the start: the end-to-end map is of size init_scale^depth",
            low=0.0,
            low_open=True,
        ),
    )
    formula = (
        "f = 1/(2n) sum_i |W_L ... W_1 a_i - y_i|^2,  y_i = M a_i + label_noise e_i,  A^T A / n = I (n >= d),"
        "  M = U diag(s) V^T"
    )
    reference = "Kawaguchi 2016 (NeurIPS); Saxe, McClelland and Ganguli 2014 (ICLR); Baldi and Hornik 1989"
    start = (
        "init='gaussian': W_l entries ~ N(0, init_scale^2 / fan_in); init='balanced': W_1 = c R_1 Q_r^T, "
        "W_l = c R_l R_{l-1}^T, W_L = c P_r R_{L-1}^T with c = init_scale, P_r, Q_r the top r = min(width, dim) "
        "singular vectors of the sample cross-covariance and R_l random orthonormal width x r frames per run "
        "(every mode strength u_k(0) = init_scale^depth)"
    )

    depth: int
    width: int
    samples: int
    teacher: tuple[Any, ...]
    label_noise: float
    init: str
    init_scale: float

    # --- parameters ----------------------------------------------------------------------------

    def _hidden(self) -> int:
        return self.width or self.dim

    def _check(self) -> None:
        spectrum = self.teacher
        if len(spectrum) > self.dim:
            raise SpecError(f"{self.family}: teacher has {len(spectrum)} singular values, at most dim={self.dim}")
        for value in spectrum:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
                raise SpecError(f"{self.family}: teacher singular values must be finite numbers > 0, got {value!r}")
        if any(a < b for a, b in zip(spectrum, spectrum[1:])):
            raise SpecError(f"{self.family}: teacher singular values must be non-increasing, got {spectrum!r}")
        h, d, L = self._hidden(), self.dim, self.depth
        if h * d * 2 + (L - 2) * h * h > 2**40:
            raise SpecError(
                f"{self.family}: {h * d * 2 + (L - 2) * h * h} weights is too many; use a smaller dim or width"
            )

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        """The inputs and labels (n x d each) and a few d x d statistics on the device; the host
        draws the Gaussian sample, its QR and the labels in float64. A run's evaluation holds its
        layers' products and their tangents (about 4 L max(d, h)^2 numbers) and, on a minibatch,
        the gathered inputs, labels and residuals (at most 3 n d)."""
        n, d, h, size = self.samples, self.dim, self._hidden(), dtype.itemsize
        q = max(d, h)
        params = 2 * h * d + (self.depth - 2) * h * h
        return Footprint(
            instance=(2 * n * d + 5 * d * d) * size + 4 * params * (8 + size),
            what=f"its {n} examples ({n} x {d} inputs and labels)",
            per_run=(4 * self.depth * q * q + 3 * n * d) * size,
            host=(4 * n * d + 8 * d * d) * 8 + 4 * params * 8,
            coordinates=params,
        )

    # --- the instance --------------------------------------------------------------------------

    def _build(self) -> None:
        d, h, L, n = self.dim, self._hidden(), self.depth, self.samples
        self.data_dim, self.hidden = d, h
        self.shapes = [(h, d)] + [(h, h)] * (L - 2) + [(d, h)]
        self.offsets = [0]
        for rows, cols in self.shapes:
            self.offsets.append(self.offsets[-1] + rows * cols)
        self.dim = self.offsets[-1]
        self.rank = min(h, d)

        # Teacher: Haar frames (depend on d only, so a sweep over the spectrum keeps them).
        frames = self.instance_generator("teacher", d)
        left, right = _haar(frames, d, d), _haar(frames, d, d)
        spectrum = [float(v) for v in self.teacher] or default_spectrum(d)
        self.teacher_values = spectrum + [0.0] * (d - len(spectrum))
        teacher = (left * torch.tensor(self.teacher_values, dtype=torch.float64)) @ right.T

        # Inputs (whitened exactly when n >= d) and labels; noise from its own stream.
        gaussian = torch.randn(n, d, generator=self.instance_generator("inputs", d, n), dtype=torch.float64)
        self.whitened = n >= d
        if self.whitened:
            q, r = torch.linalg.qr(gaussian)
            signs = torch.sign(torch.diagonal(r))
            signs[signs == 0] = 1.0
            inputs = math.sqrt(n) * q * signs
        else:
            inputs = gaussian
        labels = inputs @ teacher.T
        if self.label_noise > 0:
            noise = torch.randn(n, d, generator=self.instance_generator("label_noise", d, n), dtype=torch.float64)
            labels = labels + self.label_noise * noise

        # Sufficient statistics: f = c0 + 1/2 tr((W - W0) Sigma (W - W0)^T).
        sigma = inputs.T @ inputs / n
        cross = labels.T @ inputs / n
        eigenvalues, basis = torch.linalg.eigh(sigma)
        keep = eigenvalues > 1e-12 * float(eigenvalues.max())
        lam, basis = eigenvalues[keep], basis[:, keep]
        w0 = cross @ (basis / lam) @ basis.T
        # Noiseless labels lie in the span of the inputs: the residual is 0, and so is f* when the
        # network's rank r reaches the teacher's (exactly, not the float64 round-off of ~1e-30).
        noiseless = self.label_noise == 0
        self.residual = 0.0 if noiseless else 0.5 * float(((inputs @ w0.T - labels) ** 2).sum()) / n
        self.origin_value = 0.5 * float((labels**2).sum()) / n
        whitened_target = w0 @ basis * lam.sqrt()
        p, tau, qh = torch.linalg.svd(whitened_target, full_matrices=False)
        self.fit_values = [float(v) for v in tau]
        r = self.rank
        exact = noiseless and r >= len(self.teacher or self.teacher_values)
        f_star = 0.0 if exact else self.residual + 0.5 * float((tau[r:] ** 2).sum())
        best = (p[:, :r] * tau[:r]) @ qh[:r] @ (basis / lam.sqrt()).T

        # Modes of the sample cross-covariance (the balanced start aligns with them).
        c_left, c_values, c_right_t = torch.linalg.svd(cross)
        self.cross_values = [float(v) for v in c_values]
        self.mode_left64, self.mode_right64 = c_left[:, :r].contiguous(), c_right_t[:r].T.contiguous()

        self.inputs64, self.labels64, self.teacher64 = inputs, labels, teacher
        # The known points, from float64 statistics (placed on the device only afterwards).
        self.target, self.metric = w0, None if self.whitened else sigma
        u, values, vh = torch.linalg.svd(best)
        frames = [torch.eye(h, r, dtype=torch.float64)] * (L - 1)
        minimum = self._minimum(self._balanced(u[:, :r], values[:r], vh[:r].T, frames), f_star)
        origin = self._origin()
        self.known = Known(f_star=f_star, saddle=origin, minima=[minimum])  # the origin: the designated saddle

        self.inputs, self.labels = self._tensor(inputs), self._tensor(labels)
        self.teacher_matrix, self.target = self._tensor(teacher), self._tensor(w0)
        self.metric = None if self.whitened else self._tensor(sigma)
        self.mode_left, self.mode_right = self._tensor(self.mode_left64), self._tensor(self.mode_right64)

    def _balanced(
        self, left: torch.Tensor, values: torch.Tensor, right: torch.Tensor, frames: list[torch.Tensor]
    ) -> torch.Tensor:
        """The flat weights of ``W_1 = R_1 D Q^T, W_l = R_l D R_{l-1}^T, W_L = P D R_{L-1}^T`` with
        ``D = diag(values^(1/L))`` (balanced: every layer carries the same share): end-to-end
        ``P diag(values) Q^T``."""
        share = values.clamp(min=0.0) ** (1.0 / self.depth)
        layers = [frames[0] * share @ right.T]
        for i in range(1, self.depth - 1):
            layers.append(frames[i] * share @ frames[i - 1].T)
        layers.append(left * share @ frames[-1].T)
        return torch.cat([w.reshape(-1) for w in layers])

    def _minimum(self, point: torch.Tensor, value: float) -> CriticalPoint:
        note = (
            "the balanced factorisation of the best rank-min(width, dim) map; one point of a manifold of "
            "global minima (W_l -> G_l W_l G_{l-1}^{-1}); every local minimum is global (Kawaguchi 2016)"
        )
        if self.dim > DENSE_HESSIAN_MAX:
            return CriticalPoint(kind="minimum", value=value, point=point, note=note)
        eigenvalues = torch.linalg.eigvalsh(self.dense_hessian(point))
        scale = max(1.0, float(eigenvalues.abs().max()))
        eigenvalues = torch.where(eigenvalues.abs() <= 1e-10 * scale, torch.zeros_like(eigenvalues), eigenvalues)
        return CriticalPoint(
            kind="minimum",
            value=value,
            point=point,
            index=0,
            lambda_max=float(eigenvalues.max()),
            lambda_min=float(eigenvalues.min()),
            trace=float(eigenvalues.sum()),
            note=note,
        )

    def _origin(self) -> CriticalPoint:
        """The origin: value mean |y|^2 / 2; for L = 2 Hessian eigenvalues +-sigma_j(C) (h times each),
        for L >= 3 a zero Hessian."""
        zero = torch.zeros(self.dim, dtype=torch.float64)
        if self.depth == 2:
            top = self.cross_values[0]
            positive = sum(1 for v in self.cross_values if v > 1e-12 * max(top, 1e-300))
            return CriticalPoint(
                kind="saddle",
                value=self.origin_value,
                point=zero,
                index=self.hidden * positive,
                lambda_max=top,
                lambda_min=-top,
                trace=0.0,
                note="a strict saddle: Hessian eigenvalues +-sigma_j(C), each width times (C = Y^T A / n)",
            )
        return CriticalPoint(
            kind="saddle",
            value=self.origin_value,
            point=zero,
            index=0,
            lambda_max=0.0,
            lambda_min=0.0,
            trace=0.0,
            note=(
                f"a degenerate saddle of order {self.depth - 1}: all derivatives of order < {self.depth} vanish "
                f"(the Hessian is 0); the first nonzero term is -<W_L ... W_1, C>"
            ),
        )

    def dense_hessian(self, point: torch.Tensor) -> torch.Tensor:
        """The training loss's ``dim x dim`` Hessian at one point, from closed-form HVPs in float64
        (the instance's statistics are cast: exact for a float64 instance)."""
        device = self.target.device
        eye = torch.eye(self.dim, dtype=torch.float64, device=device)
        hessian = self.hvp(point.to(device, torch.float64).expand(self.dim, -1), eye).cpu()
        return 0.5 * (hessian + hessian.T)

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        if self.init == "gaussian":
            layers = [
                torch.randn(rows, cols, generator=generator, dtype=torch.float64) * (self.init_scale / math.sqrt(cols))
                for rows, cols in self.shapes
            ]
            return torch.cat([w.reshape(-1) for w in layers])
        r = self.rank
        frames = [_haar(generator, self.hidden, r) for _ in range(self.depth - 1)]
        values = torch.full((r,), self.init_scale**self.depth, dtype=torch.float64)
        return self._balanced(self.mode_left64, values, self.mode_right64, frames)

    # --- evaluation ----------------------------------------------------------------------------

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The weight matrices ``W_1 .. W_L`` of each row of ``x``: ``(B, out, in)`` views or copies."""
        batch = x.shape[0]
        return [
            x[:, a:b].reshape(batch, rows, cols)
            for (rows, cols), a, b in zip(self.shapes, self.offsets[:-1], self.offsets[1:])
        ]

    def _prefixes(self, layers: list[torch.Tensor]) -> list[torch.Tensor]:
        """``P_l = W_l ... W_1`` for l = 1..L (``P_L`` the end-to-end map)."""
        out = [layers[0]]
        for w in layers[1:]:
            out.append(torch.bmm(w, out[-1]))
        return out

    def end_to_end(self, x: torch.Tensor) -> torch.Tensor:
        """``W = W_L ... W_1`` of each row: ``(B, d, d)``."""
        return self._prefixes(self.layers(x))[-1]

    def mode_strengths(self, x: torch.Tensor) -> torch.Tensor:
        """``u_k = p_k^T W q_k``: the end-to-end map projected on the top r singular pairs of the
        sample cross-covariance (the teacher's modes for noiseless labels), ``(B, r)``."""
        w = self.end_to_end(x)
        left, right = self.mode_left.to(x.dtype), self.mode_right.to(x.dtype)
        return torch.einsum("dk,bde,ek->bk", left, w, right)

    def _deviation(self, w: torch.Tensor) -> torch.Tensor:
        return w - self.target.to(w.dtype)

    def _apply_metric(self, m: torch.Tensor) -> torch.Tensor:
        return m if self.metric is None else m @ self.metric.to(m.dtype)

    def _full(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-batch loss and ``dF/dW`` from the sufficient statistics."""
        deviation = self._deviation(w)
        weighted = self._apply_metric(deviation)
        value = self.residual + 0.5 * (deviation * weighted).sum(dim=(1, 2))
        return value, weighted

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self._full(self.end_to_end(x))[0]

    def example_losses(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        w = self.end_to_end(x)
        inputs = gather_rows(self.inputs.to(x.dtype), index)
        labels = gather_rows(self.labels.to(x.dtype), index)
        residual = torch.matmul(inputs, w.transpose(1, 2)) - labels
        return 0.5 * (residual * residual).sum(dim=2)

    def _backward(self, layers: list[torch.Tensor], prefixes: list[torch.Tensor], g: torch.Tensor) -> torch.Tensor:
        """The flat gradient ``dF/dW_l = (W_L..W_{l+1})^T G (W_{l-1}..W_1)^T`` from ``G = dF/dW``."""
        grads = []
        upstream = g
        for i in range(self.depth - 1, -1, -1):
            grads.append(upstream if i == 0 else torch.bmm(upstream, prefixes[i - 1].transpose(1, 2)))
            if i > 0:
                upstream = torch.bmm(layers[i].transpose(1, 2), upstream)
        return torch.cat([gr.reshape(g.shape[0], -1) for gr in reversed(grads)], dim=1)

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch_loss_and_grad(x, None)

    def batch_loss_and_grad(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach()
        layers = self.layers(x)
        prefixes = self._prefixes(layers)
        w = prefixes[-1]
        if index is None:
            value, g = self._full(w)
        else:
            inputs = gather_rows(self.inputs.to(x.dtype), index)
            residual = torch.bmm(inputs, w.transpose(1, 2)) - gather_rows(self.labels.to(x.dtype), index)
            m = index.shape[1]
            value = 0.5 * (residual * residual).sum(dim=(1, 2)) / m
            g = torch.bmm(residual.transpose(1, 2), inputs) / m
        return value, self._backward(layers, prefixes, g)

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The full training loss's Hessian times v: forward-mode tangents of the prefixes
        ``dP_l = V_l P_{l-1} + W_l dP_{l-1}``, ``dG = dW Sigma``, then the tangent of backprop
        ``d(D_l P_{l-1}^T) = dD_l P_{l-1}^T + D_l dP_{l-1}^T``, ``dD_{l-1} = V_l^T D_l + W_l^T dD_l``."""
        x, v = x.detach(), v.detach()
        layers, directions = self.layers(x), self.layers(v.to(x.dtype))
        prefixes = self._prefixes(layers)
        tangents = [directions[0]]
        for i in range(1, self.depth):
            tangents.append(torch.bmm(directions[i], prefixes[i - 1]) + torch.bmm(layers[i], tangents[i - 1]))
        _, upstream = self._full(prefixes[-1])
        d_upstream = self._apply_metric(tangents[-1])
        out = []
        for i in range(self.depth - 1, -1, -1):
            if i == 0:
                out.append(d_upstream)
                break
            out.append(
                torch.bmm(d_upstream, prefixes[i - 1].transpose(1, 2))
                + torch.bmm(upstream, tangents[i - 1].transpose(1, 2))
            )
            d_upstream = torch.bmm(directions[i].transpose(1, 2), upstream) + torch.bmm(
                layers[i].transpose(1, 2), d_upstream
            )
            upstream = torch.bmm(layers[i].transpose(1, 2), upstream)
        return torch.cat([o.reshape(x.shape[0], -1) for o in reversed(out)], dim=1)

    def test_loss(self, x: torch.Tensor) -> torch.Tensor:
        """``E_{a ~ N(0, I)} |W a - y|^2 / 2 = |W - M|_F^2 / 2 + label_noise^2 d / 2``."""
        deviation = self.end_to_end(x) - self.teacher_matrix.to(x.dtype)
        return 0.5 * (deviation * deviation).sum(dim=(1, 2)) + 0.5 * self.label_noise**2 * self.data_dim

    # --- facts ---------------------------------------------------------------------------------

    def half_times(self) -> list[float | None]:
        """Saxe et al.'s gradient-flow time (``lr * steps``) for each of the top r modes to reach half
        of ``sigma_k(C)`` from the balanced start ``u0 = init_scale^depth`` (None where
        ``sigma_k <= 2 u0``: nothing to learn). Exact dynamics on a whitened sample."""
        u0 = self.init_scale**self.depth
        return [mode_time(s, u0, self.depth) if s > 2.0 * u0 else None for s in self.cross_values[: self.rank]]

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            **self.finite_sum_facts(),
            "depth": self.depth,
            "width": self.hidden,
            "rank": self.rank,
            "whitened": self.whitened,
            "teacher_singular_values": self.teacher_values,
            "cross_covariance_singular_values": self.cross_values,
            "least_squares_residual": self.residual,
            "origin_value": self.origin_value,
            "origin_saddle_order": self.depth - 1,
            "every_local_minimum_is_global": True,
        }
        if self.whitened:
            facts["balanced_half_times"] = self.half_times()
        return facts
