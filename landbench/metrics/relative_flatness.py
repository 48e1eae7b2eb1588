r"""A flatness measure that rescaling cannot change: the Hessian's trace in log-magnitude coordinates.

Sharpness (the largest Hessian eigenvalue) is not a property of the function a network computes:
for a ReLU or linear network the rescaling ``W_{l+1} -> alpha W_{l+1}, W_l -> W_l / alpha`` leaves
the function, the training and the test loss unchanged and multiplies the Hessian block of ``W_l``
by ``alpha^2`` and that of ``W_{l+1}`` by ``1 / alpha^2``: any minimum can be made as sharp as one
likes (Dinh, Pascanu, Bengio and Bengio, "Sharp minima can generalize for deep nets", ICML 2017).

The measure here is

    kappa(w) = sum_p w_p^2 d^2 L / d w_p^2 = tr(D_w H D_w),    D_w = diag(w),

the trace of the Hessian with respect to multiplicative perturbations ``w_p -> w_p (1 + e_p)``
(the Hessian in the coordinates ``log |w_p|``, up to the gradient term that vanishes at a critical
point). It is *exactly* invariant under every reparameterisation ``w -> c * w`` by a positive (or
sign) diagonal ``c`` that leaves the loss unchanged, layer-wise (``c`` constant on a layer) and
neuron-wise (one factor per hidden unit, on its incoming and outgoing weights) alike: if
``L'(w') = L(w' / c)`` then ``H' = C^{-1} H C^{-1}`` and ``D_{c w} H' D_{c w} = D_w H D_w``, because
diagonal matrices commute. Not only the trace but the whole matrix ``D_w H D_w`` is unchanged.

It is the entry-wise (one "layer" per parameter) case of the relative flatness of Petzka, Kamp,
Adilova, Sminchisescu and Boley ("Relative flatness and generalization", NeurIPS 2021), whose
layer-wise simplification ``sum_l |W_l|_F^2 tr(H_{W_l W_l})`` (:func:`layer_flatness`, invariant
under layer-wise rescaling only) is computed from the same Hessian diagonal; and the trace form of
the second-order term of adaptive sharpness with ``T_w = |w|`` (Kwon et al., "ASAM", ICML 2021).

Everything here is exact: the Hessian's diagonal comes from Hessian-vector products against the
unit vectors (``landscape.hvp``), ``dim`` of them per point, in chunks of rows, and the dense Hessian
(for the largest eigenvalue) likewise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Hessian-vector products are taken this many rows at a time (a row: one point and one direction).
CHUNK_ROWS = 8192


def dense_hessians(landscape: object, x: torch.Tensor, chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """The exact Hessians ``(B, d, d)`` of the landscape's loss at the rows of ``x`` (``(B, d)``):
    column j of ``H(x_b)`` is ``landscape.hvp(x_b, e_j)``; symmetrised (``(H + H^T) / 2``), in
    ``x``'s dtype on ``x``'s device."""
    x = x.detach()
    batch, dim = x.shape
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    per = max(1, chunk_rows // max(dim, 1))
    out = torch.empty(batch, dim, dim, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        for start in range(0, batch, per):
            rows = x[start : start + per]
            points = rows.repeat_interleave(dim, dim=0)
            directions = eye.repeat(rows.shape[0], 1)
            columns = landscape.hvp(points, directions).reshape(rows.shape[0], dim, dim)  # type: ignore[attr-defined]
            out[start : start + per] = columns.transpose(1, 2)
    return 0.5 * (out + out.transpose(1, 2))


def relative_flatness(x: torch.Tensor, hessian_diagonal: torch.Tensor) -> torch.Tensor:
    """``kappa(w) = sum_p w_p^2 H_pp`` of each row (``(B,)``), from the points ``x`` ``(B, d)`` and their
    Hessian diagonals ``(B, d)`` (:func:`dense_hessians`'s diagonals)."""
    return (x * x * hessian_diagonal).sum(dim=-1)


def layer_flatness(x: torch.Tensor, hessian_diagonal: torch.Tensor, layers: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Petzka et al.'s layer-wise trace form ``sum_l |W_l|_F^2 tr(H_{W_l W_l})`` of each row, the layers
    given as ``(start, stop)`` slices of the flat parameter vector: invariant under layer-wise rescaling
    (not neuron-wise)."""
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for start, stop in layers:
        total = total + (x[:, start:stop] ** 2).sum(dim=1) * hessian_diagonal[:, start:stop].sum(dim=1)
    return total


def curvature_summary(
    landscape: object, x: torch.Tensor, layers: Sequence[tuple[int, int]] | None = None
) -> dict[str, list[float]]:
    """Per row of ``x``: the largest Hessian eigenvalue (``sharpness``), the Hessian's trace, the
    relative flatness ``kappa`` and (with ``layers``) the layer-wise form, all from the exact dense
    Hessian, as float lists."""
    hessians = dense_hessians(landscape, x)
    eigenvalues = torch.linalg.eigvalsh(hessians)
    diagonal = torch.diagonal(hessians, dim1=1, dim2=2)
    out = {
        "sharpness": eigenvalues[:, -1].tolist(),
        "hessian_trace": diagonal.sum(dim=1).tolist(),
        "relative_flatness": relative_flatness(x, diagonal).tolist(),
    }
    if layers is not None:
        out["layer_flatness"] = layer_flatness(x, diagonal, layers).tolist()
    return out
