"""Claim 9 (flat_generalize): the invariant measure against autograd, Kendall tau and its bootstrap
against scipy, the stated test's branches on synthetic numbers, and the test tier end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from landbench.claims import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, VERDICTS, run_claim
from landbench.claims import flat_generalize as fg
from landbench.landscapes import make
from landbench.metrics.relative_flatness import curvature_summary, dense_hessians, layer_flatness, relative_flatness


def _deep_linear() -> object:
    return make("deep_linear(dim=3, depth=2, width=4, samples=2)", dtype="float64")


def _autograd_hessian(land: object, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.hessian(lambda v: land.loss(v[None])[0], x)  # type: ignore[attr-defined]


def test_hessian_and_kappa_match_autograd() -> None:
    land = _deep_linear()
    x = land.sample_start([0, 1]) * 3.0  # type: ignore[attr-defined]
    dense = dense_hessians(land, x)
    for b in range(2):
        brute = _autograd_hessian(land, x[b])
        torch.testing.assert_close(dense[b], brute, rtol=1e-10, atol=1e-10)
        kappa = float((x[b] ** 2 * torch.diagonal(brute)).sum())
        assert relative_flatness(x[b : b + 1], torch.diagonal(dense[b])[None]).item() == pytest.approx(kappa, rel=1e-10)
    summary = curvature_summary(land, x)
    assert summary["sharpness"][0] == pytest.approx(float(torch.linalg.eigvalsh(_autograd_hessian(land, x[0]))[-1]))


def test_kappa_is_invariant_under_layer_and_neuron_rescaling_and_sharpness_is_not() -> None:
    land = _deep_linear()
    x = land.sample_start([3]) * 3.0  # type: ignore[attr-defined]
    (a, m), (_, b) = fg.layer_slices(land)
    y = fg.rescale(land, x, np.array([[1 / 7.0, 7.0]]))  # W_1 / 7, 7 W_2
    # neuron-wise: hidden unit k's incoming row times c_k, outgoing column divided by c_k
    c = torch.tensor([0.2, 3.0, 1.5, 9.0], dtype=torch.float64)
    h, d = 4, 3
    w1, w2 = y[0, a:m].reshape(h, d) * c[:, None], y[0, m:b].reshape(d, h) / c[None, :]
    z = torch.cat([w1.reshape(-1), w2.reshape(-1)])[None]
    slices = fg.layer_slices(land)
    before = [_autograd_hessian(land, x[0])]
    for point in (y, z):
        assert land.loss(point).item() == pytest.approx(land.loss(x).item(), rel=1e-12)  # type: ignore[attr-defined]
        assert land.test_loss(point).item() == pytest.approx(land.test_loss(x).item(), rel=1e-12)  # type: ignore[attr-defined]
        brute = _autograd_hessian(land, point[0])
        k0 = float((x[0] ** 2 * torch.diagonal(before[0])).sum())
        assert float((point[0] ** 2 * torch.diagonal(brute)).sum()) == pytest.approx(k0, rel=1e-10)
        ratio = float(torch.linalg.eigvalsh(brute)[-1] / torch.linalg.eigvalsh(before[0])[-1])
        assert ratio > 2  # sharpness changed at will
    # the layer-wise form is invariant under the layer rescaling (not neuron-wise)
    dy, dx = torch.diagonal(dense_hessians(land, y)[0])[None], torch.diagonal(dense_hessians(land, x)[0])[None]
    assert layer_flatness(y, dy, slices).item() == pytest.approx(layer_flatness(x, dx, slices).item(), rel=1e-10)


def test_rescale_factors_multiply_to_one() -> None:
    f = fg.rescale_factors(3, 50, 1.0, seed=4)
    np.testing.assert_allclose(f.prod(axis=1), 1.0, rtol=1e-12)
    assert f[:, 1:].min() >= 0.1 and f[:, 1:].max() <= 10
    np.testing.assert_array_equal(f, fg.rescale_factors(3, 50, 1.0, seed=4))


def test_kendall_tau_and_its_bootstrap_recover_greiners_relation() -> None:
    """For a bivariate normal with correlation rho, Kendall's tau is (2/pi) arcsin(rho) (Greiner's
    relation): the point estimate of 2000 pairs lies within 0.03 of it, and the 95 % bootstrap
    interval of 400 pairs covers it; ties (a pair drawn twice) count as scipy counts them."""
    rho = 0.6
    truth = 2 / math.pi * math.asin(rho)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 2000))
    x, y = z[0], rho * z[0] + math.sqrt(1 - rho**2) * z[1]
    assert fg.kendall_tau(x, y) == pytest.approx(truth, abs=0.03)
    t = fg.bootstrap_tau(x[:400], y[:400], 400, seed=3)
    assert t.low < truth < t.high and t.high - t.low < 0.2
    idx = fg.bootstrap_indices(40, 60, seed=3)
    theirs = [scipy.stats.kendalltau(x[i], y[i]).statistic for i in idx]
    low, high = np.percentile(theirs, [2.5, 97.5])
    t40 = fg.bootstrap_tau(x[:40], y[:40], 60, seed=3)
    assert (t40.low, t40.high) == pytest.approx((low, high))  # the percentile interval of those resamples
    assert math.isnan(fg.kendall_tau([1, 1, 1], [1, 2, 3]))


def _tau(value: float, low: float, high: float, runs: int = 100) -> fg.Tau:
    return fg.Tau(value, low, high, runs)


def test_stated_test_branches() -> None:
    up, zero, down = _tau(0.4, 0.3, 0.5), _tau(0.05, -0.05, 0.15), _tau(-0.4, -0.5, -0.3)
    fams = fg.FAMILIES
    both = lambda a, b: dict(zip(fams, (a, b)))  # noqa: E731
    assert fg.stated_test(both(up, up), both(down, down), 50)[0] == SUPPORTED
    assert fg.stated_test(both(up, zero), both(zero, zero), 50)[0] == CAVEAT
    assert fg.stated_test(both(zero, down), both(up, zero), 50)[0] == CAVEAT  # sharpness does, kappa does not
    assert fg.stated_test(both(zero, down), both(zero, down), 50)[0] == NOT_SUPPORTED
    assert fg.stated_test(both(up, _tau(0.9, 0.8, 1.0, runs=10)), both(up, up), 50)[0] == INCONCLUSIVE
    assert fg.tau_finding("sharpness", "x", down, 50).verdict == NOT_SUPPORTED
    assert fg.tau_finding("sharpness", "x", up, 50).verdict == SUPPORTED
    assert fg.tau_finding("sharpness", "x", _tau(0.5, 0.1, 0.9, runs=5), 50).verdict == INCONCLUSIVE


def test_test_tier_end_to_end_and_resume(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = run_claim("flat_generalize", "test", tmp_path, progress=False)
    assert (tmp_path / "flat_generalize" / "flat_generalize.png").exists()
    assert out.verdict in VERDICTS and all(f.verdict in VERDICTS for f in out.measured.findings)
    invariance = out.measured.findings[-1]
    assert invariance.verdict == SUPPORTED and invariance.value <= fg.INVARIANCE_TOL
    cache = (tmp_path / "flat_generalize" / "cache.jsonl").read_text()

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("recomputed a cached group")

    monkeypatch.setattr(fg, "endpoints", refuse)
    again = run_claim("flat_generalize", "test", tmp_path, progress=False)
    assert (tmp_path / "flat_generalize" / "cache.jsonl").read_text() == cache
    assert [f.as_dict() for f in again.measured.findings] == [f.as_dict() for f in out.measured.findings]
