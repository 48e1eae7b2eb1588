"""Critical points shared by the claims ``saddles`` (1) and ``rare_minima`` (2): found by
:func:`landbench.critical_points` in blocks of starts, stored through ``ctx.cached``, merged per
instance, and checked by autograd on a subsample.

A *block* is one call of the finder: a landscape spec, an instance, a first run seed and a number
of starts, and a descent length ``descent``: start i of a block of B first takes
``round(descent * i / (B - 1))`` steps of (projected) gradient descent from the landscape's own
random start (0: the plain random starts). Descended starts reach the low-value, low-index
critical points that Newton's method from random starts rarely finds (it is drawn to points of
index about d/2, Dauphin et al. 2014); they serve the index-against-value law, never the shares of
kinds (those use plain random starts only). Either way the finder samples critical points with a
bias (each point is found in proportion to its basin of attraction under the Newton iteration, not
uniformly): the shares measured are shares of what the finder finds.

A block's stored value (JSON) holds its distinct critical points ``[value, index, found_by,
grad_norm, lambda_min, lambda_max]``, the numbers of gradient-flat points and starts (never counted
as critical points), the starts that did not converge, and a subsample of points with their
coordinates and an independent autograd check (gradient norm and the index from a dense
``torch.linalg.eigvalsh`` of the autograd Hessian; Riemannian on the sphere) and, on the sphere, the
full autograd spectrum. The same key gives the same value, so the two claims share blocks: within
one process through an in-memory table, across runs through each claim's own cache.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from landbench.claims.base import ClaimContext

#: Version of the block computation (part of every key).
VERSION = 1
#: Points kept with their coordinates per block, for the autograd check.
SAMPLE = 6
#: Blocks already computed in this process, by key (shared between the claims).
_MEMO: dict[str, Any] = {}


def semicircle_cdf(t: float) -> float:
    """``F(t) = 1/2 + (t sqrt(1 - t^2) + arcsin t)/pi`` on [-1, 1] (0 below, 1 above): the fraction
    of a semicircle law on [-1, 1] below t."""
    if t <= -1.0:
        return 0.0
    if t >= 1.0:
        return 1.0
    return 0.5 + (t * math.sqrt(1.0 - t * t) + math.asin(t)) / math.pi


def block_key(spec: str, instance: int, seed: int, starts: int, descent: int, max_iter: int) -> str:
    return (
        f"critical-block v{VERSION} | {spec} | instance={instance} | seeds={seed}..{seed + starts - 1} "
        f"| descent={descent} | max_iter={max_iter} | float64 cpu"
    )


def block(
    ctx: ClaimContext, spec: str, instance: int, seed: int, starts: int, descent: int = 0, max_iter: int = 500
) -> dict[str, Any]:
    """One block of the finder (computed, or read from the in-process table or the claim's cache)."""
    key = block_key(spec, instance, seed, starts, descent, max_iter)

    def compute() -> dict[str, Any]:
        if key not in _MEMO:
            ctx.log(f"critical points: {spec} instance {instance}, {starts} starts from seed {seed}, descent {descent}")
            _MEMO[key] = compute_block(spec, instance, seed, starts, descent, max_iter)
        return _MEMO[key]

    value = ctx.cached(key, compute)
    _MEMO.setdefault(key, value)
    return value


def descended_starts(landscape: Any, seed: int, starts: int, descent: int) -> torch.Tensor:
    """The landscape's random starts (run seeds ``seed..``), start i after ``round(descent i/(B-1))``
    steps of gradient descent (projected on the sphere). Step: ``0.1 N`` on the p-spin (see its
    docstring), ``0.25 / sqrt(d)`` on the Gaussian field (its Hessian's spectrum has radius 2 sqrt d)."""
    x = landscape.sample_start(range(seed, seed + starts)).to(torch.float64)
    if descent <= 0:
        return x
    lr = 0.1 * landscape.dim if landscape.constrained else 0.25 / math.sqrt(landscape.dim)
    steps = torch.tensor([round(descent * i / max(1, starts - 1)) for i in range(starts)])
    for k in range(descent):
        moving = steps > k
        _, grad = landscape.loss_and_grad(x)
        if landscape.constrained:
            grad = landscape.tangent(x, grad)
        x = torch.where(moving[:, None], x - lr * grad, x)
        if landscape.constrained:
            x = landscape.retract(x)
    return x


def autograd_check(landscape: Any, x: torch.Tensor) -> tuple[float, int, list[float]]:
    """Independent of the finder: the (Riemannian) gradient norm by ``torch.autograd`` on
    ``landscape.loss``, and the Hessian's eigenvalues (ascending) by a dense ``eigvalsh`` of the
    autograd Hessian, on the tangent space of the sphere where constrained (``P (grad^2 f -
    (x.g/|x|^2) I) P`` on an orthonormal frame of the complement of x, Absil et al. 2008); the index
    counts eigenvalues below ``-1e-6 max|lambda|``."""
    x = x.detach().to(torch.float64)

    def f(v: torch.Tensor) -> torch.Tensor:
        return landscape.loss(v[None])[0]

    grad = torch.autograd.functional.jacobian(f, x)
    hessian = torch.autograd.functional.hessian(f, x)
    hessian = 0.5 * (hessian + hessian.T)
    if landscape.constrained:
        d = x.numel()
        frame, _ = torch.linalg.qr(torch.cat([x[:, None], torch.eye(d, dtype=x.dtype)], dim=1))
        frame = frame[:, 1:d]
        hessian = frame.T @ (hessian - (x @ grad) / (x @ x) * torch.eye(d, dtype=x.dtype)) @ frame
        grad = grad - (x @ grad) / (x @ x) * x
    eigenvalues = torch.linalg.eigvalsh(hessian)
    index = int((eigenvalues < -1e-6 * eigenvalues.abs().max()).sum())
    return float(grad.norm()), index, [float(v) for v in eigenvalues]


def compute_block(spec: str, instance: int, seed: int, starts: int, descent: int, max_iter: int) -> dict[str, Any]:
    import landbench
    from landbench.critical import critical_points

    started = time.perf_counter()
    landscape = landbench.make(spec, seed=instance, dtype=torch.float64)
    x0 = descended_starts(landscape, seed, starts, descent)
    found = critical_points(landscape, x0, max_iter=max_iter)
    points = [[p.value, p.index, p.count, p.grad_norm, p.lambda_min, p.lambda_max] for p in found.points]
    counts = found.counts()
    # an evenly spaced subsample (by value) for the autograd check
    chosen = sorted({round(i * (len(found.points) - 1) / max(1, SAMPLE - 1)) for i in range(SAMPLE)})
    sample = []
    for position in chosen if found.points else []:
        point = found.points[position]
        grad_norm, index, eigenvalues = autograd_check(landscape, point.x)
        entry = {
            "x": [float(v) for v in point.x],
            "value": point.value,
            "index": point.index,
            "kind": point.kind,
            "autograd_grad_norm": grad_norm,
            "autograd_index": index,
        }
        if landscape.constrained:
            entry["eigenvalues"] = eigenvalues
        sample.append(entry)
    return {
        "spec": spec,
        "instance": instance,
        "dim": landscape.dim,
        "tangent_dim": found.tangent_dim,
        "starts": starts,
        "descent": descent,
        "points": points,
        "gradient_flat_points": counts["unique_gradient_flat"],
        "gradient_flat_starts": counts["gradient_flat"],
        "not_converged": counts["not_converged"],
        "sample": sample,
        "seconds": time.perf_counter() - started,
    }


def merged(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The distinct critical points of blocks of one instance (points of the same index whose values
    agree to 1e-9 relative are one: distinct critical points of a random landscape never share a
    value), with the blocks' gradient-flat and unconverged counts summed."""
    points = sorted((list(point) for b in blocks for point in b["points"]), key=lambda p: (int(p[1]), float(p[0])))
    distinct: list[list[Any]] = []
    for point in points:
        last = distinct[-1] if distinct else None
        if (
            last is not None
            and int(last[1]) == int(point[1])
            and abs(float(point[0]) - float(last[0])) <= 1e-9 * max(1.0, abs(float(point[0])))
        ):
            last[2] += point[2]
        else:
            distinct.append(point)
    return {
        "points": sorted(distinct, key=lambda p: (p[0], p[1])),
        "gradient_flat_points": sum(b["gradient_flat_points"] for b in blocks),
        "gradient_flat_starts": sum(b["gradient_flat_starts"] for b in blocks),
        "not_converged": sum(b["not_converged"] for b in blocks),
        "starts": sum(b["starts"] for b in blocks),
        "sample": [s for b in blocks for s in b["sample"]],
        "seconds": sum(b["seconds"] for b in blocks),
    }


def instance_points(
    ctx: ClaimContext,
    spec: str,
    instance: int,
    starts: int,
    *,
    block_size: int = 100,
    descent: int = 0,
    max_iter: int = 500,
) -> dict[str, Any]:
    """The merged blocks of ``starts`` starts (run seeds 0, 1, ...) on one instance, ``block_size`` a block."""
    blocks = []
    seeds = range(0, starts, block_size)
    with ctx.bar(len(seeds), "block", f"critical points of {spec}, instance {instance}") as bar:
        for seed in seeds:
            blocks.append(block(ctx, spec, instance, seed, min(block_size, starts - seed), descent, max_iter))
            bar.update(1)
    return merged(blocks)


def sample_check(sample: list[dict[str, Any]], tol: float = 1e-7) -> tuple[int, int]:
    """How many sampled points pass the autograd check (gradient norm below ``tol``, same index), of how many."""
    good = sum(s["autograd_grad_norm"] < tol and s["autograd_index"] == s["index"] for s in sample)
    return good, len(sample)
