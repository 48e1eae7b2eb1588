"""Gradient-noise models (landbench.noise, landbench.rng.RunNoise): each sampler's law against theory
(scipy's distributions, closed-form variances, tail indices), reproducibility per run whatever the
batch, and the suite/CLI/API plumbing (records carry the model; the default changes nothing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import stats

import landbench
from landbench.cli import main
from landbench.engine import run_batch
from landbench.errors import SpecError
from landbench.noise import hessian_noise, parse_noise_model
from landbench.optimizers import resolve
from landbench.rng import RunNoise, frozen_keys, frozen_normal, stable_symmetric
from landbench.settings import Settings
from landbench.stepping import Evaluator
from landbench.suite import parse_suite

SAMPLES = 40_000  # per law: KS distance resolution ~ 1.36 / sqrt(n) = 0.007


def _draws(model: str, n: int = SAMPLES, seed: int = 0, dim: int = 64) -> np.ndarray:
    """``n`` draws of one run's stream (several evaluations of ``dim`` coordinates), float64."""
    stream = RunNoise(3, [seed], dim, torch.float64, "cpu", model)
    out = [stream.next()[0].clone() for _ in range(math.ceil(n / dim))]
    return torch.cat(out)[:n].numpy()


def _hill(x: np.ndarray, k: int) -> float:
    """Hill's estimator of the tail index from the k largest |x|."""
    tail = np.sort(np.abs(x))[::-1][: k + 1]
    return 1.0 / float(np.mean(np.log(tail[:k] / tail[k])))


# --- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("gaussian", "gaussian"),
        ("student_t(nu=3)", "student_t(nu=3.0)"),
        (" student_t( nu = 2.5 ) ", "student_t(nu=2.5)"),
        ("alpha_stable(alpha=2)", "alpha_stable(alpha=2.0)"),
        ("frozen", "frozen(cell=0.001)"),
        ("frozen(cell=0.01)", "frozen(cell=0.01)"),
        ("hessian(scale=2)", "hessian(scale=2.0)"),
    ],
)
def test_specs_have_one_canonical_form(spec: str, canonical: str) -> None:
    assert parse_noise_model(spec).canonical == canonical


@pytest.mark.parametrize(
    "spec",
    [
        "cauchy",
        "student_t",
        "student_t(nu=0)",
        "student_t(nu=-1)",
        "student_t(alpha=3)",
        "alpha_stable(alpha=0)",
        "alpha_stable(alpha=2.5)",
        "alpha_stable(alpha=nan)",
        "gaussian(1)",
        "student_t(3)",  # every argument as key=value, as in every landbench spec
        "student_t(nu=3, x=1)",
        "student_t(nu='3')",
        "alpha_stable(alpha=inf)",
        "frozen(cell=0)",
        "hessian",
        "hessian(scale=0)",
        3,
        None,
    ],
)
def test_bad_models_name_the_valid_ones(spec: object) -> None:
    with pytest.raises(SpecError, match=r"^noise_model must be one of gaussian, student_t\(nu=\.\.\.\) with nu > 0"):
        parse_noise_model(spec)


# --- the laws ------------------------------------------------------------------------------------


@pytest.mark.parametrize("nu", [3.0, 5.0])
def test_student_t_has_unit_variance_and_the_t_law(nu: float) -> None:
    x = _draws(f"student_t(nu={nu})")
    scale = math.sqrt((nu - 2) / nu)  # noise stays the standard deviation
    assert stats.kstest(x, stats.t(df=nu, scale=scale).cdf).pvalue > 1e-3
    if nu == 5.0:  # the variance's sampling error is finite (4th moment exists) only for nu > 4
        assert abs(np.var(x) - 1.0) < 0.05


def test_student_t_below_two_is_the_unscaled_t_law_with_tail_index_nu() -> None:
    x = _draws("student_t(nu=1.5)")
    assert stats.kstest(x, stats.t(df=1.5).cdf).pvalue > 1e-3
    assert abs(_hill(x, 400) - 1.5) < 0.25


def test_student_t_tail_index_is_nu() -> None:
    assert abs(_hill(_draws("student_t(nu=3)", 80_000), 400) - 3.0) < 0.5


