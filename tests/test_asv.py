"""The asv suite (asv.conf.json, benchmarks/) and the user-facing landbench.asv_tracking.

The asv commands run as subprocesses with ``--python=same`` (the current environment, nothing is
built or installed), with ``HOME`` and every asv folder in a temporary directory, so that neither
the repository nor ``~/.asv-machine.json`` is touched.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# asv is in the test extra: a missing asv fails here rather than skipping these tests unnoticed.
import asv as _asv_installed  # noqa: F401
import asv_runner  # noqa: F401
import numpy as np
import pytest

import landbench
from landbench.asv_tracking import METRICS, LandbenchScores, escape_steps

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "landbench" / "references" / "baselines.jsonl.gz"


def asv(*args: str, cwd: Path, home: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python -m asv ARGS`` with HOME in a temporary folder."""
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": ""}
    return subprocess.run(
        [sys.executable, "-m", "asv", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def asv_home(tmp_path_factory: pytest.TempPathFactory, tmp_config: Path) -> Path:
    """A HOME with a machine file, as ``asv machine --yes`` writes it on a fresh CI machine."""
    home = tmp_path_factory.mktemp("asv_home")
    done = asv("machine", "--yes", "--machine", "ci", "--config", str(tmp_config), cwd=ROOT, home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / ".asv-machine.json").exists()
    return home


@pytest.fixture(scope="module")
def tmp_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's asv.conf.json with its env, results and html folders moved to a temp dir."""
    from asv.util import load_json

    folder = tmp_path_factory.mktemp("asv_conf")
    conf = load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(ROOT / "benchmarks"),
        env_dir=str(folder / "env"),
        results_dir=str(folder / "results"),
        html_dir=str(folder / "html"),
    )
    path = folder / "asv.conf.json"
    path.write_text(json.dumps(conf))
    return path


# (a) and (b): the repository's suite under asv itself.


def test_asv_check_passes(asv_home: Path, tmp_config: Path) -> None:
    done = asv("check", "--python=same", "--config", str(tmp_config), cwd=ROOT, home=asv_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No problems found" in done.stdout


def test_asv_quick_run_has_no_failures(asv_home: Path, tmp_config: Path) -> None:
    """``asv run --python=same --quick`` over the whole suite, as CI must run it: every benchmark once,
    the skip of pspin at d = 1000 saying why, and the quality classes through asv's setup_cache (a
    separate process whose pickled numbers the track_ methods read)."""
    done = asv(
        "run", "--python=same", "--quick", "--dry-run", "--show-stderr",
        "--config", str(tmp_config), cwd=ROOT, home=asv_home, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "failed" not in out, out
    for name in (
        "LandscapeEvaluation.time_loss_and_grad",
        "LandscapeEvaluation.peakmem_loss_and_grad",
        "OptimizerSteps.time_steps",
        "OptimizerStepCost.time_steps",
        "SaddleEscape.track_escape_steps",
        "ClassicalGap.track_loss_gap",
        "WideBasin.track_basin_miss",
    ):
        assert name in out, out
    assert "4 GB at N = 1000" in out  # the skipped combination says why
    assert not (ROOT / ".asv" / "results" / "ci").exists()


# (c) a track_ benchmark is the number the records give, computed independently.


@pytest.fixture(scope="module")
def quality():  # noqa: ANN201 - the module object
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_quality
    finally:
        sys.path.remove(str(ROOT))
    return bench_quality


def _tuned(label: str, family: str) -> str:
    """The optimizer spec the shipped baselines chose, read straight from the gzipped records."""
    with gzip.open(BASELINES, "rt") as lines:
        for line in lines:
            record = json.loads(line)
            if record["label"] == label and record["tuning"]["family"] == family:
                return record["optimizer"]
    raise LookupError((label, family))


def test_escape_track_equals_the_median_of_the_records(quality) -> None:  # noqa: ANN001
    bench = quality.SaddleEscape()
    problem = bench.problems[0]
    cache = bench.setup_cache()
    for label in ("gd", "adam"):
        records = landbench.run(
            problem, _tuned(label, "saddle"), seeds=bench.seeds, steps=bench.steps, dtype="float64", curvature=False
        )
        steps = np.array([r["escape_step"] for r in records], dtype=float)
        assert all(r["escaped"] for r in records)  # so that the plain median is the right one
        assert bench.track_escape_steps(cache, label, problem) == float(np.median(steps))


def test_basin_track_equals_the_miss_share_of_the_records(quality) -> None:  # noqa: ANN001
    bench = quality.WideBasin()
    problem = bench.problems[0]
    cache = bench.setup_cache()
    for label in ("gd", "adam"):
        records = landbench.run(problem, _tuned(label, "basins"), seeds=bench.seeds, steps=bench.steps, dtype="float64")
        basins = np.array([-1 if r["basin"] is None else r["basin"] for r in records])
        miss = float(np.mean(basins != 0))  # well 0, (1, 1), is the wide one of the default wells
        sharp = float(np.median([r["sharpness"] for r in records]))
        assert bench.track_basin_miss(cache, label, problem) == pytest.approx(miss, abs=1e-12)
        assert bench.track_sharpness(cache, label, problem) == pytest.approx(sharp, rel=1e-12)
        assert 0 < miss < 1  # the problem separates the runs (a share of 0 would track nothing)


# (e) units and larger-is-worse.


def test_units_and_larger_is_worse(quality) -> None:  # noqa: ANN001
    units = {"escape_steps": "steps", "loss_gap": "loss", "basin_miss": "fraction", "sharpness": "curvature"}
    for metric, unit in units.items():
        assert METRICS[metric][1] == unit
        assert getattr(LandbenchScores, f"track_{metric}").unit == unit
    assert quality.WideBasin.track_basin_miss.unit == "fraction"
    # Only the selected metrics are benchmarks of a class (the others are not functions).
    assert quality.SaddleEscape.track_basin_miss is None and callable(quality.SaddleEscape.track_escape_steps)
    # basin_miss counts the runs that did NOT end in the wide basin: all in it -> 0, none -> 1.
    basins = landbench.make("basins(dim=2)")
    assert METRICS["basin_miss"][0]([{"basin": 0}] * 4, basins) == 0.0
    assert METRICS["basin_miss"][0]([{"basin": 1}, {"basin": None}], basins) == 1.0


def test_censored_escape_is_nan_never_a_number() -> None:
    saddle = landbench.make("saddle(dim=10)")
    escaped = [{"escaped": True, "escape_step": 10 + i, "diverged": False} for i in range(5)]
    runs = escaped + [{"escaped": False, "escape_step": None, "diverged": False}] * 3
    assert escape_steps(runs, saddle) == 13.5  # 5 of 8 escaped: the median (13 + 14) / 2 is real
    assert math.isnan(escape_steps(runs[2:], saddle))  # 3 of 6 escaped: the median is censored
    records = landbench.run("saddle(dim=100, index=3)", "gd(lr=0.0001)", seeds=4, steps=20, curvature=False)
    assert not any(r["escaped"] for r in records)
    assert math.isnan(escape_steps(records, landbench.make("saddle(dim=100, index=3)")))
    # Runs that escaped and then diverged are not fast escapes: at lr 3 gradient descent leaves the
    # saddle at once (|1 + 3| growth along the unstable direction) and blows up (|1 - 3| = 2 along the
    # stable ones, then the quartic), so all four runs have an escape step and all diverge.
    blown = landbench.run("saddle(dim=10)", "gd(lr=3.0)", seeds=4, steps=100, curvature=False)
    assert all(r["escaped"] and r["diverged"] for r in blown)
    assert math.isnan(escape_steps(blown, saddle))
    assert escape_steps(escaped + [{**escaped[0], "diverged": True}] * 2, saddle) == 13.0  # 5 real of 7
    # A problem without a saddle has no escape at all.
    assert math.isnan(escape_steps(landbench.run("quadratic(dim=4)", "gd(lr=0.1)", seeds=2, steps=5), saddle))


# (d) the user-facing base class in a fresh project.

USER_BENCHMARKS = """
from landbench.asv_tracking import LandbenchScores


class MyOptimizerScores(LandbenchScores):
    optimizers = ["sgd(lr=0.05, momentum=0.9)", "adam(lr=0.05)"]
    problems = ["saddle(dim=10)", "rosenbrock(dim=4)"]
    seeds = 4
    steps = 200
    metrics = ("escape_steps", "loss_gap")


class OnBasins(LandbenchScores):
    optimizers = ["gd(lr=0.1)"]
    problems = ["basins(dim=2)"]
    seeds = 4
    steps = 100
    metrics = ("basin_miss",)
"""


def _discover(folder: Path) -> list:
    """asv_runner's discovery, in this process, of the suite in ``folder`` (a package named "benchmarks",
    which the repository's own suite, imported above, also is: it is set aside meanwhile)."""
    from asv_runner.discovery import disc_benchmarks

    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == folder.name}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(folder.parent))
    try:
        return list(disc_benchmarks(str(folder)))
    finally:
        sys.path.remove(str(folder.parent))
        for name in [n for n in sys.modules if n.split(".")[0] == folder.name]:
            del sys.modules[name]
        sys.modules.update(saved)


def test_user_project_subclasses_the_base_class(asv_home: Path, tmp_path: Path) -> None:
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "bench_landbench.py").write_text(textwrap.dedent(USER_BENCHMARKS))
    conf = {"version": 1, "project": "myopt", "repo": ".", "environment_type": "virtualenv"}
    conf |= {"benchmark_dir": "benchmarks", "env_dir": ".asv/env", "results_dir": ".asv/results"}
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    done = asv("check", "--python=same", cwd=tmp_path, home=asv_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No problems found" in done.stdout

    # What asv discovers there: the subclasses' inherited track_ methods (only the selected
    # metrics), not the base class, each class with a setup_cache key of its own.
    found = {b.name: b for b in _discover(tmp_path / "benchmarks")}
    assert sorted(found) == [
        "bench_landbench.MyOptimizerScores.track_escape_steps",
        "bench_landbench.MyOptimizerScores.track_loss_gap",
        "bench_landbench.OnBasins.track_basin_miss",
    ]
    assert found["bench_landbench.OnBasins.track_basin_miss"].unit == "fraction"
    assert found["bench_landbench.MyOptimizerScores.track_loss_gap"].params == [
        ["'sgd(lr=0.05, momentum=0.9)'", "'adam(lr=0.05)'"],
        ["'saddle(dim=10)'", "'rosenbrock(dim=4)'"],
    ]
    keys = {name.split(".")[1]: b.setup_cache_key for name, b in found.items()}
    assert keys["MyOptimizerScores"] != keys["OnBasins"]
    line = 1 + textwrap.dedent(USER_BENCHMARKS).splitlines().index("class OnBasins(LandbenchScores):")
    assert keys["OnBasins"] == f"bench_landbench:{line}"  # the module and the line of the class


def test_subclasses_get_their_own_cache_and_version() -> None:
    class First(LandbenchScores):
        optimizers = ["gd(lr=0.1)"]
        problems = ["quadratic(dim=3)"]
        steps = 5
        seeds = 2

        metrics = ("loss_gap", "diverged")

    class Second(First):
        steps = 6
        metrics = ("loss_gap", "sharpness")

    scores = Second().setup_cache()
    assert set(scores) == {
        ("loss_gap", "gd(lr=0.1)", "quadratic(dim=3)"),
        ("sharpness", "gd(lr=0.1)", "quadratic(dim=3)"),
    }
    assert First.track_sharpness is None and callable(Second.track_sharpness)  # a child may track more
    assert First.setup_cache is not Second.setup_cache
    assert First.version != Second.version  # a changed budget starts a new asv series
    with pytest.raises(TypeError, match="must give dim"):
        type("Bad", (LandbenchScores,), {"optimizers": ["gd"], "problems": ["saddle"]})
