"""Independence guaranteed, not hoped for: the probe at the spec's own hyperparameters, and the spot
check of every batched batch against one of its runs made alone over the whole budget."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

import landbench
import landbench.engine as engine
from landbench.engine import CoupledBatch, run_batch
from landbench.landscapes import make
from landbench.optimizers import choose_mode, resolve
from landbench.optimizers.batching import ELEMENTWISE, PROBE_STEPS, elementwise, grid_mode
from landbench.optimizers.gd import GradientDescent
from landbench.rng import RunNoise
from landbench.runner import run_suite
from landbench.settings import Settings
from landbench.stepping import STEPPERS, Evaluator, step_loop
from landbench.suite import parse_suite

LATE = "adversarial:LateCouplingSGD(lr=0.01, warmup={warmup})"


def _alone(problem: str, optimizer: str, seeds: list[int], **options) -> list[dict]:
    return [landbench.run(problem, optimizer, seeds=[s], **options)[0] for s in seeds]


def _same_numbers(batch: list[dict], alone: list[dict]) -> None:
    for together, single in zip(batch, alone):
        assert together["seed"] == single["seed"]
        for key in ("final_loss", "reach_evals", "first_hit_evals", "diverged", "escape_step"):
            assert together[key] == single[key], key


def test_the_probe_catches_a_coupling_that_starts_after_thirty_steps() -> None:
    """Normalised SGD over all parameters from step 31 on: invisible to a 5-step probe, caught now."""
    assert PROBE_STEPS >= 50
    assert choose_mode(resolve(LATE.format(warmup=30)), "cpu", torch.float64) == "separate"
    assert choose_mode(resolve(LATE.format(warmup=30)), "cpu", torch.float32) == "separate"


def test_a_coupling_the_probe_cannot_see_is_caught_by_the_spot_check_and_run_separately() -> None:
    """Coupled only after 100 steps, beyond the probe, at a small lr: the probe says batched, the
    batch's run re-made alone differs, so the batch runs again one run at a time, says so, and its
    numbers are those of separate runs. The spec then runs separately from the start."""
    spec = LATE.format(warmup=100)
    assert choose_mode(resolve(spec), "cpu", torch.float64) == "batched"  # the probe cannot see it
    seeds, options = [0, 1, 2, 3], {"steps": 300, "dtype": "float64", "curvature": False}
    with pytest.warns(UserWarning, match="couples the runs it steps together"):
        batch = landbench.run("quadratic(dim=10)", spec, seeds=seeds, **options)
    assert {r["batch_mode"] for r in batch} == {"separate"}
    check = batch[0]["independence"]
    assert check["matched"] is False and check["rerun"] == "separate" and check["seed"] in seeds
    assert check["difference"] > 1e-3 > 1e3 * check["rounding"]  # a real difference, not rounding
    _same_numbers(batch, _alone("quadratic(dim=10)", spec, seeds, **options))
    assert choose_mode(resolve(spec), "cpu", torch.float64) == "separate"  # remembered


def test_a_coupling_is_called_only_after_every_twin_pattern_stayed_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the dynamics are chaotic, one pattern of a few ulps can stay close to the run alone while
    batching's rounding ends far away; so VERIFY_TWINS patterns are tried, and a real coupling is
    called only after all of them measured a rounding far below the difference."""
    patterns: list[int] = []
    execute = engine._execute

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if kwargs.get("jitter"):  # a twin of the run alone
            patterns.append(kwargs["pattern"])
        return execute(*args, **kwargs)

    monkeypatch.setattr(engine, "_execute", counting)
    spec = "adversarial:LateCouplingSGD(lr=0.01, warmup=120)"  # a spec of its own: the mode cache forgets none
    with pytest.warns(UserWarning, match="couples the runs"):
        batch = landbench.run("quadratic(dim=10)", spec, seeds=4, steps=300, dtype="float64", curvature=False)
    assert patterns == list(range(engine.VERIFY_TWINS)) and engine.VERIFY_TWINS >= 3
    assert batch[0]["independence"]["matched"] is False


