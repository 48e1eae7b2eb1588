"""The chain of saddles against Du et al. 2017's mechanism: visits in order, geometric stays, underflow."""

from __future__ import annotations

import math

import pytest
import torch
from reference import dense_hessian

import landbench


def test_every_saddle_of_the_chain_is_where_and_what_it_is_documented_to_be() -> None:
    gamma, stiffness, quartic, d = 1.5, 3.0, 2.0, 5
    landscape = landbench.make(
        f"saddle_chain(dim={d}, gamma={gamma}, stiffness={stiffness}, quartic={quartic})", dtype="float64"
    )
    well = math.sqrt(gamma / quartic)
    for i in range(1, d + 1):
        saddle = landscape.saddle_point(i)
        expected_point = torch.tensor([well] * (i - 1) + [0.0] * (d - i + 1), dtype=torch.float64)
        torch.testing.assert_close(saddle.point, expected_point)
        loss, grad = landscape.loss_and_grad(saddle.point[None])
        assert float(loss) == pytest.approx(-(i - 1) * gamma**2 / (4 * quartic), abs=1e-12)
        assert float(grad.abs().max()) < 1e-12
        spectrum = torch.linalg.eigvalsh(dense_hessian(landscape, saddle.point))
        expected = sorted([2 * gamma] * (i - 1) + [-gamma] + [stiffness] * (d - i))
        torch.testing.assert_close(spectrum, torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=0)
    # Any sign pattern of the wells is a global minimum.
    signs = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    loss, grad = landscape.loss_and_grad((well * signs)[None])
    assert float(loss) == pytest.approx(landscape.f_star) == -d * gamma**2 / (4 * quartic)
    assert float(grad.abs().max()) < 1e-12


def test_gd_passes_the_saddles_in_order_each_stay_a_fixed_multiple_of_the_last() -> None:
    """While GD waits at saddle i, x_{i+1} shrinks by |1 - lr L| a step, so the stay at saddle i+1
    grows by ln(1/|1 - lr L|)/ln(1 + lr gamma) times the time elapsed: stays grow geometrically
    with ratio 1 + ln(1/|1 - lr L|)/ln(1 + lr gamma) (= 3.34 at lr 0.1, gamma 1, L 2)."""
    lr, gamma, stiffness = 0.1, 1.0, 2.0
    ratio = 1 + math.log(1 / abs(1 - lr * stiffness)) / math.log(1 + lr * gamma)
    records = landbench.run(
        "saddle_chain(dim=4)", f"sgd(lr={lr})", seeds=4, steps=6000, dtype="float64", curvature=False
    )
    for record in records:
        escapes = record["chain_escapes"]
        assert None not in escapes and escapes == sorted(escapes)
        assert record["escape_step"] == escapes[0] and record["chain_underflow"] is None
        stays = [escapes[0]] + [b - a for a, b in zip(escapes, escapes[1:])]
        for earlier, later in zip(stays[1:], stays[2:]):
            assert later / earlier == pytest.approx(ratio, rel=0.05)
        assert record["loss_gap"] < 1e-9


def test_float32_underflow_strands_gd_where_the_contraction_law_says() -> None:
    """x_k, the coordinate that must grow at saddle k, shrinks by (1 - lr L) every step until saddle
    k-1 is left. In float32's subnormal range (spacing 2^-149) GD's increment lr gamma |x_k| rounds
    to zero once |x_k| < 2^-150 / (lr gamma): the run is stranded at the first saddle whose
    coordinate had shrunk below that when its predecessor was left."""
    lr, gamma, stiffness = 0.1, 1.0, 2.0
    landscape = landbench.make("saddle_chain(dim=4)", dtype="float32")
    records = landbench.run(landscape, f"sgd(lr={lr})", seeds=4, steps=6000, curvature=False)
    starts = landscape.sample_start(range(4)).double().abs()
    frozen = 2.0**-150 / (lr * gamma)
    for record, start in zip(records, starts):
        escapes = record["chain_escapes"]
        left = [s for s in escapes if s is not None]
        shrunk = [float(start[k]) * (1 - lr * stiffness) ** left[k - 1] for k in range(1, len(left) + 1)]
        predicted = next(k + 1 for k, size in enumerate(shrunk, start=1) if size < frozen)
        assert record["chain_underflow"] == predicted == len(left) + 1 == 4
    float64 = landbench.run(
        "saddle_chain(dim=4)", f"sgd(lr={lr})", seeds=4, steps=6000, dtype="float64", curvature=False
    )
    assert all(r["chain_underflow"] is None and None not in r["chain_escapes"] for r in float64)


def test_underflow_marks_a_subnormal_coordinate_even_one_that_later_recovers() -> None:
    """A coordinate that is subnormal but above 2^-150/(lr gamma) still grows under GD (slowly, at
    reduced precision): the record marks it while it is subnormal and stops once it has escaped."""
    spec = "saddle_chain(dim=2, init_radius=6.5e-13)"
    (early,) = landbench.run(spec, "sgd(lr=0.1)", seeds=1, steps=330, dtype="float32", curvature=False)
    (late,) = landbench.run(spec, "sgd(lr=0.1)", seeds=1, steps=1400, dtype="float32", curvature=False)
    assert early["chain_escapes"][1] is None and early["chain_underflow"] == 2
    assert late["chain_escapes"][1] is not None and late["chain_underflow"] is None


def test_a_long_chain_does_not_store_its_saddles() -> None:
    landscape = landbench.make("saddle_chain(dim=100000)")
    assert len(landscape.known.saddles) == 7 and landscape.tensor_bytes() < 10 * 100000 * 4
    saddle = landscape.saddle_point(50000)
    assert saddle.value == pytest.approx(-49999 * 0.25) and float(saddle.point[49998]) == 1.0
