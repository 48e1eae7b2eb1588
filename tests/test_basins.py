"""basins: minima, saddles and barriers against independent computations (dense autograd Hessians, a
dense numpy scan of the formula), the ``basin`` record field, and the share of gradient-descent runs
that end in the wide basin against the probability mass of its basin of attraction."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest
import scipy.stats
import torch
from reference import dense_hessian

import landbench
from landbench.errors import SpecError
from landbench.landscapes.base import Landscape
from landbench.landscapes.basins import Basins

F64 = torch.float64

CASES: list[dict[str, Any]] = [
    {"dim": 5},
    {"dim": 6, "rotate": True},
    {"dim": 1},
    {"dim": 4, "wells": ((1.0, 1.0), (0.6, 0.3), (2.0, 0.6)), "separation": 2.5, "bowl": 0.1, "rotate": True},
    {"dim": 7, "wells": ((1.0, 1.5), (1.5, 0.2)), "separation": 4.0, "bowl": 0.02},
    {"dim": 3, "wells": ((2.0, 0.5),), "bowl": 0.2, "rotate": True},
]


def _build(case: dict[str, Any], dtype: torch.dtype = F64) -> Basins:
    return Basins(dtype=dtype, **case)


def _axis(landscape: Basins) -> torch.Tensor:
    """The documented axis: e_1, or the instance's unit vector with ``rotate``."""
    if landscape.rotate:
        return landscape.axis.to(F64)
    return torch.eye(landscape.dim, dtype=F64)[0]


def _formula(case: dict[str, Any]) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(bowl, centres t_j, depths a_j, widths w_j) from the documented defaults and spacing."""
    wells = np.array(case.get("wells", ((1.0, 1.0), (1.0, 0.25))), dtype=np.float64)
    n = len(wells)
    centres = (np.arange(n) - (n - 1) / 2) * case.get("separation", 3.0)
    return case.get("bowl", 0.05), centres, wells[:, 0], wells[:, 1]


def _on_axis(case: dict[str, Any], t: np.ndarray) -> np.ndarray:
    """``f(t u) = bowl/2 t^2 - sum_j a_j exp(-(t - t_j)^2 / (2 w_j^2))``, written out here in numpy."""
    bowl, centres, depths, widths = _formula(case)
    return 0.5 * bowl * t**2 - (depths * np.exp(-((t[:, None] - centres) ** 2) / (2 * widths**2))).sum(1)


def _scan(case: dict[str, Any], spacing: float = 2e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grid, values, and the grid indices of the local minima and maxima of f on the axis."""
    _, centres, _, widths = _formula(case)
    grid = np.arange(centres[0] - 3 * widths.max(), centres[-1] + 3 * widths.max(), spacing)
    values = _on_axis(case, grid)
    inner = np.arange(1, len(grid) - 1)
    minima = inner[(values[inner] < values[inner - 1]) & (values[inner] < values[inner + 1])]
    maxima = inner[(values[inner] > values[inner - 1]) & (values[inner] > values[inner + 1])]
    return grid, values, minima, maxima


