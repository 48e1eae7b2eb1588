r"""A two-layer student network learning a two-layer teacher on Gaussian inputs (a finite sum).

The student is a soft committee machine, ``f_W(a) = sum_{k=1}^{hidden} g(w_k . a)``: one hidden layer
of ``hidden`` units with input weights ``w_k`` (the rows of W) and the second layer fixed to ones
(Saad and Solla 1995; Safran and Shamir 2018; no trainable second layer). The teacher is the same
kind of network, ``y(a) = sum_{j=1}^{teacher_hidden} g(v_j . a)``, with orthonormal weights
``v_j = e_j`` (Safran and Shamir's target; ``rotate=True``: the first rows of a seeded Haar-random
orthogonal matrix). Inputs ``a ~ N(0, I_dim)``, n = ``samples`` of them per instance, labels
noiseless. The loss is

    f(W) = (1/n) sum_i (f_W(a_i) - y(a_i))^2 / 2,

with ``g(z) = erf(z / sqrt 2)`` (``activation="erf"``, Saad and Solla) or ``g(z) = max(0, z)``
(``"relu"``, Safran and Shamir). The spec's ``dim`` is the *input* dimension d; the search space is
the ``hidden x dim`` matrix W, flattened row by row: ``self.dim = hidden * dim`` coordinates.

Population loss in closed form: with ``K(u, v) = E_a[g(u.a) g(v.a)]``,

    E f = 1/2 sum_{k,l} K(w_k, w_l) - sum_{k,j} K(w_k, v_j) + 1/2 sum_{j,j'} K(v_j, v_j'),

* erf: ``K(u, v) = (2/pi) arcsin(u.v / sqrt((1 + |u|^2)(1 + |v|^2)))`` (Saad and Solla 1995);
* relu: the arc-cosine kernel of degree 1, ``K(u, v) = |u||v| (sin t + (pi - t) cos t) / (2 pi)``,
  t the angle between u and v (Cho and Saul 2009; ``K(u, u) = |u|^2 / 2``).

Its gradient is in closed form too (:meth:`TeacherStudent.test_loss_and_grad`):
``d E f / d w_k = sum_l K_1(w_k, w_l) - sum_j K_1(w_k, v_j)`` with ``K_1`` the derivative in the first
argument: ``(2/pi) (1 - c^2)^{-1/2} [v / s - c u / (1 + |u|^2)]`` (erf, ``s = sqrt((1+|u|^2)(1+|v|^2))``,
``c = u.v / s``) and ``[(pi - t) v + |v| sin t u / |u|] / (2 pi)`` (relu).

Known structure:

* ``f* = 0`` whenever ``hidden >= teacher_hidden``: the labels are noiseless and the student can
  represent the teacher. The global minima (of the population loss, and so zeros of the training
  loss) are the teacher's units in any order, the ``hidden - teacher_hidden`` extra units idle:
  zero rows (``g(0) = 0`` for both activations), and further for erf pairs ``u, -u`` that cancel
  (g is odd), for relu a teacher unit split into parallel parts ``alpha v_j, (1 - alpha) v_j``,
  ``0 <= alpha <= 1`` (relu is positively homogeneous). With few samples (n below about
  ``hidden * dim``) the training loss has further zeros that do not generalise.
  ``known.minima`` lists one representative: the teacher, padded with zero rows. Its Hessian is the
  Gauss-Newton matrix ``(1/n) sum_i J_i J_i^T`` (the residuals vanish), ``J_i = (g'(v_k.a_i) a_i)_k``,
  computed in float64 at construction when ``hidden * dim <= 1024`` (else not known); for relu with
  zero rows there is none (the loss is only once differentiable across a zero row).
* Spurious local minima (Safran and Shamir 2018, computer-assisted proof for the population loss):
  with relu, ``6 <= hidden = teacher_hidden = k <= 20`` and the orthonormal teacher, the population
  loss has local minima that are not global, gradient descent from Xavier starts ends in them with a
  probability that grows with k (about a third of runs at k = 10 in their experiments), and mild
  over-parameterisation (hidden = k + 1, k + 2) makes that much rarer. The record field ``stuck``
  says for each run whether it settled away from the global minimum of the training loss (see
  :data:`STUCK_LOSS`, :data:`SETTLED_GRADIENT`): a spurious minimum, or a plateau too flat to leave
  within the budget, which a small gradient cannot tell apart; ``problems/teacher_student.toml``
  measures the share with n = 2000 examples, where the training loss is close to the population
  loss whose spurious minima the paper proves.

Closed-form minibatch gradient (z = W a, B runs each on its own m examples, no (B, m, k, d)
temporaries): ``grad_W = (1/m) sum_i r_i g'(z_i) a_i^T`` with ``r_i = f_W(a_i) - y_i``; closed-form
Hessian-vector product ``H[U] = (1/m) sum_i [(sum_l g'(z_il) (u_l.a_i)) g'(z_i) + r_i g''(z_i) * (U a_i)] a_i^T``
(``g'' = -z g'`` for erf, 0 for relu: the product the relu's piecewise-linear pieces give, as autograd does).

Start: ``W_kl ~ N(0, init_scale^2 / dim)``, rows of norm about ``init_scale`` (Xavier-like: with
``hidden = dim`` the variance ``1/dim`` is Glorot's ``2 / (fan_in + fan_out)``).

References: D. Saad and S. A. Solla, "On-line learning in soft committee machines", Phys. Rev. E 52,
4225 (1995); I. Safran and O. Shamir, "Spurious local minima are common in two-layer ReLU neural
networks", ICML 2018; Y. Cho and L. K. Saul, "Kernel methods for deep learning", NeurIPS 2009.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import CriticalPoint, FamilyField, Footprint, Known, Landscape
from landbench.landscapes.finite_sum import FiniteSum, gather_rows
from landbench.outcomes import is_diverged
from landbench.spec import Param

#: A run whose final training loss exceeds this ended away from every global minimum (whose training
#: loss is 0: the labels are noiseless; Safran and Shamir's spurious minima lie at about 1e-2 and above
#: for 6 <= k <= 20 in this normalisation). The training loss, not the population loss: on a small
#: sample a run can fit the data exactly and still be far from the teacher, which is overfitting
#: (the generalization gap says so), not a spurious minimum.
STUCK_LOSS = 1e-3
#: ... and it has settled there when the norm of its full-batch training gradient is below this;
#: otherwise it is still moving (the budget was too short to say). Float32 gradient descent at
#: k = 10 sits at a spurious minimum with gradient norms up to about 2e-3 after 3000 steps.
SETTLED_GRADIENT = 5e-3
#: The largest search space whose known minimum gets its Hessian summary at construction.
HESSIAN_DIM = 1024

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SQRT_HALF = math.sqrt(0.5)


def summarize_stuck(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How many runs ended stuck in a spurious minimum (``stuck`` true), how many reached a global
    minimum (false), how many were still moving (null, not diverged) and how many diverged; the
    share stuck among all runs, and among the runs that settled (stuck or reached)."""
    stuck = sum(1 for r in records if not is_diverged(r) and r.get("stuck") is True)
    reached = sum(1 for r in records if not is_diverged(r) and r.get("stuck") is False)
    diverged = sum(1 for r in records if is_diverged(r))
    settled = stuck + reached
    return {
        "runs": len(records),
        "stuck": stuck,
        "reached": reached,
        "moving": len(records) - settled - diverged,
        "diverged": diverged,
        "stuck_share": stuck / len(records) if records else None,
        "stuck_share_settled": stuck / settled if settled else None,
    }