@pytest.mark.parametrize("alpha", [0.8, 1.0, 1.5, 2.0])
def test_alpha_stable_matches_scipy(alpha: float) -> None:
    x = _draws(f"alpha_stable(alpha={alpha})", 20_000)
    law = stats.levy_stable(alpha, 0.0) if alpha not in (1.0, 2.0) else None
    if alpha == 1.0:
        law = stats.cauchy()
    if alpha == 2.0:  # a normal law of variance 2 scale^2
        law = stats.norm(scale=math.sqrt(2.0))
        assert abs(np.var(x) - 2.0) < 0.1
    assert stats.kstest(x, law.cdf).pvalue > 1e-3


def test_alpha_stable_tail_index_is_alpha() -> None:
    x = stable_symmetric(1.2, (100_000,), torch.Generator().manual_seed(5))
    assert abs(_hill(x.numpy(), 500) - 1.2) < 0.2


def test_noise_is_the_sd_of_student_t_and_the_scale_of_alpha_stable() -> None:
    """What the engine adds to a zero gradient: ``noise * draw``, with the law's meaning of noise."""
    landscape = landbench.make("quadratic(dim=4000)", dtype="float64")
    at_minimum = torch.zeros(5, 4000, dtype=torch.float64)
    added = {}
    for model in ("student_t(nu=6)", "alpha_stable(alpha=2)", "alpha_stable(alpha=1)"):
        evaluator = Evaluator(landscape, 2.0, [RunNoise(0, range(5), 4000, torch.float64, "cpu", model)])
        added[model] = evaluator.gradient(at_minimum)[1].flatten().numpy()
    assert abs(np.std(added["student_t(nu=6)"]) - 2.0) < 0.06  # the standard deviation
    assert abs(np.var(added["alpha_stable(alpha=2)"]) - 2 * 2.0**2) < 0.25  # variance 2 scale^2
    assert abs(np.median(np.abs(added["alpha_stable(alpha=1)"])) - 2.0) < 0.06  # Cauchy(scale): median |x| = scale


# --- frozen ---------------------------------------------------------------------------------------


