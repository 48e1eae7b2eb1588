"""Low-rank matrix sensing in the Burer-Monteiro factorisation: a finite sum over Gaussian measurements.

``f(U) = 1/(4m) sum_i (<A_i, U U^T> - y_i)^2`` over ``U`` in ``R^{d x r}``, with symmetrised Gaussian
sensing matrices ``A_i = (G_i + G_i^T)/2`` and noiseless labels ``y_i = <A_i, M*>``,
``M* = U* U*^T`` of rank r. With ``m >= C d r`` measurements there are no spurious local minima
and every saddle is strict (Bhojanapalli, Neyshabur and Srebro 2016; Ge, Jin and Zheng 2017).

References: S. Burer and R. D. C. Monteiro, "A nonlinear programming algorithm for solving
semidefinite programs via low-rank factorization", Math. Program. 95 (2003); S. Bhojanapalli,
B. Neyshabur and N. Srebro, "Global optimality of local search for low rank matrix recovery",
NeurIPS 2016; R. Ge, C. Jin and Y. Zheng, "No spurious local minima in nonconvex low rank
problems: a unified geometric analysis", ICML 2017; B. Recht, M. Fazel and P. A. Parrilo,
"Guaranteed minimum-rank solutions of linear matrix equations via nuclear norm minimization",
SIAM Review 52 (2010) (the restricted isometry of Gaussian measurements).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import CriticalPoint, Footprint, Known, Landscape, uniform_sphere
from landbench.landscapes.finite_sum import FiniteSum
from landbench.spec import Param

#: The loss's normalisation c in ``f = c/m sum_i r_i^2``: with 1/4 the population loss is
#: ``|U U^T - M*|_F^2 / 4``, its gradient ``(U U^T - M*) U`` and its Hessian at 0 ``-(I_r (x) M*)``.
NORMALISATION = 0.25
#: Radius of the start sphere about the saddle U = 0 in R^{d r}.
START_RADIUS = 1e-3
#: The dense Hessian at the ground truth is computed in ``_build`` up to this many coordinates d r.
DENSE_HESSIAN_MAX = 400
#: Sensing matrices unpacked at a time while the Hessian at the truth is accumulated.
_CHUNK_ELEMENTS = 1 << 22


def packed_size(dim: int) -> int:
    """``d (d + 1) / 2``: the numbers of one symmetric d x d matrix."""
    return dim * (dim + 1) // 2


class MatrixSensing(FiniteSum, Landscape):
    r"""``f(U) = 1/(4m) sum_{i=1}^m (<A_i, U U^T> - y_i)^2``, ``U`` in ``R^{d x r}``, ``y_i = <A_i, M*>``.

    Dimensions: the spec's ``dim`` is the data dimension d (``M*`` and the ``A_i`` are d x d; kept as
    ``self.data_dim``); the search space is ``U`` flattened row-major, ``x[i r + k] = U[i, k]``, so
    the instance's ``self.dim`` is ``d r``. The training examples are the ``measurements`` m
    (``self.samples = m``): a minibatch is a subset of the measurements.

    Instance. Truth: ``U* = Q diag(s)`` with Q a d x r orthonormal frame (QR of a Gaussian matrix)
    and singular values ``s_k`` uniform in [1, 2], sorted in decreasing order, so ``M* = U* U*^T``
    has eigenvalues ``s_k^2`` in [1, 4]; it is drawn from the generator of (dim, rank) only, so a
    sweep over ``measurements`` keeps the truth. Sensing matrices: symmetrised Gaussian,
    ``A_i = (G_i + G_i^T)/2`` with G_i iid N(0, 1) entries: diagonal entries N(0, 1), off-diagonal
    N(0, 1/2), independent. They are stored packed, ``a_i = (A_i[j, j], sqrt(2) A_i[j, l] (j < l))``,
    ``d (d + 1)/2`` numbers, iid N(0, 1) (drawn so, from the generator of (dim, measurements)), with
    ``<A_i, S> = a_i . pack(S)`` for a symmetric S. Labels ``y_i = <A_i, M*>`` (noiseless).

    Closed forms, with residuals ``r_i = <A_i, U U^T> - y_i`` (A_i symmetric):

    * gradient ``(1/m) sum_i r_i A_i U``;
    * Hessian-vector product ``(1/m) sum_i (<A_i, U V^T + V U^T> A_i U + r_i A_i V)``;
    * population (test) loss: for a symmetric D, ``<A, D> = <G, D> ~ N(0, |D|_F^2)``, so
      ``E (<A, D>)^2 = |D|_F^2`` (the same as for a plain Gaussian A) and the test loss is
      ``|U U^T - M*|_F^2 / 4`` in closed form.

    Known structure.

    * Global minima: ``f* = 0`` on the manifold ``{U* R : R orthogonal}`` (one representative,
      ``U*``, recorded). The Hessian there, ``(2/m) sum_i vec(A_i U*) vec(A_i U*)^T``, has
      ``r (r - 1)/2`` zero eigenvalues from the rotations (``lambda_min = 0``); its ``lambda_max`` and
      smallest eigenvalue beyond them are computed densely in ``_build`` when ``d r <= 400`` (else
      None). In population the spectrum is ``0`` (``r(r-1)/2`` times), ``s_k^2 + s_l^2`` (k < l),
      ``2 s_k^2`` and ``s_k^2`` (``d - r`` times each).
    * The saddle ``U = 0`` (``known.saddle``: escape times are escapes from the origin): gradient
      zero, value ``f(0) = (1/(4m)) sum_i y_i^2`` (population ``|M*|_F^2 / 4``), Hessian
      ``-(I_r (x) S)`` with ``S = (1/m) sum_i y_i A_i`` (``E S = M*``): index ``r n_+(S)``, n_+ the
      number of positive eigenvalues of S. In population ``S = M*`` and the index is ``r^2``; at a
      finite m the noise of S adds positive eigenvalues (about half of the d - r others), and the
      index is computed exactly.
    * With ``m >= C d r`` (a restricted isometry of order 2r, constant < 1/5, BNS 2016; < 1/10,
      GJZ 2017) every local minimum is global and every saddle strict: gradient descent from small
      random starts recovers M*. With fewer than ``d r - r(r-1)/2`` measurements the interpolating
      U form a manifold: the training loss reaches 0 at a U U^T that differs from M* (the test loss
      stays large: overfitting).

    Runs start uniform on the sphere of radius 1e-3 about U = 0 in ``R^{d r}``.

    Cost. The instance holds ``m d (d + 1)/2`` numbers (8 MB in float32 at d = 100, m = 400). A
    full-batch evaluation is two ``(B, d(d+1)/2) x (d(d+1)/2, m)`` products, ``2 B m d^2`` flops, and
    holds ``(B, m)`` and ``(B, d, d)`` work tensors; the HVP is two more. A minibatch of m_b
    measurements per run gathers its runs' packed matrices, ``(B, m_b, d(d+1)/2)`` (``B m_b d^2``
    flops), when that block is no larger than the instance's own (``B m_b <= m``); otherwise it
    computes all m inner products (the full-batch cost) and weights the run's own, without a gather.
    """

    family = "matrix_sensing"
    params = (
        Param("dim", int, doc="data dimension d: M* and the sensing matrices are d x d (search space d x rank)", low=1),
        Param("rank", int, 2, "rank r of M* and columns of U", low=1),
        Param(
            "measurements",
            int,
            256,
            "measurements m (the training examples of the finite sum)",
            low=1,
            high=2**24 - 1,
        ),
    )
    formula = (
        "f(U) = 1/(4m) sum_i (<A_i, U U^T> - y_i)^2,  U in R^{d x r},  A_i = (G_i + G_i^T)/2,  G_i iid N(0,1),"
        "  y_i = <A_i, M*>,  M* = U* U*^T,  U* = Q diag(s),  s_k ~ U[1, 2]"
    )
    reference = (
        "Burer and Monteiro 2003; Bhojanapalli, Neyshabur and Srebro, NeurIPS 2016; Ge, Jin and Zheng, ICML 2017"
    )
    start = "uniform on the sphere of radius 1e-3 about the saddle U = 0 in R^{d r}"
    test_loss_kind = "closed form"
    #: the training examples are the measurements (FiniteSum reads the number n from this parameter)
    examples_param = "measurements"
    rank: int
    measurements: int

    # --- construction -------------------------------------------------------------------------

    def _check(self) -> None:
        if self.rank > self.dim:
            raise SpecError(f"matrix_sensing: rank must be at most dim ({self.dim}), got {self.rank}")

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        """The packed sensing matrices (``m d(d+1)/2`` numbers), labels and truth; a minibatch's
        gather block is at most as large again. Per run: ``(B, m)`` residuals and a few d x d
        matrices. The host draws the matrices in float64."""
        d, r, m, size = self.dim, self.rank, self.measurements, dtype.itemsize
        packed = m * packed_size(d)
        instance = (2 * packed + 2 * m + 2 * d * r + d * d + packed_size(d)) * size
        per_run = (3 * m + 4 * d * d + 2 * packed_size(d) + 4 * d * r) * size
        host = (packed + 4 * d * d + m) * 8 + (min(_CHUNK_ELEMENTS, packed) + (d * r) ** 2) * 8 * 2
        return Footprint(
            instance=instance,
            what=f"its {m} packed {d} x {d} sensing matrices ({packed} numbers) and a minibatch gather block",
            per_run=per_run,
            host=host,
            coordinates=d * r,
        )

    def _build(self) -> None:
        self.data_dim = d = self.dim
        r, m = self.rank, self.measurements
        self.samples = m  # n, also under the name the other finite sums use
        rows, cols = torch.triu_indices(d, d)
        self._rows, self._cols = rows, cols  # on the CPU while the float64 facts are computed
        weights64 = torch.full((packed_size(d),), math.sqrt(2.0), dtype=torch.float64)
        weights64[rows == cols] = 1.0

        truth_generator = self.instance_generator("truth", d, r)
        frame, triangle = torch.linalg.qr(torch.randn(d, r, generator=truth_generator, dtype=torch.float64))
        frame = frame * torch.sign(torch.diagonal(triangle)).where(torch.diagonal(triangle) != 0, 1.0)
        singular = torch.sort(1.0 + torch.rand(r, generator=truth_generator, dtype=torch.float64), descending=True)[0]
        truth64 = frame * singular
        target64 = truth64 @ truth64.T

        sensing_generator = self.instance_generator("sensing", d, m)
        packed64 = torch.randn(m, packed_size(d), generator=sensing_generator, dtype=torch.float64)
        labels64 = packed64 @ (target64[rows, cols] * weights64)

        self.singular_values = [float(s) for s in singular]
        self.dim = d * r
        self._facts = self._exact_facts(packed64, labels64, truth64, weights64)

        self.packed = self._tensor(packed64)
        self.labels = self._tensor(labels64)
        self.truth = self._tensor(truth64)
        self.target = self._tensor(target64)
        self._weights = self._tensor(weights64)
        self._rows, self._cols = rows.to(self.device), cols.to(self.device)

        saddle = self._facts.pop("_saddle")
        minimum = self._facts.pop("_minimum")
        self.known = Known(f_star=0.0, saddle=saddle, minima=[minimum])

    def _exact_facts(
        self, packed: torch.Tensor, labels: torch.Tensor, truth: torch.Tensor, weights: torch.Tensor
    ) -> dict[str, Any]:
        """The saddle at 0 and the minimum at U* (float64, CPU), with their Hessian spectra."""
        d, r, m = self.data_dim, self.rank, self.measurements
        s = torch.tensor(self.singular_values, dtype=torch.float64)
        # The saddle: Hessian -(I_r (x) S), S = (1/m) sum_i y_i A_i.
        sample = self._unpack((labels @ packed / m)[None], weights)[0]
        spectrum = torch.linalg.eigvalsh(sample)
        scale = float(spectrum.abs().max()) if d else 0.0
        positive = int((spectrum > 1e-12 * max(scale, 1e-300)).sum())
        value0 = NORMALISATION * float((labels * labels).mean())
        saddle = CriticalPoint(
            kind="saddle",
            value=value0,
            point=torch.zeros(d * r, dtype=torch.float64),
            index=r * positive,
            lambda_max=-float(spectrum.min()),
            lambda_min=-float(spectrum.max()),
            trace=-r * float(spectrum.sum()),
            note=(
                "U = 0; Hessian -(I_r (x) S), S = (1/m) sum_i y_i A_i (E S = M*): "
                f"index r n_+(S) = {r} x {positive}; in population r^2 = {r * r}"
            ),
        )
        # The minimum U*: Hessian (2/m) sum_i vec(A_i U*) vec(A_i U*)^T (residuals 0).
        zero_modes = r * (r - 1) // 2
        lambda_max = smallest_nonzero = trace = None
        if d * r <= DENSE_HESSIAN_MAX:
            hessian = torch.zeros(d * r, d * r, dtype=torch.float64)
            chunk = max(1, _CHUNK_ELEMENTS // max(d * d, 1))
            for start in range(0, m, chunk):
                jacobian = (self._unpack(packed[start : start + chunk], weights) @ truth).reshape(-1, d * r)
                hessian += jacobian.T @ jacobian
            hessian *= 2.0 / m
            eigenvalues = torch.linalg.eigvalsh(hessian)
            lambda_max, smallest_nonzero = float(eigenvalues[-1]), float(eigenvalues[zero_modes])
            trace = float(eigenvalues.sum())
        minimum = CriticalPoint(
            kind="minimum",
            value=0.0,
            point=truth.reshape(-1).clone(),
            index=0,
            lambda_max=lambda_max,
            lambda_min=0.0 if lambda_max is not None else None,
            trace=trace,
            note=(
                "U* = Q diag(s), one point of the manifold {U* R: R orthogonal} of global minima; "
                f"Hessian with r(r-1)/2 = {zero_modes} zero eigenvalues (rotations); "
                f"smallest eigenvalue beyond them: {smallest_nonzero}"
            ),
        )
        population = sorted(
            [0.0] * zero_modes
            + [float(s[k] ** 2 + s[j] ** 2) for k in range(r) for j in range(k + 1, r)]
            + [float(2 * s[k] ** 2) for k in range(r)]
            + [float(s[k] ** 2) for k in range(r) for _ in range(d - r)]
        )
        return {
            "_saddle": saddle,
            "_minimum": minimum,
            "minimum_lambda_max": lambda_max,
            "minimum_lambda_min_nonzero": smallest_nonzero,
            "minimum_zero_modes": zero_modes,
            "population_minimum_lambda_max": population[-1],
            "population_minimum_lambda_min_nonzero": population[zero_modes] if len(population) > zero_modes else None,
            "saddle_value": value0,
            "saddle_index": r * positive,
            "population_saddle_value": NORMALISATION * float((s**4).sum()),
            "population_saddle_index": r * r,
            "population_saddle_lambda_min": -float(s.max() ** 2),
        }

    # --- packing --------------------------------------------------------------------------------

    def _pack(self, matrices: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``pack(S)``: (..., d, d) symmetric to (..., d(d+1)/2), off-diagonal entries times sqrt 2."""
        weights = self._weights if weights is None else weights
        return matrices[..., self._rows, self._cols] * weights.to(matrices.dtype)

    def _unpack(self, packed: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_i w_i A_i`` from ``sum_i w_i a_i``: (..., d(d+1)/2) to the symmetric (..., d, d)."""
        weights = self._weights if weights is None else weights
        d = self.data_dim
        entries = packed / weights.to(packed.dtype)
        out = packed.new_zeros(*packed.shape[:-1], d, d)
        out[..., self._rows, self._cols] = entries
        out[..., self._cols, self._rows] = entries
        return out

    def sensing_matrices(self) -> torch.Tensor:
        """The m sensing matrices ``A_i`` unpacked, (m, d, d) (for tests and inspection: ``m d^2`` numbers)."""
        return self._unpack(self.packed)

    # --- evaluation -----------------------------------------------------------------------------

    def _factor(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.data_dim, self.rank)

    def _gathers(self, index: torch.Tensor) -> bool:
        """Whether a minibatch gathers its runs' matrices (a block no larger than the instance's)."""
        return index.shape[0] * index.shape[1] <= self.measurements

    def _residuals(self, gram: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``r_bi = <A_i, P_b> - y_i`` for P = ``gram`` (B, d, d) symmetric, over each run's examples,
        and the gathered packed matrices when the minibatch gathers them."""
        packed_gram = self._pack(gram)
        if index is None:
            return packed_gram @ self.packed.T - self.labels, None
        labels = self.labels[index]
        if self._gathers(index):
            block = self.packed[index]  # (B, m_b, D): the one gather
            return torch.bmm(block, packed_gram.unsqueeze(2)).squeeze(2) - labels, block
        return (packed_gram @ self.packed.T).gather(1, index) - labels, None

    def _weighted_sum(
        self, weights: torch.Tensor, index: torch.Tensor | None, block: torch.Tensor | None
    ) -> torch.Tensor:
        """``sum_i w_bi A_i`` over each run's examples: (B, d, d) from weights (B, m_b)."""
        if index is None:
            packed = weights @ self.packed
        elif block is not None:
            packed = torch.bmm(weights.unsqueeze(1), block).squeeze(1)
        else:
            dense = weights.new_zeros(weights.shape[0], self.measurements).scatter_add_(1, index, weights)
            packed = dense @ self.packed
        return self._unpack(packed)

    def example_losses(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        factor = self._factor(x)
        residuals, _ = self._residuals(factor @ factor.transpose(1, 2), index)
        return NORMALISATION * residuals * residuals

    def batch_loss_and_grad(self, x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``c/m_b sum r_i^2`` and ``(4c/m_b) sum_i r_i A_i U`` (c = 1/4) over each run's examples."""
        factor = self._factor(x)
        residuals, block = self._residuals(factor @ factor.transpose(1, 2), index)
        count = residuals.shape[1]
        value = NORMALISATION * (residuals * residuals).mean(1)
        weighted = self._weighted_sum(residuals * (4.0 * NORMALISATION / count), index, block)
        return value, (weighted @ factor).reshape(x.shape[0], -1)

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``(1/m) sum_i (<A_i, U V^T + V U^T> A_i U + r_i A_i V)`` (full batch)."""
        factor, direction = self._factor(x), self._factor(v)
        cross = factor @ direction.transpose(1, 2)
        grams = torch.cat([factor @ factor.transpose(1, 2), cross + cross.transpose(1, 2)])
        products = self._pack(grams) @ self.packed.T
        batch = x.shape[0]
        residuals = products[:batch] - self.labels
        weighted = self._weighted_sum(torch.cat([residuals, products[batch:]]) / self.measurements, None, None)
        out = weighted[:batch] @ direction + weighted[batch:] @ factor
        return (4.0 * NORMALISATION) * out.reshape(batch, -1)

    def test_loss(self, x: torch.Tensor) -> torch.Tensor:
        """``|U U^T - M*|_F^2 / 4``: the expectation of ``(<A, U U^T - M*>)^2 / 4`` over a fresh A."""
        factor = self._factor(x)
        error = factor @ factor.transpose(1, 2) - self.target
        return NORMALISATION * error.square().sum((1, 2))

    def recovery_error(self, x: torch.Tensor) -> torch.Tensor:
        """``|U U^T - M*|_F / |M*|_F`` of each row."""
        factor = self._factor(x)
        return (factor @ factor.transpose(1, 2) - self.target).norm(dim=(1, 2)) / self.target.norm()

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return uniform_sphere(generator, self.dim, START_RADIUS)

    def facts(self) -> dict[str, Any]:
        """The dimensions, the truth, the loss's normalisation and the spectra at 0 and at U*."""
        return {
            "rank": self.rank,
            "measurements": self.measurements,
            **self.finite_sum_facts(),
            "normalisation": "f = (1/4) mean_i r_i^2; population |U U^T - M*|_F^2 / 4",
            "sensing": "A_i = (G_i + G_i^T)/2, G_i iid N(0,1); E <A, D>^2 = |D|_F^2 for symmetric D",
            "truth_singular_values": self.singular_values,
            "target_eigenvalues": [s * s for s in self.singular_values],
            "degrees_of_freedom": self.data_dim * self.rank - self.rank * (self.rank - 1) // 2,
            **self._facts,
        }
