"""The asv suite (asv.conf.json, benchmarks/) and the user-facing landbench.asv_tracking.

The asv commands run as subprocesses with ``HOME`` and every asv folder in a temporary directory, so
that neither the repository nor ``~/.asv-machine.json`` is touched. The repository's suite runs with
``--python=same`` (the current environment, nothing is built or installed). The README's recipe for
a user's own repository (section (f)) runs as written in a temporary repository: with
``--python=same`` in a temporary virtualenv layered over this environment (so that its installs
stay out of it), and, marked ``slow``, in environments that asv builds itself.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

# asv is in the test extra: a missing asv fails here rather than skipping these tests unnoticed.
import asv as _asv_installed  # noqa: F401
import asv_runner  # noqa: F401
import numpy as np
import pytest
import torch

import landbench
from landbench.asv_tracking import METRICS, LandbenchScores, escape_steps, reference_spec

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


@pytest.mark.slow  # about 11 s; the quick run below imports and runs every benchmark of the suite
def test_asv_check_passes(asv_home: Path, tmp_config: Path) -> None:
    done = asv("check", "--python=same", "--config", str(tmp_config), cwd=ROOT, home=asv_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No problems found" in done.stdout


def test_asv_quick_run_has_no_failures(asv_home: Path, tmp_config: Path) -> None:
    """``asv run --python=same --quick`` over the suite, as CI must run it: every benchmark once,
    the skip of pspin at d = 1000 saying why, and the quality classes through asv's setup_cache (a
    separate process whose pickled numbers the track_ methods read). ``bench_table`` (32 timings of
    up to 2 x 10^6 with the metrics, about 30 s more) runs here in process on its smallest size, and
    through asv under the ``slow`` marker."""
    done = asv(
        "run", "--python=same", "--quick", "--dry-run", "--show-stderr", "--bench", "^(?!bench_table)",
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


@pytest.mark.slow
def test_asv_quick_run_of_the_bench_table(asv_home: Path, tmp_config: Path) -> None:
    """The table of ``landbench bench`` through asv itself: every size, optimizer and way once."""
    done = asv(
        "run", "--python=same", "--quick", "--dry-run", "--show-stderr", "--bench", "bench_table",
        "--config", str(tmp_config), cwd=ROOT, home=asv_home, timeout=600,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "failed" not in out, out
    assert "BenchTable.time_way" in out and "BenchRatios.track_run_over_hand" in out, out


def test_the_bench_table_runs_every_way_on_its_smallest_size() -> None:
    """What asv calls, in process: setup, one timing and teardown of each way and optimizer at
    256 x 10, leaving the process's thread count as it was."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_table
    finally:
        sys.path.remove(str(ROOT))
    before = torch.get_num_threads()
    size = next(iter(bench_table.LABELS))
    for optimizer in bench_table.BenchTable.params[1]:
        for way in bench_table.WAYS:
            bench = bench_table.BenchTable()
            bench.setup(size, optimizer, way)
            bench.time_way(size, optimizer, way)
            bench.teardown(size, optimizer, way)
    assert torch.get_num_threads() == before


def test_bench_table_has_the_sizes_of_landbench_bench() -> None:
    """benchmarks/bench_table.py keeps its own list of sizes (asv needs the same parameters at every
    commit): it is the table that ``landbench bench`` measures."""
    from landbench.bench import OPTIMIZERS, SIZES

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_table
    finally:
        sys.path.remove(str(ROOT))
    assert [tuple(size) for size in bench_table.SIZES] == list(SIZES)
    assert bench_table.BenchTable.params[1] == list(OPTIMIZERS)


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
    misses = []
    for label in ("gd", "adam"):
        records = landbench.run(problem, _tuned(label, "basins"), seeds=bench.seeds, steps=bench.steps, dtype="float64")
        basins = np.array([-1 if r["basin"] is None else r["basin"] for r in records])
        miss = float(np.mean(basins != 0))  # well 0, (1, 1), is the wide one of the default wells
        sharp = float(np.median([r["sharpness"] for r in records]))
        assert bench.track_basin_miss(cache, label, problem) == pytest.approx(miss, abs=1e-12)
        assert bench.track_sharpness(cache, label, problem) == pytest.approx(sharp, rel=1e-12)
        misses.append(miss)
    # the problem separates the runs of at least one classic (shares of 0 everywhere would track nothing)
    assert any(0 < miss < 1 for miss in misses)


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
    assert METRICS["basin_miss"][0](_basin_records([0, 0, 0, 0]), basins) == 0.0
    assert METRICS["basin_miss"][0](_basin_records([1, None]), basins) == 1.0


