"""The batched engine: batch invariance, reproducibility, events against closed forms, divergence."""

from __future__ import annotations

import json
import math

import pytest
import torch

import landbench
from landbench.errors import SpecError

NUMBERS = ("final_loss", "loss_gap", "sharpness", "hessian_trace", "basin_width")
STEPS = (
    "escape_step",
    "escaped",
    "reach_steps",
    "reach_evals",
    "first_hit_steps",
    "first_hit_evals",
    "diverged",
    "diverged_step",
    "grad_evals",
)


def _assert_same_run(a: dict, b: dict, rel: float) -> None:
    for key in STEPS:
        assert a[key] == b[key], key
    for key in NUMBERS:
        if a[key] is None or b[key] is None:
            assert a[key] == b[key], key
        else:
            assert a[key] == pytest.approx(b[key], rel=rel, abs=1e-300), key
    assert a["curve"]["steps"] == b["curve"]["steps"]
    assert a["curve"]["loss"] == pytest.approx(b["curve"]["loss"], rel=rel, abs=1e-300)


@pytest.mark.parametrize("optimizer", ["sgd(lr={lr})", "sgd(lr={lr}, momentum=0.9, nesterov=True)", "adam(lr={lr})"])
@pytest.mark.parametrize(
    ("problem", "noise", "lr"),
    [
        ("saddle(dim=30, index=3, rotate=True)", 0.0, 0.02),
        ("rosenbrock(dim=4)", 0.0, 0.0005),
        ("saddle(dim=30, index=2)", 0.01, 0.02),
    ],
)
def test_runs_in_one_tensor_equal_separate_runs(optimizer: str, problem: str, noise: float, lr: float) -> None:
    optimizer = optimizer.format(lr=lr)
    seeds = [0, 1, 2, 5]
    batched = landbench.run(problem, optimizer, seeds=seeds, steps=150, noise=noise, dtype="float64")
    for seed, together in zip(seeds, batched):
        (alone,) = landbench.run(problem, optimizer, seeds=[seed], steps=150, noise=noise, dtype="float64")
        assert together["seed"] == alone["seed"] == seed
        # Identical up to the order of floating-point sums in a batched matrix product.
        _assert_same_run(together, alone, rel=1e-9)


def test_same_specs_and_seeds_give_the_same_numbers() -> None:
    first = landbench.run("saddle(dim=20, index=2, rotate=True)", "adam(lr=0.01)", seeds=3, steps=100, noise=0.05)
    second = landbench.run("saddle(dim=20, index=2, rotate=True)", "adam(lr=0.01)", seeds=3, steps=100, noise=0.05)
    for a, b in zip(first, second):
        _assert_same_run(a, b, rel=0)
        assert a["key"] == b["key"]
    other = landbench.run("saddle(dim=20, index=2, rotate=True)", "adam(lr=0.01)", seeds=[7], steps=100, noise=0.05)
    assert other[0]["final_loss"] != first[0]["final_loss"]


def test_noise_is_the_documented_gradient_noise() -> None:
    """On f = 0 (a quadratic started at its minimum with lr tiny) SGD moves by -lr * noise * z:
    after one step each coordinate is N(0, (lr sigma)^2)."""
    landscape = landbench.make("quadratic(dim=4000, condition=1.0)", dtype="float64")
    landscape.sample_start = lambda seeds: torch.zeros(len(seeds), 4000, dtype=torch.float64)  # type: ignore[method-assign]
    (record,) = landbench.run(landscape, "sgd(lr=0.1)", seeds=1, steps=1, noise=2.0, curvature=False)
    # f(x_1) = 1/2 |x_1|^2 with x_1 ~ N(0, 0.04 I): E f = 0.5 * 4000 * 0.04 = 80, sd = 0.04 * sqrt(2 * 4000) / 2.
    assert record["final_loss"] == pytest.approx(80.0, abs=5 * 0.04 * math.sqrt(8000) / 2)


