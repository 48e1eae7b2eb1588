"""Claim 6 (flat minima on basins): the test tier end to end, and its theory against closed forms and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from landbench.claims import VERDICTS, run_claim
from landbench.claims.flat_minima import (
    basin_facts,
    gd_baseline,
    kramers_rate,
    kramers_share,
    newcombe,
    one_sided_p,
    rho_of,
    rise_finding,
)
from landbench.landscapes import make
from landbench.landscapes.basins import well_index
from landbench.report.data import Share, wilson


def _share(wide: int, runs: int) -> Share:
    return Share(wide, runs, 0, *wilson(wide, runs))


def test_test_tier_end_to_end_and_resumes(tmp_path, monkeypatch):
    outcome = run_claim("flat_minima", "test", tmp_path, log=lambda line: None)
    measured = outcome.measured
    assert outcome.verdict in VERDICTS
    assert len(measured.findings) == 3 and all(f.verdict in VERDICTS for f in measured.findings)
    assert measured.figures and measured.figures[0].exists() and measured.figures[0].stat().st_size > 10_000
    assert {"noise", "rho", "dims", "theory"} <= set(measured.data)
    # a second run resumes: the stores and the cache are read, not extended, and no theory is recomputed
    import landbench.claims.flat_minima as module

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed")

    folder = tmp_path / "flat_minima"
    stored = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.jsonl") if p.is_file()}
    assert {"noise/results.jsonl", "sam/results.jsonl", "cache.jsonl"} <= set(stored)
    monkeypatch.setattr(module, "gd_baseline", refuse)
    monkeypatch.setattr(module, "basin_facts", refuse)
    again = run_claim("flat_minima", "test", tmp_path, log=lambda line: None)
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.jsonl") if p.is_file()} == stored
    assert again.measured.data["noise"] == measured.data["noise"]
    assert [f.verdict for f in again.measured.findings] == [f.verdict for f in measured.findings]


def test_gd_baseline_in_one_dimension_is_the_start_mass_left_of_the_saddle():
    # in 1-D gradient descent's basins are intervals split at the saddle: Phi(t_saddle / init_scale)
    land = make("basins(dim=1)", dtype="float64")
    expected = scipy.stats.norm.cdf(float(land.saddles[0].point[0]) / land.init_scale)
    assert expected == pytest.approx(0.654, abs=1e-3)
    assert gd_baseline(1, 0.05, 400, (1000, 1)) == pytest.approx(expected, abs=1e-3)


def test_gd_baseline_matches_brute_force_gd_in_five_dimensions():
    # the reduced (t, |y|) model against plain GD on the full landscape from 4000 random starts
    land = make("basins(dim=5)", dtype="float64")
    generator = torch.Generator().manual_seed(7)
    x = land.init_scale * torch.randn(2000, 5, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(400):
            x -= 0.05 * land.loss_and_grad(x)[1]
    basin = land.record_fields(x, None, torch.zeros(2000, dtype=torch.bool))["basin"]
    wide = sum(b == well_index("basins(dim=5)", "wide") for b in basin)
    low, high = wilson(wide, 2000)
    theory = gd_baseline(5, 0.05, 400, (200, 40))
    assert low - 0.01 <= theory <= high + 0.01


def test_kramers_rate_matches_the_one_dimensional_formula():
    facts = basin_facts(1)
    temperature = 0.2
    s, m = facts["saddle"], facts["narrow"]
    expected = math.sqrt(m["along"] * abs(s["along"])) / (2 * math.pi) * math.exp(-m["barrier"] / temperature)
    assert kramers_rate(facts, "narrow", 1, temperature) == pytest.approx(expected, rel=1e-12)
    assert facts["narrow"]["lambda_max"] == pytest.approx(15.942, abs=1e-3)
    assert facts["wide"]["barrier"] == pytest.approx(0.87166, abs=1e-4)
    # no noise: the model stays at its start; long times: the Boltzmann ratio of the harmonic basins
    assert kramers_share(facts, 1, 0.05, 0.0, 1000, 0.654) == 0.654
    long = kramers_share(facts, 1, 0.05, 2.0, 10**9, 0.654)
    temperature = 0.05 * 4 / 2
    z = {w: math.exp(-facts[w]["value"] / temperature) / math.sqrt(facts[w]["along"]) for w in ("wide", "narrow")}
    assert long == pytest.approx(z["wide"] / (z["wide"] + z["narrow"]), rel=1e-9)


def test_rho_of_reads_sam_specs_and_its_default():
    assert rho_of("sam(rho=0.5, lr=0.05)") == 0.5
    assert rho_of("sam(lr=0.05)") == 0.05
    assert rho_of("sgd(lr=0.05)") == 0.0


def test_statistics():
    # a clear rise is supported, a rise that falls back at the last level gets the caveat
    base, best, fallen = _share(100, 200), _share(180, 200), _share(60, 200)
    assert one_sided_p(best, base) < 1e-10 and one_sided_p(base, best) > 0.99
    low, high = newcombe(best, base)
    assert low < 0.4 < high and low > 0
    assert rise_finding("noise", "sigma", [0.0, 1.0], [base, best], [0, 0]).verdict == "supported"
    caveat = rise_finding("noise", "sigma", [0.0, 1.0, 2.0], [base, best, fallen], [0, 0, 120])
    assert caveat.verdict == "supported with a caveat" and "120 of 200" in caveat.why
    assert rise_finding("noise", "sigma", [0.0, 1.0], [base, _share(104, 200)], [0, 0]).verdict == "not supported"
    assert rise_finding("noise", "sigma", [0.0, 1.0], [_share(5, 10), _share(8, 10)], [0, 0]).verdict == "inconclusive"
    assert np.isfinite(caveat.value)