def _basin_records(basins: list[int | None]) -> list[dict]:
    """Records of real runs on ``basins(dim=2)`` (well 0, at (1, 1), is the wide one), with the basin
    each ended in set to ``basins``: the one field these tests vary."""
    runs = landbench.run("basins(dim=2)", "gd(lr=0.1)", seeds=len(basins), steps=20, curvature=False)
    assert not any(r["diverged"] for r in runs)
    return [{**r, "basin": basin} for r, basin in zip(runs, basins)]


def test_censored_escape_is_nan_never_a_number() -> None:
    saddle = landbench.make("saddle(dim=10)")
    escaped = [{"escaped": True, "escape_step": 10 + i, "diverged": False} for i in range(5)]
    runs = escaped + [{"escaped": False, "escape_step": None, "diverged": False}] * 3
    assert escape_steps(runs, saddle) == 13.5  # 5 of 8 escaped: the median (13 + 14) / 2 is real
    assert math.isnan(escape_steps(runs[2:], saddle))  # 3 of 6 escaped: the median is censored
    records = landbench.run("saddle(dim=100, index=3)", "gd(lr=0.0001)", seeds=4, steps=20, curvature=False)
    assert not any(r["escaped"] for r in records)
    assert math.isnan(escape_steps(records, landbench.make("saddle(dim=100, index=3)")))
    # Runs that escaped and then diverged are not escapes: at lr 3 gradient descent leaves the saddle
    # at once (|1 + 3| growth along the unstable direction) and blows up (|1 - 3| = 2 along the
    # stable ones, then the quartic), so all four runs diverge, and a diverged run escaped nothing.
    blown = landbench.run("saddle(dim=10)", "gd(lr=3.0)", seeds=4, steps=100, curvature=False)
    assert all(r["diverged"] and not r["escaped"] and r["escape_step"] is None for r in blown)
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


def test_class_creation_refuses_what_setup_cache_would_fail_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything that would make ``setup_cache`` fail (which asv shows as a bare "failed" without -e)
    fails when the class is created, that is when asv imports the module, with the reason."""

    def make(**settings: object) -> type:
        return type("Mine", (LandbenchScores,), {"optimizers": ["adam"], "problems": ["saddle(dim=10)"], **settings})

    with pytest.raises(TypeError) as missing:
        make(optimizers=["adam", "not_installed_pkg.optim:MyOpt(lr=0.01)"])
    message = str(missing.value)
    assert "Mine.optimizers: 'not_installed_pkg.optim:MyOpt(lr=0.01)'" in message
    assert "the package 'not_installed_pkg' is not installed in this environment" in message
    assert sys.executable in message and "python -m pip install -e ." in message and "matrix.req" in message
    assert "\n" not in message
    # A module that exists but imports a package that is missing names that package.
    (tmp_path / "needs_a_dependency.py").write_text("import not_installed_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="the package 'not_installed_dependency' is not installed"):
        make(optimizers=["needs_a_dependency:Opt"])
    with pytest.raises(TypeError, match=r"Mine.optimizers: 'adam\(betaz=\(0.9, 0.9\)\)': .*did you mean 'betas'"):
        make(optimizers=["adam(betaz=(0.9, 0.9))"])
    with pytest.raises(TypeError, match=r"unknown optimizer 'adamm' \(did you mean 'adam'\?\).*entry-point group"):
        make(optimizers=["adamm"])
    with pytest.raises(TypeError, match="module 'torch.optim' has no attribute 'Adamm'"):
        make(optimizers=["torch.optim:Adamm"])
    with pytest.raises(TypeError, match=r"Mine.problems: saddle: unknown parameter 'indx' \(did you mean 'index'\?\)"):
        make(problems=["saddle(dim=10, indx=2)"])
    with pytest.raises(TypeError, match="Mine.dtype: unknown dtype 'float16x'"):
        make(dtype="float16x")
    with pytest.raises(TypeError, match=r"Mine.noise_model: noise_model must be one of gaussian"):
        make(noise_model="cauchy")
    # optimizer_spec is checked for every problem: a label the shipped baselines lack is refused.
    with pytest.raises(TypeError, match=r"Mine.optimizers: 'adamx' on 'saddle\(dim=10\)': no tuned rate"):
        make(optimizers=["adamx"], optimizer_spec=lambda self, optimizer, problem: reference_spec(optimizer, problem))
    # What a user brings passes: a third-party class by import path, and labels through optimizer_spec.
    make(optimizers=["pytorch_optimizer:Lion(lr=0.001)", "adam(lr=0.01)"], problems=["rosenbrock(dim=4)"])
    make(optimizers=["adam", "gd"], optimizer_spec=lambda self, optimizer, problem: reference_spec(optimizer, problem))


# (f) The README's recipe for a user's own repository, run exactly as written, in a stranger's
# repository: a package of their own (mypkg, with an optimizer MyOpt), a checkout of landbench
# beside it, and the README's asv.conf.json, benchmarks/bench_landbench.py and commands.

README = ROOT / "README.md"
RECIPE_HEADING = "### Tracking your optimizer's landbench scores with asv"

#: The stranger's own package: what a user brings, not part of the recipe.
MYPKG_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "mypkg"
version = "0.1.0"
dependencies = ["torch"]
"""

