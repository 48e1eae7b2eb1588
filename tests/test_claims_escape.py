"""Claims 3 (escape) and 4 (momentum): their closed forms against brute force, their statistics against
landbench's outcome rules, and each experiment's test tier end to end (figure, verdicts, resuming)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import torch
from reference import scalar_escape_step

from landbench.claims import VERDICTS, run_claim
from landbench.claims import escape as claim3
from landbench.claims import momentum as claim4
from landbench.claims.base import read_experiment
from landbench.ranking.stats import censored_quantile

EXPERIMENTS = Path(__file__).resolve().parents[1] / "problems" / "claims"


# --- claim 3: the closed forms --------------------------------------------------------------------


def test_the_escape_radius_is_where_the_loss_is_halfway_to_the_minimum() -> None:
    r2 = claim3.RADIUS**2
    assert -r2 / 2 + r2 * r2 / 4 == pytest.approx(-1 / 8)


def test_the_beta_law_at_index_one_is_design_md_s_law_at_large_d() -> None:
    for dim in (10**4, 10**6):
        assert claim3.random_start_mean(dim, 1, 0.1, 1e-3) == pytest.approx(
            claim3.design_random_start(dim, 0.1, 1e-3), abs=0.02
        )
    # DESIGN.md's 0.635 is -1/2 (digamma(1/2) + ln 2)
    assert -0.5 * (scipy.special.digamma(0.5) + math.log(2)) == pytest.approx(claim3.DESIGN_CONSTANT, abs=5e-4)


@pytest.mark.parametrize(("dim", "index"), [(20, 1), (100, 10), (300, 30)])
def test_the_unstable_part_of_a_uniform_start_has_the_beta_log_mean(dim: int, index: int) -> None:
    """Brute force: uniform points of the sphere (normalised Gaussians), E[ln |P_u x_0| / eps]."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((40_000, dim))
    share = np.sum(z[:, :index] ** 2, axis=1) / np.sum(z**2, axis=1)
    measured, error = 0.5 * np.log(share).mean(), 0.5 * np.log(share).std() / math.sqrt(len(share))
    # the law's mean escape step is (ln(r/eps) - E[ln |P_u x_0|/eps]) / ln a
    lr, eps, log_a = 0.1, 1e-3, math.log(1.1)
    predicted = math.log(claim3.RADIUS / eps) - claim3.random_start_mean(dim, index, lr, eps) * log_a
    assert measured == pytest.approx(predicted, abs=4 * error)


def test_the_noise_law_s_distribution_matches_a_simulated_linear_recursion() -> None:
    """u_t = a u_{t-1} - lr sigma xi_t from 0 (the unstable coordinate of noisy GD in the linear
    regime), simulated: the share with |u_t| >= r at t is the closed form's P(T <= t)."""
    lr, sigma, n = 0.1, 1e-4, 40_000
    a = 1 + lr
    rng = np.random.default_rng(1)
    u = np.zeros(n)
    for t in range(1, 131):
        u = a * u - lr * sigma * rng.standard_normal(n)
        if t in (90, 100, 110, 120):
            share = np.mean(np.abs(u) >= claim3.RADIUS)
            assert share == pytest.approx(float(claim3.noise_cdf(np.array([t]), sigma, 1, lr)[0]), abs=0.01)


def test_the_noise_law_s_mean_is_the_mean_of_its_distribution() -> None:
    """E[T] = sum_t P(T > t) for the integer first passage; DESIGN.md's continuous law is within a step."""
    lr, sigma = 0.1, 1e-6
    steps = np.arange(0, 2000)
    mean = float(np.sum(1 - claim3.noise_cdf(steps, sigma, 1, lr)))
    assert mean == pytest.approx(claim3.noise_mean(sigma, 1, lr), abs=1.0)


def test_the_slope_interval_covers_a_known_slope() -> None:
    rng = np.random.default_rng(2)
    xs = np.log([10.0, 100.0, 1000.0, 10000.0])
    groups = [3.0 + 5.0 * x + rng.standard_normal(200) for x in xs]
    slope, low, high = claim3.slope_interval(xs, groups, resamples=500, seed=0)
    assert low < 5.0 < high and high - low < 0.5
    assert slope == pytest.approx(np.polyfit(np.repeat(xs, 200), np.concatenate(groups), 1)[0])


def test_the_suite_has_each_point_once() -> None:
    params = read_experiment(EXPERIMENTS / "escape.toml").params("quick")
    text = claim3.suite_text(params)
    assert text.count("index=1,") == 2  # the exact saddle and the k = 1 sweep (d = 10 shared with k = d/10)
    assert 'dtype = "float64"' in text


