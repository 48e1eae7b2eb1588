"""The pytest plugin, in a fresh temporary project (pytester): it is loaded through its ``pytest11``
entry point alone, as in a user's repository that only installed landbench."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest

import landbench
from landbench.suite import suite_directory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture(autouse=True, scope="module")
def torch_warmed_up() -> None:
    """pytester's in-process runs drop the modules a run imported when it ends; torch imports some
    modules lazily on an optimizer's first step that cannot be imported twice, so take those steps here."""
    for optimizer in ("adam(lr=0.05)", "gd(lr=0.1)", "sgd(lr=1e-4)"):
        landbench.run("saddle(dim=3)", optimizer, seeds=1, steps=2)


def expected_ids(suite: str, dims: list[int] | None = None) -> list[str]:
    """The test ids of a suite's problems, read from its TOML file directly: each problem at each of
    its dims (or at ``dims``) and noise levels, canonicalised by building the landscape."""
    data = tomllib.loads((suite_directory() / f"{suite}.toml").read_text())
    ids = []
    for entry in data["problems"]:
        noises = entry.get("noise", data.get("noise", 0.0))
        batches = entry.get("batch_size", data.get("batch_size", [None]))
        batches = batches if isinstance(batches, list) else [batches]
        name, _, arguments = entry["spec"].partition("(")
        for dim in dims or entry["dims"]:
            spec = f"{name}(dim={dim}, {arguments}" if arguments else f"{name}(dim={dim})"
            try:
                canonical = landbench.make(spec).spec
            except landbench.SpecError:  # skipped: listed once, under the spec and the dim
                ids.append(f"{entry['spec']}-dim={dim}")
                continue
            examples = int(landbench.make(spec).describe()["facts"].get("examples", 0))
            for noise in noises if isinstance(noises, list) else [noises]:
                for batch in batches:
                    tail = f"-batch={batch}" if batch is not None and batch != examples else ""
                    ids.append((canonical if noise == 0 else f"{canonical}-noise={noise:g}") + tail)
    return list(dict.fromkeys(ids))


def collected_ids(result: pytest.RunResult, test: str) -> list[str]:
    prefix = f"test_fixtures.py::{test}["
    return [line[len(prefix) : -1] for line in result.outlines if line.startswith(prefix)]


def test_the_plugin_does_not_import_torch_into_runs_that_do_not_use_it(pytester: pytest.Pytester) -> None:
    """Every pytest run in an environment with landbench loads the plugin: it must stay light."""
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_no_torch(pytestconfig):
            assert pytestconfig.pluginmanager.hasplugin("landbench")
            assert "torch" not in sys.modules
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_landbench_problem_runs_over_the_suite_problems(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fixtures="""
        def test_each(landbench_problem):
            assert str(landbench_problem) == landbench_problem.spec
        """
    )
    result = pytester.runpytest("--collect-only", "-q")
    result.assert_outcomes()
    assert collected_ids(result, "test_each") == expected_ids("smoke")
    assert "saddle(dim=100, index=3, rotate=True)-noise=0.01" in collected_ids(result, "test_each")


def test_dims_option_and_invalid_combinations_are_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fixtures="""
        def test_each(landbench_problem):
            assert landbench_problem.dim in (1, 3)
        """
    )
    result = pytester.runpytest("--collect-only", "-q", "--landbench-dims", "1,3")
    assert collected_ids(result, "test_each") == expected_ids("smoke", [1, 3])
    result = pytester.runpytest("-rs", "--landbench-dims", "1,3")
    # saddle(index=3) and rosenbrock cannot live in one dimension, nor a 4-unit teacher in 1 or 3: skipped, saying why
    result.stdout.fnmatch_lines(
        [
            "SKIPPED * saddle(index=3, rotate=True) at dim=1: saddle: index must be between 1 and dim=1*",
            "SKIPPED * rosenbrock at dim=1: rosenbrock: dim must be at least 2*",
            "SKIPPED * teacher_student(hidden=6, samples=128) at dim=1: teacher_student: *",
            "SKIPPED * teacher_student(hidden=6, samples=128) at dim=3: teacher_student: *",
        ]
    )
    result.assert_outcomes(passed=len(expected_ids("smoke", [1, 3])) - 4, skipped=4)