MYPKG_OPTIM = '''\
import torch


class MyOpt(torch.optim.Optimizer):
    """{doc}"""

    def __init__(self, params, lr=0.01):
        super().__init__(params, {{"lr": lr}})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_({update}, alpha=-group["lr"])
'''

#: Two versions of MyOpt, one per commit of the stranger's repository (both elementwise and stable).
SIGN_STEP = {"doc": "Sign descent: every coordinate moves by lr.", "update": "p.grad.sign()"}
CLIPPED_STEP = {"doc": "Gradient descent with each coordinate clipped to [-1, 1].", "update": "p.grad.clamp(-1.0, 1.0)"}


def readme_recipe() -> dict[str, str]:
    """The code blocks of the README's recipe, by role: the layout, the asv.conf.json, the benchmark
    module, the commands for ``--python=same``, the commands for environments that asv builds, and
    the error that asv shows when the user's package is missing."""
    text = README.read_text()
    start = text.index(RECIPE_HEADING)
    section = text[start : text.index("\n## ", start)]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", section, flags=re.M | re.S)
    assert [language for language, _ in blocks] == ["text", "json", "python", "bash", "bash", "text"], blocks
    return dict(zip(("layout", "conf", "benchmarks", "same", "built", "error"), (body for _, body in blocks)))


def _git(repo: Path, *args: str) -> str:
    identity = ("-c", "user.name=Stranger", "-c", "user.email=stranger@example.invalid")
    return subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _copy_checkout(dest: Path) -> None:
    """This checkout's working tree (tracked and untracked files, not ignored ones) copied to ``dest``:
    the landbench checkout that the recipe expects beside the user's repository."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    for name in filter(None, names.split("\0")):
        if (ROOT / name).is_file():  # a file deleted in the working tree is still listed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)


def stranger_repository(tmp: Path, recipe: dict[str, str], steps: list[dict[str, str]], landbench: bool = True) -> Path:
    """The user's repository as the README lays it out, one commit of MyOpt per entry of ``steps``,
    with a copy of this checkout beside it as ``landbench`` (when ``landbench``)."""
    for path in ("pyproject.toml", "optim.py", "asv.conf.json", "bench_landbench.py", "landbench/"):
        assert path in recipe["layout"], path
    if landbench:
        _copy_checkout(tmp / "landbench")
    repo = tmp / "mypkg"
    for folder in ("mypkg", "benchmarks"):
        (repo / folder).mkdir(parents=True)
        (repo / folder / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text(MYPKG_PYPROJECT)
    (repo / "asv.conf.json").write_text(recipe["conf"])
    (repo / "benchmarks" / "bench_landbench.py").write_text(recipe["benchmarks"])
    (repo / ".gitignore").write_text(".asv/\n")
    _git(repo, "init", "-q", "-b", "main")
    for step in steps:
        (repo / "mypkg" / "optim.py").write_text(MYPKG_OPTIM.format(**step))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", step["doc"])
    return repo


def user_home(tmp: Path) -> Path:
    """A temporary HOME that keeps this machine's pip settings (its package indexes), nothing else."""
    home = tmp / "home"
    for name in (".config/pip/pip.conf", ".pip/pip.conf"):
        if (Path.home() / name).is_file():
            (home / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path.home() / name, home / name)
    home.mkdir(exist_ok=True)
    return home


def user_environment(path: Path) -> Path:
    """A virtualenv that stands for the user's own environment: its own site-packages, where the
    recipe installs landbench and the user's package, over this environment's packages (torch, asv,
    ...) without this checkout's editable landbench (a plain path in a .pth file runs no finder).
    ``asv`` on its PATH runs asv with its python, as ``pip install asv`` there would."""
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", str(path)], check=True, capture_output=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "this_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shim = path / "bin" / "asv"
    shim.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m asv "$@"\n')
    shim.chmod(0o755)
    return path