# --- claim 4: the linear laws ---------------------------------------------------------------------


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_momentum_growth_rates_are_torch_s_sgd_on_negative_curvature(nesterov: bool) -> None:
    """torch.optim.SGD on f(u) = -u^2/2: the unstable coordinate grows by the spectral radius per step."""
    lr = 0.3162
    u = torch.tensor([1e-12], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([u], lr=lr, momentum=claim4.BETA, nesterov=nesterov)
    values = []
    for _ in range(200):
        opt.zero_grad()
        (-(u**2) / 2).sum().backward()
        opt.step()
        values.append(float(u.detach()))
    name = "sgd(momentum=0.9, nesterov=True)" if nesterov else "sgd(momentum=0.9)"
    assert values[-1] / values[-2] == pytest.approx(claim4.growth_rate(name, lr), rel=1e-9)
    if not nesterov:  # heavy ball: the larger root of z^2 - (1 + beta + lr) z + beta
        b = 1 + claim4.BETA + lr
        assert claim4.growth_rate(name, lr) == pytest.approx((b + math.sqrt(b * b - 4 * claim4.BETA)) / 2)


def test_the_linear_escape_of_gd_is_the_log_law_and_trails_the_nonlinear_one() -> None:
    for u0 in (1e-3, 1e-5):
        expected = math.ceil(math.log(claim4.RADIUS / u0) / math.log(1.1))
        assert claim4.linear_escape("gd", 0.1, u0) == expected
        # the cubic term slows the last steps: the true recursion escapes at or after the linear one
        assert 0 <= scalar_escape_step(u0, 0.1, 1.0, 1.0) - expected <= 4
    assert claim4.linear_escape("adam", 0.1, 1e-3) is None


def test_the_median_start_is_the_median_unstable_part_of_a_uniform_start() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((40_000, 100))
    unstable = 1e-3 * np.linalg.norm(z[:, :5], axis=1) / np.linalg.norm(z, axis=1)
    assert np.median(unstable) == pytest.approx(claim4.median_start(100, 5, 1e-3), rel=0.01)


def test_the_censored_medians_are_landbench_s() -> None:
    """The claim's medians are landbench's censored median (censored runs ranked after every escape),
    checked against numpy's median of the times with censored runs as inf (independent of both), one
    series at a time and many at once."""
    rng = np.random.default_rng(4)
    for n in (7, 8):
        batch = rng.integers(1, 50, size=(50, n)).astype(float)
        batch[rng.random((50, n)) < 0.4] = math.inf
        assert np.array_equal(claim4._medians(batch), np.median(batch, axis=1))
        for times in batch:
            expected = censored_quantile([None if math.isinf(t) else t for t in times], 0.5)
            got = float(claim4._medians(times))
            assert (expected is None and math.isinf(got)) or got == expected
            assert got == float(np.median(times))


# --- the experiments end to end -------------------------------------------------------------------


def _run(name: str, out: Path):
    torch.set_num_threads(1)
    return run_claim(read_experiment(EXPERIMENTS / f"{name}.toml"), "test", out, progress=False)


def test_the_escape_claim_runs_draws_and_resumes(tmp_path: Path) -> None:
    outcome = _run("escape", tmp_path)
    findings = outcome.measured.findings
    assert len(findings) == 4 and all(f.verdict in VERDICTS for f in findings)
    assert outcome.measured.figures[0].exists() and outcome.measured.figures[0].stat().st_size > 10_000
    # GD from the exact saddle never escapes; noise always does; the noise law's slope is found
    assert outcome.measured.data["exact_saddle"]["gd"]["escaped"] == 0
    assert findings[0].verdict == "supported" and findings[1].verdict == "supported"
    (store,) = [path for path in (tmp_path / "escape").rglob("results.jsonl") if path.is_file()]
    before = store.read_bytes()
    again = _run("escape", tmp_path)
    assert store.read_bytes() == before  # resumed: nothing run again
    assert [f.as_dict() for f in again.measured.findings] == [f.as_dict() for f in findings]


def test_the_momentum_claim_runs_with_tuned_rates(tmp_path: Path) -> None:
    outcome = _run("momentum", tmp_path)
    findings = outcome.measured.findings
    assert len(findings) == 4 and all(f.verdict in VERDICTS for f in findings)
    assert outcome.measured.figures[0].exists()
    rates = outcome.measured.data["tuned_rates"]
    assert set(rates) == set(claim4.NAMES.values()) and all(r in (0.01, 0.1, 0.3162) for r in rates.values())
    # at the same rate, heavy ball and Nesterov escape faster than GD (their growth rates are larger)
    assert findings[0].verdict == "supported" and findings[1].verdict == "supported"


def test_the_momentum_ratio_rule_decides_only_what_its_interval_can() -> None:
    from landbench.claims.base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

    rule = claim4.ratio_verdict
    assert rule(0.5, 0.8)[0] == SUPPORTED  # wholly below 1: faster
    assert rule(0.95, 0.999)[0] == SUPPORTED
    assert rule(1.01, 1.5)[0] == NOT_SUPPORTED  # wholly above 1: slower
    assert rule(0.92, 1.05)[0] == NOT_SUPPORTED  # holds 1, inside [0.9, 1.1]: no faster by more than 10 %
    assert rule(0.9, 1.1)[0] == NOT_SUPPORTED
    assert rule(0.7, 1.05)[0] == INCONCLUSIVE  # holds 1, reaches below 0.9: could be 30 % faster
    assert rule(0.95, 1.3)[0] == INCONCLUSIVE  # holds 1, reaches above 1.1
    assert rule(0.5, 2.0)[0] == INCONCLUSIVE
    assert rule(math.nan, math.nan)[0] == INCONCLUSIVE


def test_the_noise_law_rule_decides_only_what_its_interval_can() -> None:
    from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

    rule, law = claim3.law_slope_verdict, -10.0
    assert rule(-10.5, -9.6, law)[0] == SUPPORTED  # holds the law, 9 % of |law| wide
    assert rule(-12.0, -8.5, law)[0] == INCONCLUSIVE  # holds the law but 35 % wide: a wide interval cannot support
    assert rule(-30.0, 1.0, law)[0] == INCONCLUSIVE  # straddles 0, holds the law: undecided
    assert rule(-2.0, 0.5, law)[0] == NOT_SUPPORTED  # straddles 0, wholly outside law +- 50 % ([-15, -5])
    assert rule(0.5, 2.0, law)[0] == NOT_SUPPORTED  # wholly above 0
    assert rule(-30.0, -20.0, law)[0] == NOT_SUPPORTED  # wholly beyond the margin on the steep side
    assert rule(-9.0, -8.0, law)[0] == CAVEAT  # below 0, excludes the law, inside the margin
    assert rule(-6.0, -3.0, law)[0] == CAVEAT  # reaches into the margin: not wholly outside it
    assert rule(-1.0, -0.5, law)[0] == NOT_SUPPORTED  # escape slows, but at a tenth of the law's rate


def test_the_dimension_rule_needs_a_decided_flat_slope_for_its_caveat() -> None:
    from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

    rule = claim3.dims_verdict
    assert rule((-1.0, -2.0, -0.1), (-1.0, -2.0, -0.5)) == SUPPORTED
    assert rule((5.0, 4.5, 5.5), (-0.8, -1.0, -0.6)) == CAVEAT  # k = 1 grows, k = d/10 shown flat or falling
    assert rule((5.0, 4.5, 5.5), (0.5, -3.0, 4.0)) == INCONCLUSIVE  # a wide k = d/10 interval cannot give the caveat
    assert rule((5.0, 4.5, 5.5), (4.0, 3.0, 5.0)) == NOT_SUPPORTED  # both grow
    assert rule((5.0, -1.0, 9.0), (-1.0, -2.0, -0.5)) == INCONCLUSIVE


def test_the_momentum_claim_pairs_each_method_with_gd_on_the_seeds_both_ran(tmp_path: Path, monkeypatch) -> None:
    from landbench.claims.base import ClaimContext

    # paired() and the bootstrap: one Adam seed and one (other) GD seed failed
    gd = {seed: float(10 + seed) for seed in range(8) if seed != 3}
    adam = {seed: float(5 + seed) for seed in range(8) if seed != 5}
    methods, references, dropped = claim4.paired({"gd": [gd], "adam": [adam]})
    assert methods["adam"][0].tolist() == [5.0, 6.0, 7.0, 9.0, 11.0, 12.0]
    assert references["adam"][0].tolist() == [10.0, 11.0, 12.0, 14.0, 16.0, 17.0]
    assert dropped["adam"] == [2]  # seed 3 of Adam (GD's failed) and seed 5 of GD (Adam's failed)
    points, samples = claim4.bootstrap_ratios(methods, references, 50, seed=0)
    assert points["adam"][0] == pytest.approx(8.0 / 13.0)
    assert samples["adam"].shape == (50, 1) and np.all(samples["adam"] < 1)
    # no paired seed: undefined, hence inconclusive
    methods, references, dropped = claim4.paired({"gd": [{0: 1.0}], "adam": [{1: 1.0}]})
    points, samples = claim4.bootstrap_ratios(methods, references, 10, seed=0)
    assert math.isnan(points["adam"][0]) and dropped["adam"] == [2]

    # the claim end to end on the test tier's store with one Adam and one GD record marked failed
    experiment = read_experiment(EXPERIMENTS / "momentum.toml")
    torch.set_num_threads(1)
    ctx = ClaimContext(experiment, "test", tmp_path)
    records = [dict(r) for r in ctx.sweep(claim4.suite_text(ctx.params), store="momentum")]
    first = next(r for r in records if r["label"] == "adam")
    other = next(r for r in records if r["label"] == "gd" and r["seed"] != first["seed"])
    first["failed"] = other["failed"] = True
    monkeypatch.setattr(ClaimContext, "sweep", lambda self, text, store="records": records)
    measured = claim4.measure(ctx)
    assert all(f.verdict in VERDICTS for f in measured.findings)
    assert measured.data["failed_runs"]["total"] == 2
    paired = {name: rows[0]["paired"] for name, rows in measured.data["paired_seeds"].items()}
    seeds = ctx.params["seeds"]
    assert paired == {"heavy ball": seeds - 1, "Nesterov": seeds - 1, "Adam": seeds - 2, "RMSprop": seeds - 1}
    adam = measured.findings[2].why
    assert "1 of Adam's and 1 of GD's failed, 2 unpaired run(s) dropped" in adam
    assert "0 of heavy ball's and 1 of GD's failed, 1 unpaired run(s) dropped" in measured.findings[0].why