def test_a_coupling_that_changes_only_the_times_and_not_the_end_is_caught() -> None:
    """Coupled between steps 70 and 200, beyond the probe: every run still ends at the same minimum
    as alone, but escapes and reaches its targets a few steps off. The spot check compares the loss
    curves as well as the final points, so the batch is re-run separately, with the times of runs
    made alone."""
    spec = "adversarial:WindowCouplingSGD(lr=0.1)"
    options = {"steps": 1000, "dtype": "float64", "curvature": False}
    assert choose_mode(resolve(spec), "cpu", torch.float64) == "batched"
    with pytest.warns(UserWarning, match="couples the runs"):
        batch = landbench.run("saddle(dim=4)", spec, seeds=4, **options)
    assert batch[0]["independence"]["matched"] is False and batch[0]["batch_mode"] == "separate"
    _same_numbers(batch, _alone("saddle(dim=4)", spec, [0, 1, 2, 3], **options))


def test_rounding_that_unstable_dynamics_amplify_is_not_taken_for_a_coupling() -> None:
    """Adam in float32 on a rotated saddle: a matrix product blocked for 8 rows or for one rounds
    differently, and the escape amplifies it to 8.5e-5 by step 1000, well above the float32 floor.
    The run alone with its landscape evaluated as its row of 8 copies of itself rounds as the batch
    did and ends where the row did: rounding, not a coupling (the spot check once re-ran such
    batches separately and flagged plain SGD and Adam)."""
    adam = "adversarial:UnlistedAdam(lr=0.01)"
    records = landbench.run("saddle(dim=100, index=5, rotate=True)", adam, seeds=8, steps=1000)
    check = records[0]["independence"]
    assert records[0]["batch_mode"] == "batched" and check["matched"] is True
    assert check["difference"] > 1e-5 and check["blocking"] <= 1e-5  # blocked as in the batch: equal
    assert "rounding" not in check  # no twin of perturbed starts was needed


def test_a_chaotic_run_that_batching_moves_between_minima_is_not_a_coupling() -> None:
    """SAM on a confined Gaussian field: the batched row and the run alone end 7e-3 apart, in two
    minima 6e-5 apart in loss; three twins started a few ulps from the run alone stay within 7e-8 of
    it, so before the blocked twin this was called a coupling (in the shipped baselines, on one
    thread). The run alone evaluated as its row of 8 copies ends exactly where the row did."""
    problem, sam = "gaussian_field(dim=10, confinement=1.0)", "sam(lr=0.03162)"
    records = landbench.run(problem, sam, seeds=8, steps=1000, dtype="float64", threads=1, curvature=False)
    check = records[0]["independence"]
    assert records[0]["batch_mode"] == "batched" and check["matched"] is True
    assert check["difference"] > 1e-3 and check["blocking"] == 0.0


def test_an_elementwise_batch_matches_its_run_alone_and_says_which_seed() -> None:
    adam = "adversarial:UnlistedAdam(lr=0.05)"
    records = landbench.run("saddle(dim=20, index=2)", adam, seeds=[3, 5, 8], steps=120, noise=0.01)
    checks = {str(r["independence"]) for r in records}
    assert len(checks) == 1  # one check per batch, in every record of it
    check = records[0]["independence"]
    assert check["matched"] is True and check["seed"] in (3, 5, 8)
    again = landbench.run("saddle(dim=20, index=2)", adam, seeds=[3, 5, 8], steps=120, noise=0.01)
    assert again[0]["independence"] == check  # the same seed is checked every time
    separate = landbench.run("rosenbrock(dim=4)", "lbfgs(lr=0.5, max_iter=4)", seeds=2, steps=10)
    assert all(r["batch_mode"] == "separate" and r["independence"] is None for r in separate)