def run_block(script: str, cwd: Path, home: Path, path_first: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """A bash block of the README, line by line as a user would type it (stopping at the first failure)."""
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": "", "PATH": f"{path_first}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        ["bash", "-euxo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _quick_table(out: str, benchmark: str) -> dict[tuple[str, str], str]:
    """The (optimizer, problem) -> value rows that ``asv run --quick`` prints under ``benchmark``."""
    section = out.split(f"{benchmark} ", 1)[1].split("···", 3)[1]
    rows = {}
    for line in section.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 3 and "(" in cells[0]:
            rows[(cells[0], cells[1])] = cells[2]
    return rows


def _median_gap(module_source: str, folder: Path, name: str, problem: str) -> float:
    """The median final loss gap of MyOpt (as ``module_source`` defines it) on ``problem``, 8 seeds of
    1000 steps in float32 as the README's class runs it, from records computed here."""
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(module_source)
    sys.path.insert(0, str(folder))
    try:
        records = landbench.run(
            problem, f"{name}:MyOpt(lr=0.01)", seeds=8, steps=1000, dtype="float32", curvature=False
        )
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)
    assert not any(r["diverged"] for r in records)
    return float(np.median([r["loss_gap"] for r in records]))


def test_readme_recipe_parses_as_the_readme_says(tmp_path: Path) -> None:
    """The asv.conf.json block is what asv reads (comments included) and names the user's package and
    landbench as the README says; the matrix entries become the pip arguments the README promises."""
    from asv.util import ParsedPipDeclaration, load_json

    recipe = readme_recipe()
    (tmp_path / "asv.conf.json").write_text(recipe["conf"])
    conf = load_json(str(tmp_path / "asv.conf.json"), js_comments=True)
    assert conf["project"] == "mypkg" and conf["repo"] == "."
    assert "mypkg.optim:MyOpt" in recipe["benchmarks"]
    req = conf["matrix"]["req"]
    assert req == {"torch": ["2.13.0"], "landbench": ["../landbench"]}

    def pip_target(name: str, value: str) -> str:
        parsed = ParsedPipDeclaration(f"{name} {value}")  # how asv 0.6 turns a matrix entry into pip's argument
        return parsed.path or f"{parsed.pkgname}{parsed.specification or ''}"

    assert pip_target("torch", "2.13.0") == "torch==2.13.0"
    assert pip_target("landbench", "../landbench") == "../landbench"
    assert pip_target("landbench", "./landbench") == "./landbench"
    url = "git+https://github.com/OWNER/landbench.git"
    assert pip_target("landbench", url) == url and pip_target("landbench", f"{url}@v0.1.0") == f"{url}@v0.1.0"
    # What the README warns about: a longer path is cut after its first folder.
    assert pip_target("landbench", "/home/me/src/landbench") == "/home/"


def test_readme_recipe_without_the_users_package_says_what_to_install(asv_home: Path, tmp_path: Path) -> None:
    """asv run without the user's package installed: the reason shows without -e (asv used to print
    only "Setting up ... failed"), naming the missing package and how to install it."""
    recipe = readme_recipe()
    repo = stranger_repository(tmp_path, recipe, [SIGN_STEP], landbench=False)
    done = asv("run", "--python=same", "--quick", "--machine", "ci", cwd=repo, home=asv_home)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "MyOptimizerScores.optimizers: 'mypkg.optim:MyOpt(lr=0.01)'" in out, out
    assert "the package 'mypkg' is not installed in this environment" in out, out
    assert "python -m pip install -e ." in out, out
    # The README shows this message (wrapped, with the interpreter's path and the end left out).
    shown = " ".join(recipe["error"].split())
    before, _, after = shown.partition("/path/to/python")
    assert before in out and after.removesuffix("...") in out, (shown, out)


def test_readme_recipe_with_python_same(tmp_path: Path) -> None:
    """The README's ``--python=same`` commands in a stranger's repository and environment: they install
    landbench from the checkout beside it and the user's package, and every benchmark runs."""
    recipe = readme_recipe()
    repo = stranger_repository(tmp_path, recipe, [SIGN_STEP])
    venv = user_environment(tmp_path / "venv")
    started = time.perf_counter()
    done = run_block(recipe["same"], repo, user_home(tmp_path), venv / "bin", timeout=600)
    elapsed = time.perf_counter() - started
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "failed" not in out and "Traceback" not in out, out
    assert "Successfully installed landbench-" in out and "mypkg-" in out, out
    print(f"README recipe with --python=same: {elapsed:.0f} s")  # shown with -s; see the README's timings

    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import landbench, mypkg; print(landbench.__file__); print(mypkg.__file__)"],
        cwd=venv, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(venv) and Path(where[1]).is_relative_to(repo), where  # as the recipe says

    for metric in ("escape_steps", "loss_gap", "basin_miss", "sharpness", "diverged"):
        assert f"MyOptimizerScores.track_{metric} " in out, out  # asv shortens long names from the left
    assert "AgainstTheClassics.track_escape_steps " in out, out
    gaps = _quick_table(out, "MyOptimizerScores.track_loss_gap")
    problem = "rosenbrock(dim=10)"
    expected = _median_gap(MYPKG_OPTIM.format(**SIGN_STEP), tmp_path / "independent", "sign_step", problem)
    assert float(gaps[("mypkg.optim:MyOpt(lr=0.01)", problem)]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_readme_recipe_in_environments_that_asv_builds(tmp_path: Path) -> None:
    """The README's commands for environments that asv builds, in a stranger's repository with two
    commits of MyOpt: asv creates a virtualenv with torch==2.13.0 and landbench from the checkout
    beside the repository, installs the user's package at each commit, and each commit's numbers are
    its own MyOpt's (the medians of records computed here), while Adam's stay the same."""
    from asv.results import iter_results

    recipe = readme_recipe()
    steps = [CLIPPED_STEP, SIGN_STEP]
    repo = stranger_repository(tmp_path, recipe, steps)
    started = time.perf_counter()
    done = run_block(recipe["built"], repo, user_home(tmp_path), Path(sys.executable).parent, timeout=1500)
    elapsed = time.perf_counter() - started
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "failed" not in out and "Traceback" not in out, out
    print(f"README recipe in environments that asv builds: {elapsed:.0f} s")  # shown with -s

    # One environment, holding torch 2.13.0 and landbench installed from the checkout (not this editable one).
    (env,) = (repo / ".asv" / "env").iterdir()
    where = subprocess.run(
        [env / "bin" / "python", "-c", "import landbench, torch; print(landbench.__file__); print(torch.__version__)"],
        cwd=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(env) and where[1].startswith("2.13.0"), where

    # Both commits measured (asv run NEW), each with its own MyOpt.
    commits = _git(repo, "rev-list", "--reverse", "main").split()
    key = "bench_landbench.MyOptimizerScores.track_loss_gap"
    gaps = {}
    for result in iter_results(str(repo / ".asv" / "results")):
        params = result.get_result_params(key)
        gaps[result.commit_hash] = dict(zip(itertools.product(*params), result.get_result_value(key, params)))
    assert sorted(gaps) == sorted(commits)
    mine, adam, problem = "'mypkg.optim:MyOpt(lr=0.01)'", "'adam(lr=0.01)'", "'rosenbrock(dim=10)'"
    for commit, step in zip(commits, steps):
        source = MYPKG_OPTIM.format(**step)
        expected = _median_gap(source, tmp_path / "independent", f"step_{commit[:8]}", problem.strip("'"))
        assert gaps[commit][(mine, problem)] == pytest.approx(expected, rel=1e-6), step["doc"]
    first, second = (gaps[c] for c in commits)
    assert first[(mine, problem)] != pytest.approx(second[(mine, problem)], rel=1e-3)  # the user's commits show
    assert first[(adam, problem)] == second[(adam, problem)]  # landbench and torch stay put
    assert (repo / ".asv" / "html" / "index.html").is_file()  # asv publish


def test_a_noise_model_reaches_the_runs_and_the_asv_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """``noise_model`` is passed to every run, and enters the settings string (asv's version) only
    when it is not gaussian, so that the versions of existing benchmarks stay as they were."""
    import landbench.asv_tracking as tracking

    seen: list[object] = []
    real = tracking.run

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("noise_model"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tracking, "run", spy)
    attrs = {"optimizers": ["sgd(lr=0.1)"], "problems": ["saddle(dim=4)"], "seeds": 2, "steps": 20}
    heavy = type("Heavy", (LandbenchScores,), {**attrs, "noise": 0.1, "noise_model": "student_t(nu=3)"})
    plain = type("Plain", (LandbenchScores,), attrs)
    heavy().compute_scores()
    assert seen == ["student_t(nu=3)"]
    assert tracking._settings(heavy).endswith("noise_model='student_t(nu=3.0)'")
    assert "noise_model" not in tracking._settings(plain)
