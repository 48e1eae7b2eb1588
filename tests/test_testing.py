"""landbench.testing: the assertion helpers, on hand-made records (the shares and messages are
counted by hand) and on real runs whose outcome theory fixes."""

from __future__ import annotations

import math

import pytest

import landbench
from landbench.testing import (
    assert_escapes,
    assert_in_basin,
    assert_no_divergence,
    assert_reaches,
    censored_median,
    summary,
)


def record(seed: int, **fields) -> dict:
    base = {
        "problem": "saddle(dim=10)",
        "optimizer": "sgd(lr=0.1)",
        "family": "saddle",
        "seed": seed,
        "steps": 100,
        "noise": 0.0,
        "device": "cpu",
        "diverged": False,
        "diverged_step": None,
        "escaped": True,
        "escape_step": None,
        "targets": [1.0, 1e-3],
        "reach_steps": [None, None],
        "reach_evals": [None, None],
        "first_hit_steps": [None, None],
        "first_hit_evals": [None, None],
        "final_loss": 0.0,
        "loss_gap": 0.0,
        "sharpness": None,
    }
    return {**base, **fields}


def escapes(steps: list[int | None], **fields) -> list[dict]:
    return [record(i, escape_step=s, escaped=s is not None, **fields) for i, s in enumerate(steps)]


def test_escape_share_counts_runs_by_hand() -> None:
    records = escapes([10, 20, None, 40])
    assert assert_escapes(records, at_least=0.75) == 0.75
    assert assert_escapes(records, within=30, at_least=0.5) == 0.5
    with pytest.raises(AssertionError) as failure:
        assert_escapes(records, within=30, at_least=0.75)
    message = str(failure.value)
    assert "saddle(dim=10) with sgd(lr=0.1), 4 runs of 100 steps" in message
    assert "2 of 4 runs escaped the saddle within 30 steps (50%); expected at least 3 (75%)" in message
    assert "escape steps: 10, 20, 40; 1 run(s) never escaped" in message


def test_a_diverged_run_never_meets_a_claim_and_is_named() -> None:
    records = escapes([5, 6]) + [record(2, escape_step=3, diverged=True, diverged_step=7)]
    with pytest.raises(AssertionError, match=r"2 of 3 runs escaped.*\n.*\n  diverged: 1 run\(s\) \(seed 2 at step 7\)"):
        assert_escapes(records)
    with pytest.raises(AssertionError, match="2 of 3 runs stayed finite"):
        assert_no_divergence(records)
    assert_no_divergence(records[:2])


def test_reaches_reads_the_column_of_the_target_in_each_record() -> None:
    records = [
        record(0, reach_steps=[3, 50], reach_evals=[6, 100]),
        record(1, reach_steps=[4, None], reach_evals=[8, None], first_hit_steps=[4, 30], first_hit_evals=[8, 60]),
        # the same target in another position: found by value, not by place
        record(2, targets=[1e-3, 1.0], reach_steps=[70, 5], reach_evals=[140, 10]),
    ]
    assert assert_reaches(records, target=1.0) == 1.0
    assert assert_reaches(records, target=1e-3, at_least=2 / 3) == pytest.approx(2 / 3)
    assert assert_reaches(records, target=1e-3, within=60, at_least=1 / 3) == pytest.approx(1 / 3)
    assert assert_reaches(records, target=1e-3, within=100, unit="evals", at_least=1 / 3) == pytest.approx(1 / 3)
    held = r"steps from which the target was held: 50, 70; 1 run\(s\) did not hold it"
    with pytest.raises(AssertionError, match=held):
        assert_reaches(records, target=1e-3)
    with pytest.raises(AssertionError, match=r"1 run\(s\) reached the target and left it again"):
        assert_reaches(records, target=1e-3)  # run 1 touched it at step 30 (its first hit), then left


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: assert_reaches(r, target=1e-6), r"target 1e-06 is not among the records' targets \(1, 0.001\)"),
        (lambda r: assert_reaches(r, target=1.0, unit="seconds"), "unit must be 'steps' or 'evals'"),
        (lambda r: assert_escapes(r, at_least=90), r"between 0 and 1, got 90 \(did you mean 0.9\?\)"),
        (lambda r: assert_escapes(r, within=-1), "within must be a non-negative whole number"),
        (lambda r: assert_in_basin(r), "saddle.* is not a basins problem"),
        (lambda r: assert_escapes([]), "no records"),
        (lambda r: assert_escapes(r[0]), "pass the list of records"),
        (lambda r: assert_escapes([{**r[0], "escaped": None}]), "has no designated saddle"),
        (lambda r: assert_reaches([{**r[0], "reach_steps": None}], 1.0), "no known optimum f"),
    ],
)
def test_bad_claims_are_refused_with_what_is_valid(call, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        call(escapes([1, 2]))


def test_censored_median() -> None:
    assert censored_median([1, 5, None]) == 5
    assert censored_median([1, 5, None, None]) is None  # the middle pair is (5, never)
    assert censored_median([1, 2, 3, None]) == 2.5
    assert censored_median([]) is None


def test_wide_basin_claim_on_one_dimension_matches_the_start_mass() -> None:
    """In one dimension gradient descent with a small step ends in the basin its start lies in. With
    the default wells the basin of the wide well (well 0) is everything left of the saddle between
    the wells, so the share of runs in it is the share of starts left of the saddle: counted here
    from the start points themselves, not from the records."""
    landscape = landbench.make("basins(dim=1)")
    (saddle,) = landscape.saddles
    starts = landscape.sample_start(range(32))[:, 0]
    left = float((starts < float(saddle.point[0])).double().mean())
    records = landbench.run("basins(dim=1)", "gd(lr=0.1)", seeds=32, steps=400, curvature=False)
    assert assert_in_basin(records, "wide", at_least=0) == pytest.approx(left)
    assert assert_in_basin(records, "narrow", at_least=0) == pytest.approx(1 - left)
    assert assert_in_basin(records, 0, at_least=0) == pytest.approx(left)
    with pytest.raises(AssertionError, match=rf"ended in the wide basin \(well 0\) \({left:.0%}\)"):
        assert_in_basin(records, "wide", at_least=1.0)
    with pytest.raises(ValueError, match=r"well index 0..1"):
        assert_in_basin(records, 2)


def test_summary_of_real_runs() -> None:
    """From the unstable direction, gradient descent on the saddle follows the scalar recursion
    u <- u + lr (gamma u - quartic u^3) (from u = init_radius); the escape step is the first t with
    f(u_t) <= f*/2 (halfway from the saddle's value 0 to f* = -gamma^2/(4 quartic) = -1/4)."""
    u, step = 1e-3, 0
    while -(u**2) / 2 + u**4 / 4 > -1 / 8:
        u, step = u + 0.1 * (u - u**3), step + 1
    records = landbench.run('saddle(dim=5, init="unstable")', "gd(lr=0.1)", seeds=3, steps=200, dtype="float64")
    info = summary(records)
    assert info["runs"] == 3 and info["diverged"] == 0 and info["escaped_share"] == 1.0
    assert info["median_escape_step"] == step
    assert math.isclose(info["median_final_loss"], -0.25, abs_tol=1e-9)
    assert assert_escapes(records, within=step) == 1.0
    with pytest.raises(AssertionError, match=f"escape steps: {step}, {step}, {step}"):
        assert_escapes(records, within=step - 1)