#: Each class of ELEMENTWISE, at arguments away from its defaults where it has any.
ELEMENTWISE_SPECS = {
    torch.optim.SGD: "sgd(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)",
    torch.optim.Adam: "adam(lr=0.05, amsgrad=True, weight_decay=0.01)",
    torch.optim.AdamW: "adamw(lr=0.05, weight_decay=0.1)",
    torch.optim.RMSprop: "rmsprop(lr=0.01, momentum=0.5, centered=True)",
    torch.optim.Adagrad: "adagrad(lr=0.1, lr_decay=0.01)",
    torch.optim.Adamax: "adamax(lr=0.05)",
    torch.optim.NAdam: "nadam(lr=0.05, decoupled_weight_decay=True, weight_decay=0.01)",
    torch.optim.RAdam: "radam(lr=0.05)",
    torch.optim.ASGD: "asgd(lr=0.05, t0=5)",
    torch.optim.Rprop: "rprop(lr=0.05)",
    torch.optim.Adadelta: "adadelta(lr=1.0)",
    GradientDescent: "gd(lr=0.05)",
}


def test_every_class_trusted_as_elementwise_is_tested_here() -> None:
    assert set(ELEMENTWISE_SPECS) == set(ELEMENTWISE)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls", list(ELEMENTWISE_SPECS), ids=lambda c: c.__name__)
def test_a_class_trusted_as_elementwise_steps_a_batch_exactly_as_separate_runs(cls: type, device: str) -> None:
    """What replaces the spot check for ELEMENTWISE: 5 runs of one (5, d) tensor, with gradient noise
    and a run whose start is NaN, give bit for bit the points of 5 optimizers stepping one run each,
    at every step (the 200 steps pass every warm-up: ASGD's averaging from t0, RAdam's rectification)."""
    spec = resolve(ELEMENTWISE_SPECS[cls])
    assert spec.cls is cls and elementwise(spec)
    landscape = make("saddle(dim=7, index=2)", dtype="float64", device=device)
    seeds = [0, 1, 2, 3, 4]
    start = landscape.sample_start(seeds)
    start[2] = torch.nan
    ends = {}
    for mode in ("batched", "separate"):
        streams = [RunNoise(landscape.seed, seeds, 7, torch.float64, device)]
        if mode == "separate":
            streams = [RunNoise(landscape.seed, [s], 7, torch.float64, device) for s in seeds]
        evaluator = Evaluator(landscape, 0.1, streams)
        seen: list[torch.Tensor] = []
        stepper = STEPPERS[mode](spec, start, evaluator)
        ends[mode] = step_loop(
            stepper, evaluator, 200, lambda step, loss, s=stepper, seen=seen: seen.append(s.points().clone())
        )
        ends[mode + " path"] = torch.stack(seen)
    assert torch.equal(ends["batched path"].isnan(), ends["separate path"].isnan())
    assert torch.equal(ends["batched path"].nan_to_num(), ends["separate path"].nan_to_num())
    assert torch.isfinite(ends["batched"][[0, 1, 3, 4]]).all() and torch.isnan(ends["batched"][2]).all()


def test_a_batch_of_a_class_trusted_as_elementwise_is_not_re_run_and_says_why() -> None:
    records = landbench.run("saddle(dim=20, index=2)", "adam(lr=0.05)", seeds=3, steps=50, curvature=False)
    assert all(r["batch_mode"] == "batched" and r["independence"] == {"elementwise": "Adam"} for r in records)
    assert not elementwise(resolve("adam(lr=0.05)"), "cuda")  # torch's default there is foreach: checked


@pytest.mark.parametrize("spec", ["adam(lr=0.05, fused=True)", "sgd(lr=0.05, momentum=0.9, foreach=True)"])
def test_torchs_other_implementations_are_spot_checked(spec: str) -> None:
    """A fused kernel rounds an element by its place in the tensor (vectorised body or scalar tail):
    a row's numbers can differ from its run alone in the last bits, so such specs get the check."""
    assert not elementwise(resolve(spec))
    records = landbench.run("saddle(dim=21, index=2)", spec, seeds=3, steps=50, curvature=False)
    check = records[0]["independence"]
    assert check["matched"] is True and check["seed"] in (0, 1, 2)


