"""Minibatches on finite-sum landscapes (landbench.minibatch, landbench.landscapes.finite_sum): each
run's stream against a brute-force recomputation, without replacement within an epoch, the same
whatever the batch of runs; the engine's minibatch gradients against a brute-force mean; a batch of
all n examples is the full batch, bit for bit; records, suites, CLI and every view carry the batch
size; bad batch sizes are one line before anything runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landbench
from landbench.cli import main
from landbench.engine import run_batch
from landbench.errors import SpecError
from landbench.minibatch import Minibatches, epoch_order, run_keys
from landbench.optimizers import resolve
from landbench.rng import lowbias32
from landbench.settings import Settings
from landbench.stepping import Evaluator
from landbench.suite import parse_suite

PROBLEM = "least_squares(dim=6, samples=40, condition=30.0, label_noise=0.2)"


def _brute_order(keys: list[int], epoch: int, n: int) -> list[int]:
    """The documented permutation, in Python integers: sort j by (h_j, j)."""
    k0, k1, k2 = keys
    words = [lowbias32(lowbias32(lowbias32(j ^ k0) ^ (epoch & 0xFFFFFFFF) ^ k1) ^ (epoch >> 32) ^ k2) for j in range(n)]
    return sorted(range(n), key=lambda j: (words[j], j))


def test_each_epoch_is_the_documented_permutation() -> None:
    keys = run_keys(3, [0, 7])
    for epoch in (0, 1, 2**33 + 5):
        order = epoch_order(keys, epoch, 50)
        for row in range(2):
            assert order[row].tolist() == _brute_order(keys[row].tolist(), epoch, 50)
    assert not torch.equal(epoch_order(keys, 0, 50), epoch_order(keys, 1, 50))


def test_minibatches_are_without_replacement_within_an_epoch_and_drop_the_rest() -> None:
    n, m = 23, 5  # 4 minibatches per epoch, 3 examples left out of each epoch
    stream = Minibatches(0, [4], n, m, "cpu")
    for epoch in range(3):
        batches = [stream.next()[0] for _ in range(n // m)]
        seen = torch.cat(batches).tolist()
        assert len(seen) == len(set(seen)) == 20 and all(b.numel() == m for b in batches)
        assert seen == _brute_order(run_keys(0, [4])[0].tolist(), epoch, n)[:20]


def test_every_example_is_used_equally_often_over_many_epochs() -> None:
    n, m, epochs = 12, 4, 600
    stream = Minibatches(1, [0], n, m, "cpu")
    counts = np.bincount(torch.cat([stream.next()[0] for _ in range(epochs * n // m)]).numpy(), minlength=n)
    assert counts.tolist() == [epochs] * n  # n divisible by m: every example once per epoch
    first = [Minibatches(1, [s], n, m, "cpu").next()[0, 0].item() for s in range(2400)]
    assert stats_uniform_pvalue(first, n) > 1e-3  # the first example drawn is uniform over the runs


def stats_uniform_pvalue(values: list[int], n: int) -> float:
    from scipy import stats

    return float(stats.chisquare(np.bincount(values, minlength=n)).pvalue)


def test_a_runs_minibatches_do_not_depend_on_the_other_runs_of_its_batch() -> None:
    together = Minibatches(2, [0, 5, 9], 30, 7, "cpu")
    alone = Minibatches(2, [5], 30, 7, "cpu")
    for _ in range(20):
        assert torch.equal(together.next()[1], alone.next()[0])


def test_the_engines_minibatch_gradient_is_the_mean_over_the_streams_examples() -> None:
    landscape = landbench.make(PROBLEM, dtype=torch.float64)
    x = landscape.sample_start([0, 1, 2])
    evaluator = Evaluator(landscape, 0.0, None, batches=[Minibatches(0, [0, 1, 2], 40, 8, "cpu")])
    replay = Minibatches(0, [0, 1, 2], 40, 8, "cpu")
    for _ in range(7):  # across the epoch boundary (5 minibatches per epoch)
        loss, grad = evaluator.gradient(x)
        index = replay.next()
        for row in range(3):
            examples = index[row].tolist()
            xr = x[row : row + 1].clone().requires_grad_(True)
            per_example = landscape.example_losses(xr, None)[0]
            (brute,) = torch.autograd.grad(per_example[examples].mean(), xr)
            torch.testing.assert_close(grad[row], brute[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(loss, landscape.loss(x), rtol=0, atol=0)  # the full training loss


def test_an_optimizers_closure_sees_its_steps_minibatch_and_the_records_the_full_loss() -> None:
    """A step draws one minibatch: the step loop's evaluation (whose loss, the full training loss, the
    records and events see) and every closure evaluation within the step (LBFGS's line search, SAM's
    ascent and descent) use its examples, the closure getting their loss; the next step draws the
    next minibatch."""
    from landbench.stepping import BatchedStepper

    landscape = landbench.make(PROBLEM, dtype=torch.float64)
    start = landscape.sample_start([0, 1])
    evaluator = Evaluator(landscape, 0.0, None, batches=[Minibatches(0, [0, 1], 40, 8, "cpu")])
    replay = Minibatches(0, [0, 1], 40, 8, "cpu")
    observed, grad = evaluator.gradient(start)
    torch.testing.assert_close(observed, landscape.loss(start), rtol=0, atol=0)
    first = replay.next()
    torch.testing.assert_close(grad, landscape.batch_loss_and_grad(start, first)[1], rtol=0, atol=0)
    stepper = BatchedStepper(resolve("lbfgs(lr=0.1)"), start, evaluator)
    moved = start + 0.1
    stepper.params[0].data.copy_(moved)
    for _ in range(2):  # every closure call within the step: the step's minibatch, its loss
        value = stepper._closure()
        torch.testing.assert_close(value, landscape.batch_loss(moved, first).sum(), rtol=1e-14, atol=1e-14)
    assert not torch.isclose(value, landscape.loss(moved).sum())
    evaluator.gradient(moved)  # the next step
    torch.testing.assert_close(stepper._closure(), landscape.batch_loss(moved, replay.next()).sum(), rtol=1e-14, atol=0)


def test_sam_ascends_and_descends_on_one_minibatch_per_step() -> None:
    """SAM with minibatches against its update written out: g = grad_S(x) on the step's minibatch S,
    x <- x - lr grad_S(x + rho g / |g|), the same S for both gradients."""
    landscape = landbench.make(PROBLEM, dtype=torch.float64)
    lr, rho, steps = 0.05, 0.05, 12
    records = run_batch(
        landscape,
        resolve(f"sam(lr={lr}, rho={rho})"),
        [3],
        steps=steps,
        settings=Settings(batch_size=8, dtype="float64"),
    )
    x = landscape.sample_start([3])
    stream = Minibatches(landscape.seed, [3], 40, 8, "cpu")
    for _ in range(steps):
        index = stream.next()
        g = landscape.batch_loss_and_grad(x, index)[1]
        ascent = x + rho * g / g.norm(dim=1, keepdim=True)
        x = x - lr * landscape.batch_loss_and_grad(ascent, index)[1]
    torch.testing.assert_close(records.final_x, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd(lr=0.05)", "adam(lr=0.01)", "sam(lr=0.05, rho=0.05)"])
def test_minibatch_runs_are_the_same_batched_and_separate(optimizer: str) -> None:
    landscape = landbench.make(PROBLEM)
    settings = Settings(batch_size=8, curvature=False)
    common = {"steps": 60, "settings": settings, "verify": False}
    batched = run_batch(landscape, resolve(optimizer), [0, 1, 2, 3], **common)
    separate = run_batch(landscape, resolve(optimizer), [0, 1, 2, 3], mode="separate", **common)
    alone = run_batch(landscape, resolve(optimizer), [2], **common)
    assert torch.equal(batched.final_x, separate.final_x)
    assert torch.equal(batched.final_x[2], alone.final_x[0])
    full = run_batch(landscape, resolve(optimizer), [0, 1, 2, 3], steps=60, settings=Settings(curvature=False))
    assert not torch.equal(full.final_x, batched.final_x)  # minibatches do change the runs


def test_a_learning_rate_grid_in_one_batch_gets_each_runs_own_minibatches() -> None:
    landscape = landbench.make(PROBLEM)
    settings = Settings(batch_size=5, curvature=False)
    common = {"steps": 30, "settings": settings, "mode": "batched", "verify": False}
    grid = run_batch(landscape, resolve("sgd(lr=0.1)"), [0, 1, 2], lrs=[0.05, 0.1], **common)
    for block, lr in enumerate([0.05, 0.1]):
        alone = run_batch(landscape, resolve(f"sgd(lr={lr})"), [0, 1, 2], **common)
        assert torch.equal(grid.final_x[3 * block : 3 * block + 3], alone.final_x)


def test_a_batch_of_all_examples_is_the_full_batch() -> None:
    full = landbench.run(PROBLEM, "adam(lr=0.01)", seeds=3, steps=50)
    all_n = landbench.run(PROBLEM, "adam(lr=0.01)", seeds=3, steps=50, batch_size=40)
    assert [r["key"] for r in all_n] == [r["key"] for r in full]  # one scenario, one key
    for a, b in zip(full, all_n):
        assert a["final_loss"] == b["final_loss"] and a["test_loss"] == b["test_loss"]
        assert a["batch_size"] == 40 and a["epochs"] == 50.0 and a["examples"] == 2000
    suite = parse_suite(
        f'seeds = 2\nsteps = 10\noptimizers = ["sgd(lr=0.1)"]\nbatch_size = [40, 8]\n[[problems]]\nspec = "{PROBLEM}"\n'
    )
    assert [sc.settings.batch_size for sc in suite.scenarios()] == [None, 8]
    named = parse_suite(
        'seeds = 2\nsteps = 10\noptimizers = ["sgd(lr=0.1)"]\nbatch_size = ["full", 8]\n'
        f'[[problems]]\nspec = "{PROBLEM}"\n'
    )
    assert [sc.settings.batch_size for sc in named.scenarios()] == [None, 8]  # "full": the full batch


def test_finite_sum_records_carry_examples_epochs_and_the_test_loss() -> None:
    records = landbench.run(PROBLEM, "sgd(lr=0.05)", seeds=2, steps=30, batch_size=8, noise=0.01)
    landscape = landbench.make(PROBLEM)
    for record in records:
        assert record["batch_size"] == 8 and record["examples"] == 240 and record["epochs"] == 6.0
        assert record["settings"]["batch_size"] == 8 and record["batch_runs"] == 2
        assert record["generalization_gap"] == pytest.approx(record["test_loss"] - record["final_loss"])
    # the test loss is the family's closed form at the final point, which a fresh large sample confirms
    assert records[0]["test_loss"] > 0 and landscape.test_loss_kind == "closed form"
    plain = landbench.run("quadratic(dim=3)", "sgd(lr=0.1)", seeds=1, steps=5)[0]
    assert not {"examples", "epochs", "test_loss", "generalization_gap", "batch_size"} & set(plain)
    assert "batch_size" not in plain["settings"]


def test_a_diverged_minibatch_run_has_no_test_loss() -> None:
    records = landbench.run(PROBLEM, "sgd(lr=1000.0)", seeds=2, steps=200, batch_size=4)
    assert all(r["diverged"] for r in records)
    assert all(r["test_loss"] is None and r["generalization_gap"] is None for r in records)


@pytest.mark.parametrize(
    ("problem", "size", "message"),
    [
        ("quadratic(dim=3)", 8, "quadratic(dim=3) is not a finite sum; batch sizes apply to least_squares"),
        (PROBLEM, 41, "exceeds the 40 training examples"),
        (PROBLEM, 0, "batch_size must be a whole number of examples from 1"),
        (PROBLEM, 2.5, "batch_size must be a whole number"),
        (PROBLEM, True, "batch_size must be a whole number"),
    ],
)
def test_bad_batch_sizes_are_refused_before_anything_runs(problem: str, size: object, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        landbench.run(problem, "sgd(lr=0.1)", seeds=1, steps=5, batch_size=size)


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        (
            'batch_size = 8\n[[problems]]\nspec = "quadratic"\ndims = [3]\n',
            "s.toml:2: batch_size: no problem is a finite",
        ),
        ('[[problems]]\nspec = "quadratic"\ndims = [3]\nbatch_size = 8\n', "s.toml:5: problems[0].batch_size: batch"),
        (f'[[problems]]\nspec = "{PROBLEM}"\nbatch_size = [8, 99]\n', "s.toml:4: problems[0].batch_size: batch"),
        (f'batch_size = []\n[[problems]]\nspec = "{PROBLEM}"\n', "expected a batch size or a non-empty list"),
        (f'[metrics]\nbatch_size = 8\n[[problems]]\nspec = "{PROBLEM}"\n', "not in [metrics]"),
    ],
)
def test_bad_batch_sizes_in_a_suite_are_one_line(tmp_path: Path, suite: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text('optimizers = ["sgd"]\n' + suite)
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert message in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flag", "message"), [("0", "batch_size must be a whole number"), ("64", "exceeds the 40")])
def test_a_bad_batch_size_flag_is_one_line(tmp_path: Path, flag: str, message: str) -> None:
    args = ["run", "--problem", PROBLEM, "--optimizer", "sgd", "--batch-size", flag, "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert message in result.stderr and not (tmp_path / "o").exists()


def test_batch_sizes_run_through_the_cli_and_every_view_keeps_them_apart(tmp_path: Path) -> None:
    from landbench import testing
    from landbench.ranking import rank
    from landbench.ranking.render import as_dict
    from landbench.ranking.scenarios import by_scenario
    from landbench.report.data import sweep

    out = tmp_path / "out"
    args = ["run", "--problem", PROBLEM, "--optimizer", "sgd(lr=0.05)", "--seeds", "2", "--steps", "40"]
    result = CliRunner().invoke(main, [*args, "--batch-size", "4", "--batch-size", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "0 batch 4" in result.stdout and "0 batch 8" in result.stdout
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["batch_size"] for r in records) == [4, 4, 8, 8]
    again = CliRunner().invoke(main, [*args, "--batch-size", "4", "--batch-size", "8", "--out", str(out)])
    assert "0 runs ran, 4 were already" in again.output
    assert [s.batch_size for s in by_scenario(records)] == [4, 8]
    assert sorted(s["batch_size"] for s in as_dict(rank(records))["scenarios"]) == [4, 8]
    assert "batch 4" in testing._scenario(records) and "batch 8" in testing._scenario(records)
    others = landbench.run(PROBLEM.replace("dim=6", "dim=4"), "sgd(lr=0.05)", seeds=2, steps=40, batch_size=4)
    panels = sweep(by_scenario(records + others), "dim")
    assert all("batch" in p.title for p in panels)


def test_tuning_chooses_a_rate_per_batch_size(tmp_path: Path) -> None:
    """Minibatch noise caps the rate: tuned on its own, batch size 1 gets a smaller rate than the full
    batch (which tolerates up to 2 / lambda_max of the sample covariance); one rate for both would
    handicap one of them."""
    suite = tmp_path / "t.toml"
    suite.write_text(
        'seeds = 2\nsteps = 150\noptimizers = ["sgd"]\n[metrics]\ncurvature = false\n'
        "[tuning]\ninstances = [1000]\nseeds = [1000, 1001]\ngrid = [0.01, 0.03, 0.1, 0.3, 1.0]\n"
        '[[problems]]\nspec = "least_squares(samples=64, label_noise=0.5)"\ndims = [10]\nbatch_size = [1, 64]\n'
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(suite), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    scored = {r["settings"].get("batch_size"): r["tuning"] for r in records if r.get("phase") == "score"}
    assert scored[1]["batch_size"] == 1 and "batch_size" not in scored[None]
    assert scored[1]["lr"] < scored[None]["lr"], scored


def test_a_batch_size_for_a_whole_suite_applies_to_its_finite_sums() -> None:
    """The file's top level, ``--batch-size`` and an asv class give the batch size to every problem:
    the finite sums take it, the others run their full batch (all they have)."""
    smoke = parse_suite(
        f'batch_size = 8\noptimizers = ["sgd"]\n[[problems]]\nspec = "{PROBLEM}"\n'
        '[[problems]]\nspec = "quadratic"\ndims = [3]\n'
    )
    assert [(sc.problem.split("(")[0], sc.settings.batch_size) for sc in smoke.scenarios()] == [
        ("least_squares", 8),
        ("quadratic", None),
    ]
    flagged = smoke.with_overrides(batch_size=[4, 40])
    assert [sc.settings.batch_size for sc in flagged.scenarios()] == [4, None, None]
    with pytest.raises(SpecError, match="--batch-size: no problem is a finite sum"):
        parse_suite('optimizers = ["sgd"]\n[[problems]]\nspec = "quadratic"\ndims = [3]\n').with_overrides(
            batch_size=[4]
        )
    with pytest.raises(SpecError, match="exceeds the 40 training examples"):
        smoke.with_overrides(batch_size=[64])


def test_a_failed_tuning_run_counts_against_its_own_batch_size(tmp_path: Path) -> None:
    """A failed run's record holds its settings: its batch size, so that tuning leaves its rate out of
    that batch size's choice only, and status names it."""
    from landbench.jobs import failed_records
    from landbench.outcomes import batch_size_of
    from landbench.planning import Job

    suite = parse_suite(
        f'seeds = 2\nsteps = 10\noptimizers = ["sgd"]\nnoise = 0.1\nnoise_model = "student_t(nu=3)"\n'
        f'[[problems]]\nspec = "{PROBLEM}"\nbatch_size = [4]\n'
    )
    (scenario,) = suite.scenarios()
    job = Job("score", scenario, (scenario.optimizer,), scenario.seeds, "cpu", ("k0", "k1"))
    records = failed_records(job, "RuntimeError: boom")
    assert [batch_size_of(r) for r in records] == [4, 4]
    assert all(r["noise_model"] == "student_t(nu=3.0)" for r in records)


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "full ", " 8 "])
def test_batch_size_text_is_ascii_digits_or_full(value: str) -> None:
    from landbench.settings import check_batch_size

    if value.strip().isascii():
        assert check_batch_size(value) == (None if value.strip() == "full" else 8)
    else:
        with pytest.raises(SpecError, match="batch_size must be a whole number"):
            check_batch_size(value)