def test_a_suites_noise_laws_and_batch_sizes_are_parameters_and_reach_the_runs(pytester: pytest.Pytester) -> None:
    suite = pytester.path / "laws.toml"
    suite.write_text(
        'seeds = 2\nsteps = 20\noptimizers = ["sgd(lr=0.05)"]\n'
        '[[problems]]\nspec = "least_squares(samples=16)"\ndims = [3]\nbatch_size = [4, 16]\n'
        '[[problems]]\nspec = "saddle"\ndims = [3]\nnoise = 0.1\nnoise_model = ["gaussian", "student_t(nu=3)"]\n'
    )
    mixed = pytester.path / "mixed.toml"  # a top-level batch size: the quadratic runs its full batch
    mixed.write_text(
        'seeds = 2\nsteps = 20\nbatch_size = [4, "full"]\noptimizers = ["sgd(lr=0.05)"]\n'
        '[[problems]]\nspec = "least_squares(samples=16)"\ndims = [3]\n[[problems]]\nspec = "quadratic"\ndims = [3]\n'
    )
    pytester.makepyfile(
        test_fixtures="""
        import json

        def test_each(landbench_problem, landbench_run):
            records = landbench_run(landbench_problem, "sgd(lr=0.05)")
            with open("runs.jsonl", "a") as out:
                for r in records:
                    law = r.get("noise_model", "gaussian")
                    out.write(json.dumps([r["problem"], law, r.get("settings", {}).get("batch_size")]) + "\\n")
        """
    )
    collected = pytester.runpytest("--landbench-suite", str(mixed), "--collect-only", "-q")
    collected.stdout.fnmatch_lines(["*least_squares(dim=3, samples=16)-batch=4*", "*quadratic(dim=3)]*"])
    result = pytester.runpytest("--landbench-suite", str(suite), "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*least_squares(dim=3, samples=16)-batch=4*", "*saddle(dim=3)-noise=0.1-student_t*"])
    rows = {tuple(json.loads(line)) for line in (pytester.path / "runs.jsonl").read_text().splitlines()}
    assert rows == {
        ("least_squares(dim=3, samples=16)", "gaussian", 4),
        ("least_squares(dim=3, samples=16)", "gaussian", None),  # 16 = n: the full batch
        ("saddle(dim=3)", "gaussian", None),
        ("saddle(dim=3)", "student_t(nu=3.0)", None),
    }


def test_a_run_in_a_user_test_gets_the_suite_budget_and_the_seeds_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fixtures="""
        import json

        def test_each(landbench_problem, landbench_run):
            records = landbench_run(landbench_problem, "adam(lr=0.05)")
            again = landbench_run(landbench_problem, "adam(lr=0.05)")
            assert again == records and again is not records
            with open("runs.jsonl", "a") as out:
                for r in records:
                    out.write(json.dumps({k: r[k] for k in ("problem", "steps", "noise", "seed", "device")}) + "\\n")
        """
    )
    result = pytester.runpytest("--landbench-dims", "3", "--landbench-seeds", "2", "-k", "saddle and not chain")
    result.assert_outcomes(passed=3)  # saddle at noise 0, and the index-3 saddle at noise 0 and 0.01
    rows = [json.loads(line) for line in (pytester.path / "runs.jsonl").read_text().splitlines()]
    rotated = "saddle(dim=3, index=3, rotate=True)"
    assert [(r["problem"], r["noise"], r["seed"]) for r in rows] == [
        ("saddle(dim=3)", 0.0, 0),
        ("saddle(dim=3)", 0.0, 1),
        (rotated, 0.0, 0),
        (rotated, 0.0, 1),
        (rotated, 0.01, 0),
        (rotated, 0.01, 1),
    ]
    smoke = tomllib.loads((suite_directory() / "smoke.toml").read_text())
    assert {r["steps"] for r in rows} == {smoke["steps"]}
    assert {r["device"] for r in rows} == {"cpu"}