# --- the documented critical points ------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_minima_and_saddles_are_stationary_with_the_documented_hessians(case: dict[str, Any]) -> None:
    landscape = _build(case)
    n = len(landscape.wells)
    assert len(landscape.minima) == n and len(landscape.saddles) == n - 1
    values = [m.value for m in landscape.minima]
    assert values == sorted(values) and landscape.f_star == values[0]
    assert landscape.saddle is None  # runs do not start near a designated saddle
    for point in landscape.minima + landscape.saddles:
        loss, grad = Landscape.loss_and_grad(landscape, point.point[None])  # autograd
        assert float(grad.abs().max()) < 1e-12
        assert float(loss) == pytest.approx(point.value, abs=1e-14)
        eigenvalues = torch.linalg.eigvalsh(dense_hessian(landscape, point.point))
        assert point.lambda_max == pytest.approx(float(eigenvalues.max()), abs=1e-9)
        assert point.lambda_min == pytest.approx(float(eigenvalues.min()), abs=1e-9)
        assert point.trace == pytest.approx(float(eigenvalues.sum()), abs=1e-8)
        assert point.index == int((eigenvalues < 0).sum()) == (0 if point.kind == "minimum" else 1)
        # On the axis: the point is t u.
        t = float(point.point @ _axis(landscape))
        torch.testing.assert_close(point.point, t * _axis(landscape), atol=1e-15, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_axis_critical_points_and_barriers_match_a_dense_scan(case: dict[str, Any]) -> None:
    """A dense numpy scan of the formula on the axis (spacing 2e-5, so values agree to about
    |f''| spacing^2 / 2 < 1e-8) finds the same minima, one per well and in well order, and between
    neighbouring minima a maximum at the documented saddle: the barriers are its value minus theirs."""
    landscape = _build(case)
    grid, values, minima, maxima = _scan(case)
    assert len(minima) == len(landscape.basins) and len(maxima) == len(landscape.saddles)
    on_axis = torch.from_numpy(grid[::50, None]) * _axis(landscape)
    np.testing.assert_allclose(landscape.loss(on_axis).numpy(), values[::50], rtol=1e-13, atol=1e-13)
    for basin, index in zip(landscape.basins, minima):
        assert basin.minimum.value == pytest.approx(values[index], abs=1e-8)
        assert float(basin.minimum.point @ _axis(landscape)) == pytest.approx(grid[index], abs=4e-5)
    for k, saddle in enumerate(landscape.saddles):
        between = slice(minima[k], minima[k + 1] + 1)
        assert saddle.value == pytest.approx(values[between].max(), abs=1e-8)
        assert float(saddle.point @ _axis(landscape)) == pytest.approx(
            grid[between][values[between].argmax()], abs=4e-5
        )
        left, right = landscape.basins[k], landscape.basins[k + 1]
        assert left.right is saddle and right.left is saddle
        assert left.right_barrier == pytest.approx(values[between].max() - values[minima[k]], abs=1e-8)
        assert right.left_barrier == pytest.approx(values[between].max() - values[minima[k + 1]], abs=1e-8)
    assert landscape.basins[0].left is None and landscape.basins[-1].right is None


@pytest.mark.parametrize("case", [c for c in CASES if len(c.get("wells", "ab")) > 1 and c["dim"] > 1])
def test_the_saddle_is_the_lowest_point_of_its_hyperplane(case: dict[str, Any]) -> None:
    """Every path between neighbouring basins crosses the hyperplane through the saddle orthogonal
    to the axis; f there is lowest at the saddle, so its value is the barrier of the best path."""
    landscape = _build(case)
    axis = _axis(landscape)
    generator = torch.Generator().manual_seed(3)
    for saddle in landscape.saddles:
        directions = torch.randn(400, landscape.dim, generator=generator, dtype=F64)
        directions -= (directions @ axis)[:, None] * axis
        directions /= directions.norm(dim=1, keepdim=True)
        radii = torch.logspace(-4, 1, 400, dtype=F64)
        values = landscape.loss(saddle.point + radii[:, None] * directions)
        assert float(values.min()) > saddle.value
        # ... and the rise is monotone in the radius along any one direction.
        ray = landscape.loss(saddle.point + radii[:, None] * directions[0])
        assert bool((ray.diff() > 0).all())


# --- closed forms against autograd and finite differences ------------------------------------------


def _points_near_the_wells(landscape: Basins, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    _, centres, _, widths = _formula(landscape.values)
    pick = torch.randint(len(centres), (count,), generator=generator)
    t = torch.from_numpy(centres)[pick] + torch.from_numpy(widths)[pick] * torch.randn(
        count, generator=generator, dtype=F64
    )
    across = 0.3 * torch.randn(count, landscape.dim, generator=generator, dtype=F64)
    return t[:, None] * _axis(landscape) + across


@pytest.mark.parametrize("case", CASES)
def test_closed_form_gradient_and_hvp_match_autograd(case: dict[str, Any]) -> None:
    landscape = _build(case)
    x = torch.cat([_points_near_the_wells(landscape, 6, 1), landscape.sample_start(range(3))])
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    loss, grad = landscape.loss_and_grad(x)
    auto_loss, auto_grad = Landscape.loss_and_grad(landscape, x)
    torch.testing.assert_close(loss, auto_loss, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(landscape.hvp(x, v), Landscape.hvp(landscape, x, v), rtol=1e-11, atol=1e-11)
    # Fresh tensors: the engine adds noise to the gradient in place.
    grad.add_(1.0)
    torch.testing.assert_close(landscape.loss_and_grad(x)[1], auto_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_gradient_and_hvp_match_central_finite_differences(case: dict[str, Any]) -> None:
    landscape = _build(case)
    x = _points_near_the_wells(landscape, 4, 5)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=F64)
    v /= v.norm(dim=1, keepdim=True)
    h = 1e-5
    _, grad = landscape.loss_and_grad(x)
    slope = (landscape.loss(x + h * v) - landscape.loss(x - h * v)) / (2 * h)
    torch.testing.assert_close(slope, (grad * v).sum(1), rtol=1e-6, atol=1e-8)
    curvature = (landscape.loss_and_grad(x + h * v)[1] - landscape.loss_and_grad(x - h * v)[1]) / (2 * h)
    torch.testing.assert_close(landscape.hvp(x, v), curvature, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rotate", [False, True])
def test_float32_agrees_with_float64(rotate: bool) -> None:
    case = {"dim": 50, "rotate": rotate}
    precise, single = _build(case), _build(case, torch.float32)
    x = _points_near_the_wells(precise, 8, 7)
    loss, grad = single.loss_and_grad(x.float())
    torch.testing.assert_close(loss.double(), precise.loss(x), rtol=0, atol=2e-6)
    torch.testing.assert_close(grad.double(), precise.loss_and_grad(x)[1], rtol=0, atol=2e-5)
    for mine, theirs in zip(single.minima, precise.minima):
        assert float(single.loss(mine.point[None])) == pytest.approx(theirs.value, abs=1e-6)


# --- the basin field --------------------------------------------------------------------------


def _start_at(landscape: Basins, point: torch.Tensor, spread: float) -> None:
    """Override the start distribution: ``point + spread N(0, I)``."""
    landscape._sample_start = lambda generator: (
        point
        + spread
        * torch.randn(  # type: ignore[method-assign]
            landscape.dim, generator=generator, dtype=F64
        )
    )


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4]])
def test_runs_started_in_a_well_end_in_its_basin(case: dict[str, Any]) -> None:
    for basin in _build(case).basins:
        landscape = _build(case)
        _start_at(landscape, basin.minimum.point, 0.02 * basin.width)
        records = landbench.run(landscape, "sgd(lr=0.05)", seeds=4, steps=600, curvature=False)
        assert [r["basin"] for r in records] == [basin.well] * 4
        assert all(r["final_loss"] == pytest.approx(basin.minimum.value, abs=1e-9) for r in records)


def test_a_run_above_the_barrier_and_a_diverged_run_are_in_no_basin() -> None:
    landscape = _build(CASES[1])
    saddle = landscape.saddles[0]
    across = torch.zeros(landscape.dim, dtype=F64)
    across[1] = 1.0
    across -= (across @ _axis(landscape)) * _axis(landscape)
    # Across the axis from the saddle, f is above the barrier (and a tiny step keeps it there).
    _start_at(landscape, saddle.point + 0.5 * across / across.norm(), 0.0)
    records = landbench.run(landscape, "sgd(lr=1e-9)", seeds=2, steps=1, curvature=False)
    assert all(r["basin"] is None and r["final_loss"] > saddle.value for r in records)
    # lr * bowl = 50: GD multiplies x by about -49 per step until the loss overflows.
    diverging = _build({"dim": 4}, torch.float32)
    records = landbench.run(diverging, "sgd(lr=1000.0)", seeds=3, steps=100, curvature=False)
    assert all(r["diverged"] and r["basin"] is None for r in records)


def test_basin_field_follows_its_definition_at_the_boundaries() -> None:
    """In basin j: t between the saddles flanking minimum j and f below the lower of them. Three
    wells: the middle basin's two saddles differ in height (barriers 0.43 and 0.62)."""
    landscape = _build(CASES[3])
    axis = _axis(landscape)
    low, high = landscape.saddles  # left and right of the middle minimum
    assert low.value < high.value
    across = torch.randn(landscape.dim, generator=torch.Generator().manual_seed(4), dtype=F64)
    across -= (across @ axis) * axis
    across /= across.norm()
    middle = landscape.basins[1].minimum.point
    cases = [
        (low.point - 1e-3 * axis, 0),  # just below the lower saddle, on its left: basin 0
        (low.point + 1e-3 * axis, 1),  # ... and on its right: below the middle basin's level
        (high.point + 1e-3 * axis, 2),  # just below the higher saddle, on its right: basin 2
        (high.point - 1e-3 * axis, None),  # ... on its left: below it, above the lower one
        (low.point, None),  # exactly at a saddle
        (low.point - 1e-3 * axis + 0.3 * across, None),  # above the barrier, off the axis
        (middle + 0.2 * across, 1),
        (torch.full((landscape.dim,), math.nan, dtype=F64), None),
        (middle, None),  # a diverged run
    ]
    points = torch.stack([point for point, _ in cases])
    values = landscape.loss(points)
    assert low.value < float(values[3]) < high.value and float(values[5]) > low.value
    diverged = torch.zeros(len(points), dtype=torch.bool)
    diverged[-1] = True
    assert landscape.record_fields(points, None, diverged)["basin"] == [basin for _, basin in cases]


def test_one_well_is_one_basin_everywhere() -> None:
    landscape = _build(CASES[5])
    points = 10.0 * torch.randn(5, landscape.dim, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert landscape.record_fields(points, None, torch.zeros(5, dtype=torch.bool))["basin"] == [0] * 5
    (minimum,) = landscape.minima
    assert minimum.value == -2.0 and float(minimum.point.abs().max()) == 0.0
    assert minimum.lambda_max == pytest.approx(0.2 + 2.0 / 0.25)


# --- the share of runs in the wide basin --------------------------------------------------------


def test_share_in_the_wide_basin_in_dim_1_is_the_start_mass_of_its_basin_of_attraction() -> None:
    """In dim 1 the basin of attraction of gradient flow for the wide well is (-inf, t_s), t_s the
    maximum between the wells. GD with lr < 1/max f'' is a monotone map of the line fixing t_s, so
    its basins are the same: the share is Phi(t_s / init_scale) under the start N(0, init_scale^2).
    t_s comes from the dense scan, not from the landscape."""
    case, runs, lr = {"dim": 1}, 4000, 0.05
    grid, values, _, maxima = _scan(case)
    curvature = np.diff(values, 2) / (grid[1] - grid[0]) ** 2
    assert lr * curvature.max() < 1  # the premise: a monotone GD map
    expected = scipy.stats.norm.cdf(grid[maxima[0]] / 2.0)  # default init_scale 2: 0.6539
    # Batches of 1000 runs: the (runs, wells) exp stays below the size at which torch splits it
    # over threads (4000 elements), which costs about 8 ms a step on a loaded 2-core machine.
    landscape = _build(case)
    basins = [
        record["basin"]
        for first in range(0, runs, 1000)
        for record in landbench.run(
            landscape, f"sgd(lr={lr})", seeds=list(range(first, first + 1000)), steps=1000, curvature=False
        )
    ]
    assert basins.count(None) == 0
    # Binomial standard error sqrt(p (1 - p) / 4000) = 0.0075; margin 5 SE.
    share = basins.count(0) / runs
    assert share == pytest.approx(expected, abs=5 * math.sqrt(expected * (1 - expected) / runs))


def test_in_higher_dimension_the_wide_basin_takes_almost_every_run() -> None:
    """Measured, with the mechanism: the bowl contracts x = t u + y as a whole, so by the time |y|
    has come down to the wells' range (about 1) t has shrunk by |y0| ~ 2 sqrt(d): runs arrive near
    t = 0, inside the wide well's reach (the saddle is at t = 0.79). In dim 1 the share is 0.654
    (test above); in dim 30 all 200 runs end in the wide basin (at 400 runs: 0.79 at d = 2, 0.975
    at d = 5, 0.9975 at d = 10, 1.0 from d = 30 to 1000)."""
    records = landbench.run(_build({"dim": 30}), "sgd(lr=0.05)", seeds=200, steps=2000, curvature=False)
    assert [r["basin"] for r in records] == [0] * 200


@pytest.mark.slow
def test_share_in_the_wide_basin_rises_with_dimension() -> None:
    """Measured (1000 runs each, float32): 0.645 at d = 1 (theory above: 0.654), 0.813 at d = 2 and
    0.974 at d = 5. Binomial standard errors are at most 0.016, the gaps 0.16 (10 SE); the test asks
    for gaps of 0.08 (5 SE)."""
    shares = []
    for dim in (1, 2, 5):
        records = landbench.run(_build({"dim": dim}), "sgd(lr=0.05)", seeds=1000, steps=2000, curvature=False)
        basins = [r["basin"] for r in records]
        assert basins.count(None) == 0
        shares.append(basins.count(0) / 1000)
    assert shares[0] + 0.08 < shares[1] < shares[2] - 0.08
    assert shares[2] > 0.93


# --- start, instance, description -----------------------------------------------------------------


def test_start_is_gaussian_with_the_documented_scale() -> None:
    landscape = _build({"dim": 100, "init_scale": 1.5})
    x = landscape.sample_start(range(40))  # 4000 numbers
    # Mean 0 (standard error 1.5 / sqrt(4000) = 0.024; margin 5 SE) and variance 2.25 (relative
    # standard error sqrt(2 / 4000) = 0.022; margin 0.1).
    assert abs(float(x.mean())) < 0.12
    assert float(x.var()) == pytest.approx(2.25, rel=0.1)


def test_rotated_axis_is_a_unit_vector_drawn_from_dim_and_seed_only() -> None:
    a = Basins(dim=20, rotate=True, dtype=F64)
    b = Basins(dim=20, rotate=True, dtype=F64, wells=((2.0, 0.5), (1.0, 1.0)), separation=3.5, bowl=0.03)
    c = Basins(dim=20, rotate=True, dtype=F64, seed=1)
    single = Basins(dim=20, rotate=True)
    assert float(a.axis.norm()) == pytest.approx(1.0, abs=1e-15)
    torch.testing.assert_close(a.axis, b.axis, atol=0, rtol=0)
    assert float((a.axis - c.axis).abs().max()) > 0.1
    torch.testing.assert_close(single.axis, a.axis.float(), atol=0, rtol=0)


def test_description_lists_saddles_and_barriers_and_is_json() -> None:
    landscape = _build({"dim": 3})
    info = json.loads(json.dumps(landscape.describe()))
    assert [s["index"] for s in info["saddles"]] == [1]
    facts = landscape.facts()
    assert [b["well"] for b in facts["basins"]] == [0, 1]
    assert facts["basins"][0]["right_barrier"] == pytest.approx(
        landscape.saddles[0].value - landscape.basins[0].minimum.value
    )
    assert landscape.spec == "basins(dim=3)"
    assert Basins.canonical(dim=2, wells=[[2, 1]], separation=3) == "basins(dim=2, wells=((2.0, 1.0),))"


# --- bad parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wells": ()}, "non-empty tuple of (depth, width) pairs"),
        ({"wells": ((1.0, -0.25),)}, "well 0 is (1.0, -0.25)"),
        ({"wells": ((1.0, 1.0), (1.0,))}, "well 1 is (1.0,)"),
        ({"wells": ((1.0, 1.0, 1.0),)}, "pairs"),
        ({"wells": ((True, 1.0),)}, "well 0"),
        ({"wells": ((1.0, math.inf),)}, "finite numbers > 0"),
        ({"wells": (1.0, 2.0)}, "well 0 is 1.0"),
        ({"wells": "wide"}, "must be a non-empty tuple"),
        ({"separation": 0.0}, "separation must be a number > 0.0"),
        ({"separation": -1.0}, "separation must be a number > 0.0"),
        ({"bowl": 0.0}, "bowl must be a number > 0.0"),
        ({"init_scale": 0.0}, "init_scale must be a number > 0.0"),
        ({"rotate": 1}, "rotate must be True or False"),
    ],
)
def test_bad_parameters_are_refused_with_what_is_valid(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=f"^basins: .*{re.escape(message)}"):
        Basins(dim=2, **kwargs)
    with pytest.raises(SpecError):
        Basins.canonical(dim=2, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wells": ((1.0, 1.0), (0.01, 0.25))}, "has 1 minimum"),  # too shallow for the bowl's slope
        ({"separation": 0.3}, "has 1 minimum"),  # the wells merge
        ({"separation": 30.0}, "15 widths from its centre"),  # the bowl's own minimum between far wells
    ],
)
def test_wells_without_a_minimum_of_their_own_are_refused(kwargs: dict[str, Any], message: str) -> None:
    """Also by ``canonical`` (what a suite validates before it runs anything)."""
    for build in (lambda: Basins(dim=2, **kwargs), lambda: Basins.canonical(dim=2, **kwargs)):
        with pytest.raises(SpecError, match=f"every well must make one minimum.*{re.escape(message)}"):
            build()


def test_where_runs_ended_says_nothing_when_every_run_diverged() -> None:
    """The table's "ended in" text: shares of the runs that ended somewhere, none at all (not a bare
    "basin") when every run diverged, since the diverged column already says so."""
    from landbench.landscapes.base import describe_ends, where_runs_ended

    describe = describe_ends("basin")
    ended = [{"diverged": False, "basin": 0}, {"diverged": False, "basin": 1}, {"diverged": True, "basin": None}]
    assert describe(where_runs_ended(ended, "basin")) == "basin 0:33% 1:33%"
    assert describe(where_runs_ended([{"diverged": True, "basin": None}] * 4, "basin")) == ""