def test_target_times_and_curve_match_the_closed_form_of_gd_on_a_quadratic() -> None:
    """On f = x^2/2 (quadratic, dim 1) GD gives x_t = (1 - lr)^t x_0, so f(x_t) = f(x_0) (1 - lr)^(2t)
    and target e is first reached at t = ceil(log(e / f0) / (2 log(1 - lr))); the loss only falls, so
    the target is held from the first hit on."""
    lr = 0.1
    landscape = landbench.make("quadratic(dim=1)", dtype="float64")
    records = landbench.run(landscape, f"sgd(lr={lr})", seeds=3, steps=200, curvature=False)
    starts = landscape.sample_start(range(3))[:, 0].tolist()
    for record, x0 in zip(records, starts):
        f0 = 0.5 * x0 * x0
        expected_hits = [
            max(0, math.ceil(math.log(e / f0) / (2 * math.log(1 - lr)) - 1e-9)) if e < f0 else 0
            for e in record["targets"]
        ]
        expected_hits = [t if t <= 200 else None for t in expected_hits]
        assert record["reach_steps"] == record["first_hit_steps"] == expected_hits
        assert record["reach_evals"] == expected_hits  # one evaluation a step
        for step, loss in zip(record["curve"]["steps"], record["curve"]["loss"]):
            assert loss == pytest.approx(f0 * (1 - lr) ** (2 * step), rel=1e-12)
        assert record["grad_evals"] == 200 and record["diverged"] is False
    assert records[0]["curve"]["steps"][0] == 0 and records[0]["curve"]["steps"][-1] == 200


def test_metrics_at_a_converged_quadratic_minimum_match_its_hessian() -> None:
    d, condition, tau = 6, 20.0, 0.01
    (record,) = landbench.run(
        f"quadratic(dim={d}, condition={condition})",
        "sgd(lr=0.09)",
        seeds=1,
        steps=3000,
        dtype="float64",
        tau=tau,
        basin_probes=d,
    )
    eigenvalues = [condition ** (i / (d - 1)) for i in range(d)]
    assert record["loss_gap"] < 1e-20
    assert record["sharpness"] == pytest.approx(condition, rel=1e-9)
    assert record["hessian_trace"] == pytest.approx(sum(eigenvalues), rel=1e-12)  # Rademacher is exact on a diagonal H
    assert record["basin_width"] == pytest.approx(math.sqrt(2 * tau * d / sum(eigenvalues)), rel=1e-6)


def test_metrics_at_a_converged_saddle_minimum_match_the_documented_spectrum() -> None:
    """Minimum of the saddle: eigenvalues 2 gamma (radial), 0 (index - 1), mu (dim - index)."""
    d, k, gamma, mu = 12, 1, 1.5, 4.0
    spec = f"saddle(dim={d}, index={k}, gamma={gamma}, mu={mu}, init='unstable', init_radius=0.01)"
    tau = 1e-6  # small enough that the quartic term is negligible: the quadratic formula holds
    (record,) = landbench.run(spec, "sgd(lr=0.1)", seeds=1, steps=800, dtype="float64", tau=tau, basin_probes=d)
    trace = 2 * gamma + (d - k) * mu
    assert record["sharpness"] == pytest.approx(max(2 * gamma, mu), rel=1e-9)
    assert record["hessian_trace"] == pytest.approx(trace, rel=1e-9)
    assert record["basin_width"] == pytest.approx(math.sqrt(2 * tau * d / trace), rel=1e-3)


def test_a_diverging_run_is_recorded_and_does_not_poison_the_others() -> None:
    # Momentum 0.9 at lr 0.05 overshoots the quartic wells of Styblinski-Tang from some starts only.
    problem, optimizer = "styblinski_tang(dim=2)", "sgd(lr=0.05, momentum=0.9)"
    records = landbench.run(problem, optimizer, seeds=8, steps=200, dtype="float64")
    json.dumps(records, allow_nan=False)  # strict JSON: no NaN or inf anywhere
    diverged = [r for r in records if r["diverged"]]
    healthy = [r for r in records if not r["diverged"]]
    assert diverged and healthy
    for r in diverged:
        assert isinstance(r["diverged_step"], int) and r["grad_evals"] == 200  # charged the whole budget
        assert r["final_loss"] is None and r["loss_gap"] is None  # a diverged run has no final value
        assert r["escaped"] is None and r["reach_steps"] == [None] * len(r["targets"])
        assert r["sharpness"] is None and r["basin_width"] is None
        after = [loss for step, loss in zip(r["curve"]["steps"], r["curve"]["loss"]) if step >= r["diverged_step"]]
        assert after and all(loss is None for loss in after)
    for r in healthy:
        (alone,) = landbench.run(problem, optimizer, seeds=[r["seed"]], steps=200, dtype="float64")
        _assert_same_run(r, alone, rel=1e-12)