def test_older_records_batch_size_still_counts_the_runs_of_a_batch() -> None:
    from landbench.outcomes import batch_size_of, runs_in_batch

    old = {"batch_size": 8, "problem": "saddle(dim=2)"}
    assert runs_in_batch(old) == 8 and batch_size_of(old) is None
    new = {"batch_runs": 3, "batch_size": 16, "examples": 160, "test_loss": 0.5, "settings": {"batch_size": 16}}
    assert runs_in_batch(new) == 3 and batch_size_of(new) == 16
    full = {"batch_runs": 3, "batch_size": 40, "examples": 400, "test_loss": 0.5, "settings": {}}
    assert runs_in_batch(full) == 3 and batch_size_of(full) is None  # the full batch: no minibatch


def test_third_party_and_adversarial_optimizers_with_minibatches() -> None:
    """pytorch-optimizer's Lion gives a minibatch run the same numbers alone and in a batch; an
    optimizer that writes NaN into some runs gets them recorded as diverged, the rest finish."""
    pytest.importorskip("pytorch_optimizer")
    spec = "pytorch_optimizer:Lion(lr=0.001)"
    batch = landbench.run(PROBLEM, spec, seeds=4, steps=40, batch_size=8)
    alone = landbench.run(PROBLEM, spec, seeds=[2], steps=40, batch_size=8)
    assert alone[0]["key"] == batch[2]["key"] and alone[0]["final_loss"] == batch[2]["final_loss"]
    nan = landbench.run(PROBLEM, "adversarial:NaNAtStepSGD(lr=0.01)", seeds=8, steps=40, batch_size=8)
    diverged = [r["diverged"] for r in nan]
    assert any(diverged) and not all(diverged)
    assert all(r["test_loss"] is None for r in nan if r["diverged"])


@pytest.mark.parametrize(
    "spec",
    [
        "deep_linear(dim=10, depth=3, width=20, samples=32)",
        "teacher_student(dim=12, hidden=5, teacher_hidden=3, samples=32)",
        "matrix_sensing(dim=8, rank=3, measurements=16)",
    ],
)
def test_preflight_counts_the_search_space_of_a_network_family(spec: str) -> None:
    """Where the spec's dim is the data's dimension, a run holds the weights: the estimate must count
    the coordinates the built landscape has, not dim."""
    from landbench.preflight import need

    built = landbench.make(spec)
    estimate = need(spec, torch.float32, 64, Settings(curvature=False), torch.device("cpu"), 2**40)
    assert estimate.footprint.coordinates == built.dim > int(built.values["dim"])