def describe_stuck(summary: dict[str, Any]) -> str:
    """``"stuck 34% (11/32; 1 moving)"``: the share of all runs stuck, and the runs still moving."""
    runs = summary["runs"] or 1
    text = f"stuck {100 * summary['stuck'] / runs:.0f}% ({summary['stuck']}/{summary['runs']}"
    return text + (f"; {summary['moving']} moving)" if summary["moving"] else ")")


def _erf_rows(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u / s, s)`` with ``s = sqrt(1 + |u|^2)`` per row of u (B, k, d), without overflow at any
    finite u: through the largest entry m, ``s = m hypot(1/m, |u/m|)`` where m > 1."""
    largest = u.abs().amax(-1, keepdim=True)
    big = largest.clamp_min(1.0)  # 1 where the plain formula cannot overflow (every |u_i| <= 1)
    scaled = torch.linalg.vector_norm(u / big, dim=-1, keepdim=True)
    scale = torch.where(
        largest > 1.0, big * torch.hypot(1.0 / big, scaled), torch.sqrt(1.0 + (u * u).sum(-1, keepdim=True))
    )
    return u / scale, scale


class TeacherStudent(FiniteSum, Landscape):
    r"""A soft committee machine ``sum_k g(w_k . a)`` fitted to a teacher ``sum_j g(v_j . a)`` on n
    Gaussian inputs; see the module docstring for the formulas, the closed forms and the known
    structure. ``self.dim = hidden * dim`` (the search space), ``self.data_dim = dim`` (the inputs)."""

    family = "teacher_student"
    params = (
        Param("dim", int, doc="input dimension d (the search space is the hidden x d matrix W)", low=1),
        Param("hidden", int, 4, "student hidden units k (the second layer is fixed to ones)", low=1, high=4096),
        Param("teacher_hidden", int, 4, "teacher hidden units (orthonormal teacher vectors: <= dim)", low=1, high=4096),
        Param("samples", int, 256, "training examples n drawn per instance", low=1, high=2**24 - 1),
        Param("activation", str, "relu", "g: relu max(0, z), or erf(z / sqrt 2) (Saad-Solla)", choices=("relu", "erf")),
        Param("rotate", bool, False, "teacher vectors: a seeded random orthonormal set instead of e_1 .. e_t"),
        Param(
            "init_scale",
            float,
            1.0,
            "start rows ~ N(0, init_scale^2 I / dim): norm about init_scale",
            low=0.0,
            low_open=True,
        ),
    )
    formula = "f(W) = (1/n) sum_i (sum_k g(w_k.a_i) - sum_j g(v_j.a_i))^2 / 2,  a_i ~ N(0, I_d),  v_j orthonormal"
    reference = "Saad and Solla 1995; Safran and Shamir 2018; Cho and Saul 2009"
    start = "W_kl ~ N(0, init_scale^2 / dim) (Xavier-like)"
    test_loss_kind = "closed form"
    outcome_fields = (
        FamilyField(
            "stuck",
            f"whether the run settled away from the global minimum: final training loss > {STUCK_LOSS:g} with a "
            f"gradient norm <= {SETTLED_GRADIENT:g} (true: a spurious minimum, or a plateau too flat to leave), "
            f"training loss <= {STUCK_LOSS:g} (false), null when still moving or diverged; summary: the share stuck",
            lambda records: summarize_stuck(records),
            describe_stuck,
        ),
    )

    hidden: int
    teacher_hidden: int
    samples: int
    activation: str
    rotate: bool
    init_scale: float

    def _check(self) -> None:
        d = self.dim  # the data dimension (nothing is built yet)
        if self.teacher_hidden > d:
            raise SpecError(
                f"teacher_student: teacher_hidden={self.teacher_hidden} orthonormal teacher vectors need "
                f"dim >= teacher_hidden, got dim={d}"
            )
        if self.hidden * d > 2**26:
            raise SpecError(
                f"teacher_student: hidden * dim = {self.hidden * d} coordinates is too many (at most 2**26)"
            )

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        """The inputs and labels (n (d + 1)) and the teacher, in float64 on the host (with the Gauss-Newton
        Jacobian and Hessian of the known minimum when it is computed) and in ``dtype`` on the device;
        per run of a full-batch evaluation four (n, hidden) tensors and (n,) residuals."""
        d, k, n = self.dim, self.hidden, self.samples  # dim: the data dimension (nothing is built)
        size = dtype.itemsize
        data = n * (d + 1) + self.teacher_hidden * d + 2 * k * d
        params = k * d
        host = data * 8 + (n * params + params * params) * 8 * (params <= HESSIAN_DIM)
        return Footprint(
            instance=data * size,
            what="its inputs and labels, and the teacher",
            per_run=(4 * n * k + 2 * n + 3 * params) * size,
            host=host,
            coordinates=params,
        )

    # --- the instance ---------------------------------------------------------------------------

    def _build(self) -> None:
        d, k, t, n = self.dim, self.hidden, self.teacher_hidden, self.samples
        self.data_dim = d
        self.dim = k * d
        teacher = torch.zeros(t, d, dtype=torch.float64)
        if self.rotate:
            gauss = torch.randn(d, d, generator=self.instance_generator(d, "teacher"), dtype=torch.float64)
            q, r = torch.linalg.qr(gauss)
            q = q * torch.sign(torch.diagonal(r))  # Haar: fix the signs of the QR factor
            teacher = q.T[:t].contiguous()
        else:
            teacher[torch.arange(t), torch.arange(t)] = 1.0
        inputs = torch.randn(n, d, generator=self.instance_generator(d, n, "inputs"), dtype=torch.float64)
        labels = self._g(inputs @ teacher.T).sum(1)
        self.teacher = self._tensor(teacher)
        self.inputs = self._tensor(inputs)
        self.labels = self._tensor(labels)
        # the teacher's constant term of the population loss, 1/2 sum_{j,j'} K(v_j, v_j')
        self.teacher_term = 0.5 * float(self._kernel(teacher[None], teacher[None], same=True).sum())
        if k < t:
            self.known = Known()
            return
        point = torch.zeros(k, d, dtype=torch.float64)
        point[:t] = teacher
        self.known = Known(f_star=0.0, minima=[self._teacher_minimum(point.reshape(-1), inputs)])

    def _teacher_minimum(self, point: torch.Tensor, inputs: torch.Tensor) -> CriticalPoint:
        """The teacher padded with zero rows, its Hessian from the Gauss-Newton matrix (exact there:
        every residual is 0), in float64."""
        k, d, t = self.hidden, self.data_dim, self.teacher_hidden
        note = (
            f"the teacher's {t} units then {k - t} zero rows; the global minima are the teacher's units in any "
            f"order with the extra units idle (zero rows; "
            + (
                "cancelling pairs u, -u for erf)"
                if self.activation == "erf"
                else "for relu also a unit split into parallel parts)"
            )
        )
        if k == t:
            note = "the teacher; the global minima are its units in any order (loss 0, population loss 0)"
        minimum = CriticalPoint(kind="minimum", value=0.0, point=point, note=note)
        if self.dim > HESSIAN_DIM or (self.activation == "relu" and k > t):
            return minimum
        hessian = self._gauss_newton(point.reshape(k, d), inputs)
        eigenvalues = torch.linalg.eigvalsh(hessian)
        return CriticalPoint(
            kind="minimum",
            value=0.0,
            point=point,
            lambda_max=float(eigenvalues[-1]),
            lambda_min=float(eigenvalues[0]),
            trace=float(hessian.diagonal().sum()),
            note=note,
        )

    def _gauss_newton(self, w: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """``(1/n) J^T J`` with the rows ``J_i = (g'(w_k.a_i) a_i)_k`` (the Hessian where the residuals vanish)."""
        slope = self._g_prime(inputs @ w.T)  # (n, k)
        jacobian = (slope[:, :, None] * inputs[:, None, :]).reshape(inputs.shape[0], -1)
        return jacobian.T @ jacobian / inputs.shape[0]

    def facts(self) -> dict[str, Any]:
        """The data and search dimensions, the finite-sum facts, and the definition of ``stuck``."""
        return {
            "hidden": self.hidden,
            "teacher_hidden": self.teacher_hidden,
            "activation": self.activation,
            "teacher": "random orthonormal (seeded)" if self.rotate else "e_1 .. e_t",
            "second_layer": "fixed to ones",
            "population_loss_at_teacher": 0.0,
            "stuck_field": f"record 'stuck': training loss > {STUCK_LOSS:g} and full-batch gradient norm <= "
            f"{SETTLED_GRADIENT:g} (a spurious minimum or a flat plateau); false when the training loss is <= "
            f"{STUCK_LOSS:g}; "
            "null when still moving or diverged",
            **self.finite_sum_facts(),
        }

    # --- activation -----------------------------------------------------------------------------

    def _g(self, z: torch.Tensor) -> torch.Tensor:
        return torch.erf(z * _SQRT_HALF) if self.activation == "erf" else torch.relu(z)

    def _g_prime(self, z: torch.Tensor) -> torch.Tensor:
        if self.activation == "erf":
            return _SQRT_2_OVER_PI * torch.exp(-0.5 * z * z)
        return (z > 0).to(z.dtype)

    # --- the training loss ----------------------------------------------------------------------

    def _weights(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.hidden, self.data_dim)

    def _forward(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(inputs (B|1, m, d), pre-activations z (B, m, k), residuals r (B, m))`` of each run's examples."""
        inputs = gather_rows(self.inputs, index)
        labels = gather_rows(self.labels, index)
        z = torch.matmul(inputs, self._weights(x).transpose(1, 2))
        residual = self._g(z).sum(2) - labels
        if self.activation == "erf":  # erf saturates: a weight of inf would leave the loss finite, not diverged
            residual = torch.where(torch.isfinite(x).all(1, keepdim=True), residual, math.nan)
        return inputs, z, residual

    def example_losses(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """``(f_W(a_i) - y_i)^2 / 2`` for each run's examples: ``(B, m)``, or ``(B, n)`` for all."""
        _, _, residual = self._forward(x, index)
        return 0.5 * residual * residual

    def batch_loss_and_grad(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean_i r_i^2 / 2`` and ``(1/m) sum_i r_i g'(z_i) a_i^T`` (as (B, hidden * dim))."""
        inputs, z, residual = self._forward(x, index)
        m = z.shape[1]
        coefficient = self._g_prime(z).mul_(residual[:, :, None] / m)  # (B, m, k)
        grad = torch.matmul(coefficient.transpose(1, 2), inputs)  # (B, k, d)
        return 0.5 * (residual * residual).mean(1), grad.reshape(x.shape[0], -1)

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The full-batch ``H[U] = (1/n) sum_i [s_i g'(z_i) + r_i g''(z_i) * (U a_i)] a_i^T`` with
        ``s_i = sum_l g'(z_il) (u_l.a_i)``; ``g'' = -z g'`` (erf) or 0 (relu)."""
        inputs, z, residual = self._forward(x, None)
        n = z.shape[1]
        slope = self._g_prime(z)
        along = torch.matmul(inputs, self._weights(v).transpose(1, 2))  # (B, n, k): u_l . a_i
        coefficient = slope * (slope * along).sum(2, keepdim=True)
        if self.activation == "erf":
            coefficient = coefficient - residual[:, :, None] * z * slope * along
        product = torch.matmul(coefficient.transpose(1, 2), inputs) / n
        return product.reshape(x.shape[0], -1)

    # --- the population loss --------------------------------------------------------------------

    def _kernel(self, u: torch.Tensor, v: torch.Tensor, same: bool = False) -> torch.Tensor:
        """``K(u_k, v_l) = E g(u_k.a) g(v_l.a)`` for rows u (B, k, d) and v (B|1, l, d): (B, k, l);
        ``same``: u and v are the same rows (the diagonal is then taken as exactly ``K(u, u)``)."""
        if self.activation == "erf":  # c = u.v / (s_u s_v) from the unit rows, which never overflow
            (unit_u, scale_u), (unit_v, _) = _erf_rows(u), _erf_rows(v)
            value = (2.0 / math.pi) * torch.asin(torch.matmul(unit_u, unit_v.transpose(1, 2)).clamp(-1.0, 1.0))
            if same:  # c = 1 - 1/s^2 and asin(1 - 2 y^2) = pi/2 - 2 asin(y): no rounding of c near 1
                eye = torch.eye(u.shape[1], dtype=torch.bool, device=u.device)
                own = 1.0 - (4.0 / math.pi) * torch.asin(1.0 / (scale_u * math.sqrt(2.0)))  # (B, k, 1)
                value = torch.where(eye, own, value)
            return value
        dot = torch.matmul(u, v.transpose(1, 2))
        nu, nv = (u * u).sum(2), (v * v).sum(2)
        length = torch.sqrt(nu)[:, :, None] * torch.sqrt(nv)[:, None, :]
        cos = torch.where(length > 0, dot / torch.where(length > 0, length, 1.0), 0.0).clamp(-1.0, 1.0)
        if same:  # the diagonal is |u|^2 / 2 exactly, and differentiable (arccos' is not at cos = 1)
            eye = torch.eye(u.shape[1], dtype=torch.bool, device=u.device)
            cos = torch.where(eye, 0.0, cos)
        angle = torch.acos(cos)
        sine = torch.sin(angle)
        value = (length * sine + (math.pi - angle) * dot) / (2.0 * math.pi)
        if same:
            value = torch.where(eye, 0.5 * nu[:, :, None].expand_as(value), value)
        return value

    def _population_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The student's rows for the population loss: in float64 for erf (its value is bounded, so
        the result fits any dtype; float32 would lose its digits where the kernel's c nears 1)."""
        w = self._weights(x)
        return w.double() if self.activation == "erf" else w

    def test_loss(self, x: torch.Tensor) -> torch.Tensor:
        """``E f = 1/2 sum_{k,l} K(w_k, w_l) - sum_{k,j} K(w_k, v_j) + 1/2 sum K(v_j, v_j')`` in closed form,
        in float64 for erf (its kernel is bounded, and taken from unit rows: finite at any finite w)."""
        w = self._population_weights(x)
        teacher = self.teacher.to(dtype=w.dtype)[None]
        own = self._kernel(w, w, same=True).sum((1, 2))
        cross = self._kernel(w, teacher).sum((1, 2))
        return (0.5 * own - cross + self.teacher_term).to(x.dtype)

    def _kernel_grad(self, u: torch.Tensor, v: torch.Tensor, same: bool = False) -> torch.Tensor:
        """``sum_l K_1(u_k, v_l)``, the derivative in the first argument summed over v's rows: (B, k, d);
        ``same``: u and v are the same rows (for erf the diagonal then takes its own closed form)."""
        if self.activation == "erf":  # (2/pi) (1 - c^2)^(-1/2) (v_l / s_v - c u_k / s_u) / s_u, from unit rows
            (unit_u, scale_u), (unit_v, _) = _erf_rows(u), _erf_rows(v)
            c = torch.matmul(unit_u, unit_v.transpose(1, 2))  # (B, k, l)
            weight = (2.0 / math.pi) * torch.rsqrt((1.0 - c * c).clamp_min(1e-300))
            diagonal = 0.0
            if same:  # l = k: c = |u|^2 / s^2, 1 - c = 1 / s^2, so K_1 = (2/pi) u / (s^3 sqrt(1 + c)), which
                # does not cancel as the general form does once c rounds to 1 (|u| above ~1e8)
                eye = torch.eye(u.shape[1], dtype=torch.bool, device=u.device)
                own = (unit_u * unit_u).sum(2, keepdim=True)
                diagonal = (2.0 / math.pi) * unit_u / (scale_u * scale_u * torch.sqrt(1.0 + own))
                weight = torch.where(eye, 0.0, weight)
            general = torch.matmul(weight, unit_v) - (weight * c).sum(2, keepdim=True) * unit_u
            return general / scale_u + diagonal
        dot = torch.matmul(u, v.transpose(1, 2))  # (B, k, l)
        nu, nv = (u * u).sum(2), (v * v).sum(2)
        ru, rv = torch.sqrt(nu)[:, :, None], torch.sqrt(nv)[:, None, :]
        length = ru * rv
        cos = torch.where(length > 0, dot / torch.where(length > 0, length, 1.0), 0.0).clamp(-1.0, 1.0)
        angle = torch.acos(cos)
        along_v = (math.pi - angle) / (2.0 * math.pi)
        along_u = torch.where(ru > 0, rv * torch.sin(angle) / torch.where(ru > 0, ru, 1.0), 0.0) / (2.0 * math.pi)
        return torch.matmul(along_v, v) + along_u.sum(2, keepdim=True) * u

    def test_loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The population loss and its gradient in closed form: ``d/dw_k = sum_l K_1(w_k, w_l) -
        sum_j K_1(w_k, v_j)`` (the l = k term covers the diagonal: ``d/dw K(w, w) = 2 K_1(w, w)``);
        in float64 for erf, as :meth:`test_loss`."""
        w = self._population_weights(x)
        teacher = self.teacher.to(dtype=w.dtype)[None]
        grad = self._kernel_grad(w, w, same=True) - self._kernel_grad(w, teacher)
        return self.test_loss(x), grad.reshape(x.shape[0], -1).to(x.dtype)

    # --- records and starts ---------------------------------------------------------------------

    def record_fields(
        self, x: torch.Tensor, escape_steps: torch.Tensor | None, diverged: torch.Tensor
    ) -> dict[str, list[Any]]:
        """``stuck``: true when the final training loss is above :data:`STUCK_LOSS` and the full-batch
        gradient's norm at most :data:`SETTLED_GRADIENT` (a spurious minimum, or a plateau too flat to
        leave within the budget); false when the training loss is at most :data:`STUCK_LOSS` (a global
        minimum's basin: the labels are noiseless, so f* = 0); null when still moving or diverged, and
        for every run when the student has fewer units than the teacher (f* unknown)."""
        with torch.no_grad():
            x = x.detach()
            loss, grad = self.loss_and_grad(x)
            test = loss.double().cpu().tolist()
            norm = torch.linalg.vector_norm(grad.double(), dim=1).cpu().tolist()
        gone = diverged.cpu().tolist()
        out: list[Any] = []
        for value, g, lost in zip(test, norm, gone):
            if lost or not math.isfinite(value) or self.f_star is None:  # hidden < teacher_hidden: no f* to judge by
                out.append(None)
            elif value <= STUCK_LOSS:
                out.append(False)
            else:
                out.append(True if g <= SETTLED_GRADIENT else None)
        return {"stuck": out}

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        scale = self.init_scale / math.sqrt(self.data_dim)
        return scale * torch.randn(self.dim, generator=generator, dtype=torch.float64)