def test_a_batch_that_diverges_entirely_still_returns_records() -> None:
    records = landbench.run("rosenbrock(dim=3)", "sgd(lr=1.0)", seeds=2, steps=50)
    assert all(r["diverged"] for r in records)
    assert all(r["loss_gap"] is None and r["reach_evals"] == [None] * len(r["targets"]) for r in records)
    json.dumps(records, allow_nan=False)


def test_record_carries_the_documented_fields() -> None:
    (record,) = landbench.run("saddle(dim=5)", "adam(lr=0.01)", seeds=1, steps=5, curvature=False)
    expected = {
        "problem",
        "optimizer",
        "family",
        "dim",
        "instance",
        "seed",
        "steps",
        "noise",
        "dtype",
        "device",
        "final_loss",
        "f_star",
        "loss_gap",
        "escape_step",
        "escaped",
        "targets",
        "reach_steps",
        "reach_evals",
        "first_hit_steps",
        "first_hit_evals",
        "batch_mode",
        "independence",
        "sharpness",
        "hessian_trace",
        "basin_width",
        "tau",
        "diverged",
        "diverged_step",
        "grad_evals",
        "wall_s",
        "batch_runs",
        "threads",
        "curve",
        "metrics_s",
        "landbench_version",
        "torch_version",
        "schema",
        "settings",
        "key",
    }
    assert set(record) == expected
    assert record["problem"] == "saddle(dim=5)" and record["optimizer"] == "adam(lr=0.01)"
    assert record["landbench_version"] == landbench.__version__ and record["torch_version"] == torch.__version__


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": 0}, "seeds must be a count >= 1"),
        ({"seeds": [1, 1]}, "twice"),
        ({"seeds": [-1]}, "non-negative"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"noise": -0.1}, "noise must be a finite number >= 0"),
        ({"tua": 0.1}, "unknown setting 'tua' \\(did you mean 'tau'\\?\\); valid settings: targets, dtype"),
        ({"targets": [0.1, -1]}, "targets must be a non-empty list of positive finite numbers"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_run_arguments_get_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        landbench.run("saddle(dim=4)", "sgd(lr=0.1)", **{"steps": 3, **kwargs})


def test_a_landscape_object_can_be_run_and_keeps_its_instance() -> None:
    landscape = landbench.make("saddle(dim=8, index=2, rotate=True)", seed=5, dtype="float64")
    (record,) = landbench.run(landscape, "sgd(lr=0.1)", seeds=1, steps=3, curvature=False)
    assert record["instance"] == 5 and record["dtype"] == "float64"
    with pytest.raises(SpecError, match="conflicts"):
        landbench.run(landscape, "sgd(lr=0.1)", seeds=1, steps=3, instance=2)


def test_noise_stays_batch_invariant_across_noise_blocks() -> None:
    """Noise is drawn in blocks of steps (131 steps at d = 125); cross several block boundaries."""
    seeds = [0, 3, 4]
    batched = landbench.run("saddle(dim=125)", "sgd(lr=0.05)", seeds=seeds, steps=400, noise=0.03, dtype="float64")
    for seed, together in zip(seeds, batched):
        (alone,) = landbench.run(
            "saddle(dim=125)", "sgd(lr=0.05)", seeds=[seed], steps=400, noise=0.03, dtype="float64"
        )
        _assert_same_run(together, alone, rel=1e-12)


def test_basin_width_of_a_float32_run_is_computed_at_float64_precision() -> None:
    """At the Styblinski-Tang minimum in dimension 1e5, |f| = 3.9e6: float32 cannot resolve a rise
    of tau = 0.1, so the metric must not be computed in float32. The Hessian is diag(34.58), so the
    width is sqrt(2 tau / 34.58) = 0.07605 (exactly, up to the quartic term)."""
    landscape = landbench.make("styblinski_tang(dim=100000)")
    landscape.sample_start = lambda seeds: landscape.minima[0].point.repeat(len(seeds), 1)  # type: ignore[method-assign]
    (record,) = landbench.run(landscape, "sgd(lr=1e-9)", seeds=1, steps=1, lanczos_iterations=4, hutchinson_probes=1)
    curvature = 6 * 2.903534027771178**2 - 16
    assert record["basin_width"] == pytest.approx(math.sqrt(2 * 0.1 / curvature), rel=1e-3)
    assert record["sharpness"] == pytest.approx(curvature, rel=1e-4)


def test_a_batch_runs_under_landbenchs_numerics_whatever_the_process_set() -> None:
    """A plug-in that flushes subnormals at import (``torch.set_flush_denormal(True)``) or allows
    TF32 products changed other optimizers' records in the same sweep: on ``saddle_chain(dim=4)``,
    run 2 of SGD is stranded at the third saddle when float32 underflow flushes to zero, and passes
    it at step 1445 when it is gradual (IEEE). Every batch runs with gradual underflow and full
    float32 products, and the process gets its own settings back."""
    from landbench.numerics import denormals_flushed

    def chain() -> list[tuple]:
        records = landbench.run("saddle_chain(dim=4)", "sgd(lr=0.1)", seeds=3, steps=1500, curvature=False)
        return [(r["final_loss"], r["chain_escapes"], r["chain_underflow"]) for r in records]

    def plotted() -> list[float]:
        from landbench.report.trajectories import record

        drawn = record(landbench.make("saddle_chain(dim=4)"), "sgd(lr=0.1)", [0, 1, 2], 1500)
        return [float(loss) for loss in drawn.losses[-1]]

    ieee = chain()
    assert ieee[2][1] == [93, 408, 1445, None]
    assert plotted() == [r[0] for r in ieee]
    try:
        torch.set_flush_denormal(True)
        torch.set_float32_matmul_precision("medium")
        assert denormals_flushed()
        assert chain() == ieee and plotted() == [r[0] for r in ieee]  # the records and the plot alike
        assert denormals_flushed() and torch.get_float32_matmul_precision() == "medium"  # given back
    finally:
        torch.set_flush_denormal(False)
        torch.set_float32_matmul_precision("highest")


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch before 2.9")
def test_a_batch_pins_the_per_backend_matmul_precision_and_gives_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.9's per-backend API (``fp32_precision``) alone, which the legacy getter refuses to read:
    inside a batch the CUDA matmuls are IEEE, afterwards the user's TF32 is back and the CPU backend,
    which the legacy setter would have changed too, untouched."""
    import sys
    import types

    seen: list[tuple[str, str]] = []

    class Spy(torch.optim.SGD):
        @torch.no_grad()
        def step(self, closure=None):  # type: ignore[override]
            seen.append((torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision))
            return super().step()

    module = types.ModuleType("precision_spy")
    module.Spy = Spy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "precision_spy", module)
    matmul, cpu = torch.backends.cuda.matmul, torch.backends.mkldnn.matmul
    cpu_before = cpu.fp32_precision
    try:
        matmul.fp32_precision = "tf32"
        landbench.run("quadratic(dim=3)", "precision_spy:Spy(lr=0.1)", seeds=2, steps=3, curvature=False)
        assert seen and {cuda for cuda, _ in seen} == {"ieee"}  # the probe's steps and the batch's
        assert (matmul.fp32_precision, cpu.fp32_precision) == ("tf32", cpu_before)
    finally:
        matmul.fp32_precision = "none"


def test_an_optimizer_that_changes_its_parameters_dtype_fails_the_batch_naming_the_step() -> None:
    """A run recorded as float32 must have run in float32: a switch to float16 at step 100 (past the
    probe) is an error naming both dtypes and the step, not half-precision numbers labelled float32."""
    from landbench.errors import LandbenchError

    with pytest.raises(LandbenchError, match=r"from torch.float32 to torch.float16 before step 100: a run keeps"):
        landbench.run("quadratic(dim=4)", "adversarial:HalvingSGD(lr=0.05, at=100)", seeds=2, steps=200)