def test_a_learning_rate_grid_that_is_coupled_late_is_tuned_one_rate_at_a_time(tmp_path: Path) -> None:
    """The grid's batch fails its spot check (CoupledBatch); the runner then runs each rate alone, and
    the tuning records equal the rates run on their own (a warm-up of its own: the cache of modes
    remembers a spec once it was caught)."""
    spec = resolve(LATE.format(warmup=110))
    landscape = landbench.make("quadratic(dim=6)", dtype="float64")
    settings = Settings(dtype="float64", curvature=False)
    assert grid_mode(spec, "cpu", torch.float64, [1e-3, 1e-2]) == "batched"
    with pytest.raises(CoupledBatch), pytest.warns(UserWarning):
        run_batch(landscape, spec, [0, 1], steps=200, settings=settings, lrs=[1e-3, 1e-2])
    suite = parse_suite(
        f"""
name = "late"
seeds = [0, 1]
steps = 200
dtype = "float64"
optimizers = ["{LATE.format(warmup=120)}"]
[metrics]
curvature = false
[tuning]
seeds = [10, 11]
grid = [0.001, 0.01]
[[problems]]
spec = "quadratic"
dims = [6]
"""
    )
    with pytest.warns(UserWarning, match="couples the runs"):  # the runner's own grid batch is caught
        run_suite(suite, tmp_path, progress=False)
    tuned = [r for r in landbench.store.ResultStore(tmp_path).records() if r.get("phase") == "tune"]
    assert len(tuned) == 4 and {r["batch_mode"] for r in tuned} == {"separate"}
    for record in tuned:
        (alone,) = landbench.run(
            "quadratic(dim=6)",
            record["optimizer"],
            seeds=[record["seed"]],
            steps=200,
            instance=1000,
            dtype="float64",
            curvature=False,
        )
        assert record["final_loss"] == alone["final_loss"]


class CoupledAtLargeRates(torch.optim.SGD):
    """SGD that normalises by the root-mean-square of all its gradients when its rate is 1 or more:
    batch-safe at small rates only, so every rate of a grid must be probed."""

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            if group["lr"] >= 1.0:
                grads = [p.grad for p in group["params"] if p.grad is not None]
                scale = torch.cat([g.reshape(-1) for g in grads]).pow(2).mean().sqrt() + 1e-12
                for g in grads:
                    g.div_(scale)
        return super().step()


def test_every_rate_of_a_grid_is_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("rate_coupled")
    module.CoupledAtLargeRates = CoupledAtLargeRates  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rate_coupled", module)
    spec = resolve("rate_coupled:CoupledAtLargeRates(lr=0.01)")
    assert choose_mode(spec, "cpu", torch.float64) == "batched"  # at its own rate
    assert grid_mode(spec, "cpu", torch.float64, [0.01, 0.1]) == "batched"
    assert grid_mode(spec, "cpu", torch.float64, [0.01, 0.1, 3.0]) is None  # 3.0 must run alone


@pytest.mark.parametrize("name", ["DAdaptAdam", "Prodigy", "DAdaptSGD"])
def test_learning_rate_free_optimizers_give_the_numbers_of_separate_runs(name: str) -> None:
    """pytorch-optimizer's D-Adaptation and Prodigy set their step from statistics over all their
    parameters: at a small lr the probe may see nothing, but a batch never differs from its runs alone."""
    pytest.importorskip("pytorch_optimizer")
    spec = f"pytorch_optimizer:{name}(lr=0.001)"
    seeds, options = [0, 1, 2], {"steps": 150, "dtype": "float64", "curvature": False}
    batch = landbench.run("quadratic(dim=8)", spec, seeds=seeds, **options)
    alone = _alone("quadratic(dim=8)", spec, seeds, **options)
    for together, single in zip(batch, alone):
        assert together["final_loss"] == pytest.approx(single["final_loss"], rel=1e-9)
        assert together["reach_evals"] == single["reach_evals"]