def test_frozen_noise_is_a_fixed_function_of_the_point() -> None:
    keys = frozen_keys(0, [0, 1], "cpu")
    x = torch.randn(2, 500, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    first = frozen_normal(x, keys, 1e-3)
    assert torch.equal(first, frozen_normal(x.clone(), keys, 1e-3))  # the same x, the same noise
    moved = frozen_normal(x + 0.5, keys, 1e-3)  # another cell: independent noise
    assert abs(float(np.corrcoef(first.flatten(), moved.flatten())[0, 1])) < 0.1
    assert not torch.equal(first[0], first[1])  # another run, another field
    stream = RunNoise(0, [0, 1], 500, torch.float64, "cpu", "frozen")
    assert torch.equal(stream.next(x), first) and torch.equal(stream.next(x), first)  # no stream is consumed


def test_frozen_noise_is_standard_normal_over_cells_and_coordinates() -> None:
    keys = frozen_keys(7, [0], "cpu")
    cells = torch.arange(5000, dtype=torch.float64).unsqueeze(1) * 0.01  # one coordinate, 5000 cells
    along = frozen_normal(cells, keys.repeat(5000, 1), 1e-3).flatten().numpy()
    across = frozen_normal(torch.randn(1, SAMPLES, generator=torch.Generator().manual_seed(2)), keys, 1e-3)
    assert stats.kstest(along, stats.norm.cdf).pvalue > 1e-3
    assert stats.kstest(across.flatten().numpy(), stats.norm.cdf).pvalue > 1e-3
    assert abs(float(np.corrcoef(along[:-1], along[1:])[0, 1])) < 0.05  # neighbouring cells independent


# --- per run, whatever the batch -----------------------------------------------------------------


@pytest.mark.parametrize("model", ["student_t(nu=3)", "alpha_stable(alpha=1.5)", "frozen"])
def test_a_runs_noise_does_not_depend_on_its_batch(model: str) -> None:
    seeds = [4, 0, 9, 2, 7]
    batch = RunNoise(1, seeds, 6, torch.float32, "cpu", model)
    alone = [RunNoise(1, [s], 6, torch.float32, "cpu", model) for s in seeds]
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    for step in range(300):  # past the end of a block of draws
        together = batch.next(x + step)
        for i, stream in enumerate(alone):
            assert torch.equal(together[i], stream.next(x[i : i + 1] + step)[0])


@pytest.mark.parametrize("model", ["student_t(nu=3)", "alpha_stable(alpha=1.5)", "frozen(cell=0.01)"])
def test_runs_are_the_same_alone_and_in_a_batch_of_five(model: str) -> None:
    options = {"steps": 40, "noise": 0.05, "noise_model": model, "curvature": False}
    batch = landbench.run("saddle(dim=6, index=2)", "sgd(lr=0.05)", seeds=5, **options)
    for record in batch:
        alone = landbench.run("saddle(dim=6, index=2)", "sgd(lr=0.05)", seeds=[record["seed"]], **options)[0]
        assert alone["final_loss"] == record["final_loss"] and alone["curve"] == record["curve"]
        assert alone["key"] == record["key"] and record["noise_model"] == parse_noise_model(model).canonical


def test_models_differ_and_gaussian_is_todays_noise() -> None:
    options = {"steps": 30, "noise": 0.1, "curvature": False, "seeds": 2}
    plain = landbench.run("saddle(dim=4, index=1)", "sgd(lr=0.1)", **options)
    same = landbench.run("saddle(dim=4, index=1)", "sgd(lr=0.1)", noise_model="gaussian", **options)
    other = landbench.run("saddle(dim=4, index=1)", "sgd(lr=0.1)", noise_model="student_t(nu=30)", **options)
    assert [r["key"] for r in plain] == [r["key"] for r in same]
    assert all("noise_model" not in r and "noise_model" not in r["settings"] for r in plain)
    assert plain[0]["final_loss"] == same[0]["final_loss"] != other[0]["final_loss"]
    assert {r["key"] for r in plain}.isdisjoint(r["key"] for r in other)
    assert all(r["settings"]["noise_model"] == "student_t(nu=30.0)" for r in other)
    assert Settings().as_dict() == Settings(noise_model="gaussian").as_dict()


# --- suites and the CLI --------------------------------------------------------------------------

SUITE = """
name = "noise_models"
seeds = 2
steps = 20
noise = 0.1
noise_model = ["gaussian", "student_t(nu=3)"]
optimizers = ["sgd(lr=0.1)"]
[metrics]
curvature = false
[[problems]]
spec = "saddle(index=1)"
dims = [3]
[[problems]]
spec = "quadratic"
dims = [2]
noise_model = "alpha_stable(alpha=1.5)"
"""


def test_a_suites_noise_models_are_scenarios() -> None:
    scenarios = parse_suite(SUITE).scenarios()
    assert [sc.noise_model for sc in scenarios] == ["gaussian", "student_t(nu=3.0)", "alpha_stable(alpha=1.5)"]
    assert [sc.noise_label for sc in scenarios] == ["0.1", "0.1 student_t(nu=3.0)", "0.1 alpha_stable(alpha=1.5)"]
    assert len({sc.key(0, "cpu") for sc in scenarios}) == 3
    plain = parse_suite(SUITE.replace('noise_model = ["gaussian", "student_t(nu=3)"]\n', "")).scenarios()[0]
    assert plain.key(0, "cpu") == scenarios[0].key(0, "cpu")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('noise_model = "levy"', "s.toml:2: noise_model: noise_model must be one of gaussian"),
        ("noise_model = []", "expected a noise model or a non-empty list"),
        ('[metrics]\nnoise_model = "frozen"', "not in [metrics]"),
    ],
)
def test_bad_noise_models_in_a_suite_are_one_line(tmp_path: Path, line: str, message: str) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(f'optimizers = ["sgd"]\n{line}\n[[problems]]\nspec = "quadratic"\ndims = [2]\n')
    result = CliRunner().invoke(main, ["run", str(suite), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert message in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("model", ["student_t(nu=0)", "alpha_stable(alpha=2.5)", "laplace"])
def test_a_bad_noise_model_flag_is_one_line_before_anything_runs(tmp_path: Path, model: str) -> None:
    args = ["run", "--problem", "quadratic(dim=2)", "--optimizer", "sgd", "--noise-model", model]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: noise_model must be one of gaussian")
    assert not (tmp_path / "out").exists()


def test_a_suite_with_noise_models_runs_through_the_cli(tmp_path: Path) -> None:
    suite = tmp_path / "nm.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(suite), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "0.1 student_t(nu=3.0)" in result.stdout and "0.1 alpha_stable(alpha=1.5)" in result.stdout
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    models = sorted(r.get("noise_model", "gaussian") for r in records)
    assert models == ["alpha_stable(alpha=1.5)"] * 2 + ["gaussian"] * 2 + ["student_t(nu=3.0)"] * 2
    again = CliRunner().invoke(main, ["run", str(suite), "--out", str(out), "--no-progress"])
    assert "0 runs ran, 6 were already" in again.output  # the keys of a resumed sweep
    flag = CliRunner().invoke(
        main, ["run", str(suite), "--out", str(out), "--no-progress", "--noise-model", "frozen(cell=0.01)"]
    )
    assert flag.exit_code == 0, flag.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sum(r.get("noise_model") == "frozen(cell=0.01)" for r in records) == 4


@pytest.mark.parametrize("model", ["student_t(nu=3)", "frozen(cell=0.01)", "hessian(scale=1)"])
def test_a_learning_rate_grid_in_one_batch_gets_each_runs_own_noise(model: str) -> None:
    landscape = landbench.make("saddle(dim=5, index=2)")
    settings = Settings(noise_model=parse_noise_model(model).canonical, curvature=False)
    common = {"steps": 30, "noise": 0.05, "settings": settings, "mode": "batched", "verify": False}
    grid = run_batch(landscape, resolve("sgd(lr=0.1)"), [0, 1, 2], lrs=[0.05, 0.1], **common)
    for block, lr in enumerate([0.05, 0.1]):
        alone = run_batch(landscape, resolve(f"sgd(lr={lr})"), [0, 1, 2], **common)
        assert torch.equal(grid.final_x[3 * block : 3 * block + 3], alone.final_x)


# --- hessian --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["saddle(dim=6, index=2)", "gaussian_field(dim=8)", "quadratic(dim=5)"])
def test_hessian_noise_is_the_square_root_of_the_absolute_hessian(spec: str) -> None:
    """Against a dense eigendecomposition of the autograd Hessian (exact for dim <= 32)."""
    landscape = landbench.make(spec, dtype="float64")
    x = landscape.sample_start([0, 1, 2])
    z = torch.randn(3, landscape.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = hessian_noise(landscape, x, z, 2.0)
    for b in range(3):
        dense = torch.autograd.functional.hessian(lambda v: landscape.loss(v[None])[0], x[b])
        values, vectors = torch.linalg.eigh((dense + dense.T) / 2)
        want = vectors @ ((values.abs() / 2.0).sqrt() * (vectors.T @ z[b]))
        assert torch.allclose(got[b], want, rtol=1e-9, atol=1e-12)


def test_hessian_noise_has_covariance_noise_squared_h_over_scale() -> None:
    landscape = landbench.make("saddle(dim=4, index=1)", dtype="float64")
    x = landscape.sample_start([3]).expand(4000, -1)
    stream = RunNoise(0, range(4000), 4, torch.float64, "cpu", "hessian(scale=0.5)")
    added = Evaluator(landscape, 0.3, [stream]).gradient(x)[1] - landscape.loss_and_grad(x)[1]
    dense = torch.autograd.functional.hessian(lambda v: landscape.loss(v[None])[0], x[0])
    values, vectors = torch.linalg.eigh((dense + dense.T) / 2)
    expected = 0.3**2 * (vectors * values.abs() / 0.5) @ vectors.T
    measured = added.T @ added / len(added)
    assert torch.allclose(measured, expected, atol=0.08 * float(expected.diagonal().max()))


def test_hessian_noise_runs_are_the_same_alone_and_in_a_batch() -> None:
    options = {"steps": 25, "noise": 0.05, "noise_model": "hessian(scale=1)", "curvature": False}
    batch = landbench.run("saddle(dim=6, index=2)", "sgd(lr=0.05)", seeds=5, **options)
    for record in batch:
        alone = landbench.run("saddle(dim=6, index=2)", "sgd(lr=0.05)", seeds=[record["seed"]], **options)[0]
        assert alone["curve"] == record["curve"] and record["noise_model"] == "hessian(scale=1.0)"


def test_every_view_keeps_noise_models_apart() -> None:
    """Runs of the same problem, noise level and budget under two noise laws are two scenarios in the
    ranking, the report's data, landbench.testing's description and status's failure groups."""
    from landbench import testing
    from landbench.outcomes import noise_model_of
    from landbench.ranking.scenarios import by_scenario
    from landbench.status import failures

    gaussian = landbench.run("saddle(dim=4)", "sgd(lr=0.1)", seeds=2, steps=40, noise=0.01)
    heavy = landbench.run("saddle(dim=4)", "sgd(lr=0.1)", seeds=2, steps=40, noise=0.01, noise_model="student_t(nu=3)")
    assert [noise_model_of(r) for r in gaussian + heavy] == ["gaussian"] * 2 + ["student_t(nu=3.0)"] * 2
    scenarios = list(by_scenario(gaussian + heavy))
    assert [s.noise_model for s in scenarios] == ["gaussian", "student_t(nu=3.0)"]
    assert scenarios[1].label.endswith("noise=0.01 student_t(nu=3.0) steps=40")
    assert "student_t(nu=3.0)" in testing._scenario(gaussian + heavy)
    broken = [dict(r, failed="RuntimeError: x") for r in gaussian + heavy]
    assert sorted(f["noise_model"] for f in failures(broken)) == ["gaussian", "student_t(nu=3.0)"]


def test_without_noise_every_law_is_the_gaussian_scenario() -> None:
    """noise = 0 draws nothing: a suite that crosses it with several laws runs it once, and the API
    gives the gaussian run's key."""
    from landbench.suite import parse_suite

    plain = landbench.run("saddle(dim=4)", "sgd(lr=0.1)", seeds=2, steps=20)
    heavy = landbench.run("saddle(dim=4)", "sgd(lr=0.1)", seeds=2, steps=20, noise_model="student_t(nu=3)")
    assert [r["key"] for r in heavy] == [r["key"] for r in plain] and "noise_model" not in heavy[0]
    suite = parse_suite(
        'name = "x"\nseeds = 2\nsteps = 10\noptimizers = ["sgd(lr=0.1)"]\nnoise = [0.0, 0.1]\n'
        'noise_model = ["gaussian", "student_t(nu=3)", "frozen"]\n[[problems]]\nspec = "saddle"\ndims = [4]\n'
    )
    assert sorted((s.noise, s.noise_model) for s in suite.scenarios()) == [
        (0.0, "gaussian"),
        (0.1, "frozen(cell=0.001)"),
        (0.1, "gaussian"),
        (0.1, "student_t(nu=3.0)"),
    ]


def test_report_panels_and_rank_json_keep_laws_apart() -> None:
    from landbench.ranking import rank
    from landbench.ranking.render import as_dict
    from landbench.ranking.scenarios import by_scenario
    from landbench.report.data import sweep

    records = []
    for noise in (0.01, 0.1):
        for law in ("gaussian", "student_t(nu=3)"):
            records += landbench.run("saddle(dim=4)", "sgd(lr=0.1)", seeds=2, steps=20, noise=noise, noise_model=law)
    panels = sweep(by_scenario(records), "noise")
    assert len(panels) == 2 and any("student_t(nu=3.0)" in p.title for p in panels)
    assert all(len(runs) == 2 for p in panels for series in p.series.values() for runs in series.values())
    scenarios = as_dict(rank(records))["scenarios"]
    assert sorted((s["noise"], s["noise_model"]) for s in scenarios) == [
        (0.01, "gaussian"),
        (0.01, "student_t(nu=3.0)"),
        (0.1, "gaussian"),
        (0.1, "student_t(nu=3.0)"),
    ]


@pytest.mark.parametrize("model", ["student_t(nu=3)", "alpha_stable(alpha=1.5)", "frozen", "hessian(scale=1)"])
def test_third_party_and_adversarial_optimizers_under_every_law(model: str) -> None:
    """What users bring, under each law: pytorch-optimizer's Lion gives a run the same numbers alone
    and in a batch of four; an optimizer that writes NaN into some runs at step 20 gets them recorded
    as diverged (the others finish), never a crash."""
    pytest.importorskip("pytorch_optimizer")
    spec = "pytorch_optimizer:Lion(lr=0.001)"
    batch = landbench.run("saddle(dim=6, index=2)", spec, seeds=4, steps=40, noise=0.01, noise_model=model)
    alone = landbench.run("saddle(dim=6, index=2)", spec, seeds=[2], steps=40, noise=0.01, noise_model=model)
    assert alone[0]["key"] == batch[2]["key"] and alone[0]["final_loss"] == batch[2]["final_loss"]
    nan = landbench.run(
        "saddle(dim=6, index=2)", "adversarial:NaNAtStepSGD(lr=0.1)", seeds=8, steps=40, noise=0.01, noise_model=model
    )
    diverged = [r["diverged"] for r in nan]
    assert any(diverged) and not all(diverged)
    assert all(r["diverged_step"] is not None for r in nan if r["diverged"])