def test_options_come_from_the_ini_file_and_a_users_own_suite(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml",
        mine="""
        name = "mine"
        seeds = 3
        steps = 40
        optimizers = ["gd(lr=0.1)"]

        [[problems]]
        spec = "quadratic(condition=4.0)"
        dims = [2, 5]
        """,
    )
    pytester.makeini("[pytest]\nlandbench_suite = mine.toml\n")
    pytester.makepyfile(
        test_fixtures="""
        def test_each(landbench_problem, landbench_suite, landbench_run):
            assert landbench_suite.name == "mine"
            assert landbench_problem.optimizers == ("gd(lr=0.1)",)
            records = landbench_run(landbench_problem, landbench_problem.optimizers[0])
            assert [r["seed"] for r in records] == [0, 1, 2] and records[0]["steps"] == 40
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_each[[]quadratic(dim=2, condition=4.0)[]] PASSED*"])
    result.stdout.fnmatch_lines(["landbench: suite=mine.toml"])


def test_every_instance_and_every_budget_of_a_suite_is_a_test(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml",
        mine="""
        name = "mine"
        seeds = 2
        optimizers = ["gd(lr=0.1)"]

        [[problems]]
        spec = "saddle(rotate=True)"
        dims = [3]
        steps = 30
        instances = [0, 3]

        [[problems]]
        spec = "saddle(rotate=True)"
        dims = [3]
        steps = 50
        """,
    )
    pytester.makepyfile(
        test_fixtures="""
        import json

        def test_each(landbench_problem, landbench_run):
            (record, _) = landbench_run(landbench_problem, "gd(lr=0.1)")
            with open("runs.jsonl", "a") as out:
                out.write(json.dumps([record["instance"], record["steps"]]) + "\\n")
        """
    )
    result = pytester.runpytest("-v", "--landbench-suite", "mine.toml")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_each[[]saddle(dim=3, rotate=True)-instance=3[]] PASSED*"])
    rows = [json.loads(line) for line in (pytester.path / "runs.jsonl").read_text().splitlines()]
    assert sorted(map(tuple, rows)) == [(0, 30), (0, 50), (3, 30)]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--landbench-dims", "ten"], "*--landbench-dims: expected positive integers separated by commas*'ten'*"),
        (["--landbench-seeds", "0"], "*--landbench-seeds: expected a positive number of run seeds, got '0'*"),
        (["--landbench-suite", "nope"], "*--landbench-suite: unknown suite 'nope'; shipped suites: *smoke*"),
    ],
)
def test_bad_options_fail_with_what_is_valid(pytester: pytest.Pytester, option: list[str], message: str) -> None:
    pytester.makepyfile(test_fixtures="def test_each(landbench_problem):\n    pass\n")
    result = pytester.runpytest(*option)
    assert result.ret != 0
    result.stderr.fnmatch_lines([message]) if "suite" not in option[0] else result.stdout.fnmatch_lines([message])


def escape_step_from_the_unstable_direction(lr: float = 0.1, radius: float = 1e-3) -> int:
    """Gradient descent from ``radius`` times the unstable direction of the default saddle follows
    u <- u + lr (u - u^3); it escapes at the first step with f(u) = -u^2/2 + u^4/4 <= f*/2 = -1/8."""
    u, step = radius, 0
    while -(u**2) / 2 + u**4 / 4 > -1 / 8:
        u, step = u + lr * (u - u**3), step + 1
    return step


def test_helper_assertions_fail_with_a_readable_message(pytester: pytest.Pytester) -> None:
    step = escape_step_from_the_unstable_direction()
    assert 50 < step <= 100  # so that the claims below are false and true
    pytester.makepyfile(
        test_claims="""
        from landbench.testing import assert_escapes, assert_in_basin, assert_reaches

        def test_escapes(landbench_run):
            records = landbench_run('saddle(dim=10, init="unstable")', "gd(lr=0.1)", seeds=2, steps=300,
                                    dtype="float64")
            assert_escapes(records, within=100)   # true
            assert_escapes(records, within=50)    # false

        def test_reaches(landbench_run):
            records = landbench_run("rosenbrock(dim=10)", "sgd(lr=1e-4)", seeds=2, steps=50)
            assert_reaches(records, target=1e-6)

        def test_basin(landbench_run):
            records = landbench_run("basins(dim=1)", "gd(lr=0.1)", seeds=16, steps=300)
            assert_in_basin(records, "wide", at_least=0.4)   # true
            assert_in_basin(records, "wide", at_least=0.95)  # false
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "E * saddle(dim=10, init='unstable') with gd(lr=0.1), 2 runs of 300 steps: 0 of 2 runs escaped the saddle "
            "within 50 steps (0%); expected at least 2 (100%)",
            f"E * escape steps: {step}, {step}",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E * rosenbrock(dim=10) with sgd(lr=0.0001), 2 runs of 50 steps: 0 of 2 runs reached loss gap 1e-06 and "
            "held it (0%)*",
            "E * steps from which the target was held: 2 run(s) did not hold it",
            "E * final loss gaps: min *, median *, max *",
        ]
    )
    result.stdout.fnmatch_lines(["E * 16 runs of 300 steps: * of 16 runs ended in the wide basin (well 0) *"])
    # the failing line of the user's test is shown, not landbench's internals
    assert "def _judge" not in result.stdout.str()


BENCHMARK_TEST = """
import json
from landbench.testing import summary

def test_speed(landbench_benchmark):
    records = landbench_benchmark("saddle(dim=50, index=2)", "adam(lr=0.05)", seeds=4, steps=60)
    with open("records.json", "w") as out:
        json.dump(records, out)

def test_plain():
    pass
"""


def test_benchmark_fixture_times_the_runs_and_attaches_the_metrics(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCHMARK_TEST)
    result = pytester.runpytest(
        "--benchmark-only", "--benchmark-json=bench.json", "--benchmark-min-rounds=2", "--benchmark-max-time=0"
    )
    result.assert_outcomes(passed=1, skipped=1)  # --benchmark-only skips the plain test
    (bench,) = json.loads((pytester.path / "bench.json").read_text())["benchmarks"]
    records = json.loads((pytester.path / "records.json").read_text())
    info = bench["extra_info"]
    # the metrics, recomputed here from the returned records
    escapes = sorted(r["escape_step"] for r in records)
    assert info["runs"] == 4 and info["steps"] == 60 and info["dim"] == 50 and info["diverged"] == 0
    assert info["escaped_share"] == sum(r["escaped"] for r in records) / 4
    assert info["median_escape_step"] == statistics.median(escapes)
    assert info["median_loss_gap"] == statistics.median(r["loss_gap"] for r in records)
    assert info["median_sharpness"] is None  # curvature metrics are off by default
    assert info["batch_mode"] == "batched" and info["device"] == "cpu"
    assert math.isclose(info["steps_per_second"], 4 * 60 / bench["stats"]["median"], rel_tol=1e-9)
    assert math.isclose(info["coordinate_steps_per_second"], 50 * info["steps_per_second"], rel_tol=1e-9)
    assert bench["stats"]["rounds"] >= 2


def test_benchmarks_are_skipped_in_ordinary_runs_and_timed_with_benchmark_only(pytester: pytest.Pytester) -> None:
    """The documented idiom: ``--benchmark-skip`` in addopts, ``pytest --benchmark-only`` to time."""
    pytester.makepyfile(test_bench=BENCHMARK_TEST)
    pytester.makeini("[pytest]\naddopts = --benchmark-skip\n")
    pytester.runpytest().assert_outcomes(passed=1, skipped=1)
    assert not (pytester.path / "records.json").exists()
    pytester.runpytest("--benchmark-only", "--benchmark-max-time=0").assert_outcomes(passed=1, skipped=1)
    assert (pytester.path / "records.json").exists()
    # --benchmark-disable instead: the benchmark body runs once, as a plain test
    (pytester.path / "records.json").unlink()
    pytester.runpytest("-p", "no:cacheprovider", "-o", "addopts=--benchmark-disable").assert_outcomes(passed=2)
    assert len(json.loads((pytester.path / "records.json").read_text())) == 4
    # the README's "saved, and compared with the last": autosave, then autosave and compare
    quick = ("--benchmark-only", "--benchmark-max-time=0", "--benchmark-autosave")
    pytester.runpytest(*quick).assert_outcomes(passed=1, skipped=1)
    compared = pytester.runpytest(*quick, "--benchmark-compare")
    compared.assert_outcomes(passed=1, skipped=1)
    said = compared.stdout.str() + compared.stderr.str()
    assert "Comparing against benchmarks from" in said and "Can't compare" not in said, said
    assert "test_speed (0001_" in said  # the saved run's row beside this one's


def readme_example() -> tuple[str, list[str]]:
    """The example test file of the README, and the failure it shows."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("### An example test file") :]
    code = section[section.index("```python\n") + 10 : section.index("\n```\n")]
    shown = section[section.index("```\nE   ") + 4 :]
    return code, shown[: shown.index("\n```")].splitlines()


def test_the_readme_example_test_file_runs_as_the_readme_says(pytester: pytest.Pytester) -> None:
    code, failure = readme_example()
    pytester.makepyfile(test_my_optimizer=code)
    result = pytester.runpytest("--benchmark-disable")
    smoke_problems = len(expected_ids("smoke"))
    result.assert_outcomes(passed=3 + smoke_problems, failed=1)
    result.stdout.fnmatch_lines([line.replace("E   ", "E *", 1).replace("[", "[[]") for line in failure])
