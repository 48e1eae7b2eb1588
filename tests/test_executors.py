"""Executors, shards and faults: the same records wherever jobs run, nothing lost, nothing twice.

The reference is the serial run of a small tuned suite; every other way of running it must give the
same records in every field that does not measure time. Workers and drivers are killed at random
points (seeded) and the sweep resumed; failing optimizers are recorded as failed and left out.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from adversarial import KILL_DIR, SPARED_PID
from click.testing import CliRunner

from landbench.cli import main
from landbench.planning import Shard, shard_scenarios
from landbench.ranking import rank
from landbench.runner import run_suite
from landbench.store import RESULTS_FILE, ResultStore, load_results
from landbench.suite import Suite, parse_suite

TUNED = """
name = "tiny-tuned"
seeds = [0, 1]
steps = 150
dtype = "float64"
optimizers = ["sgd", "adam"]

[metrics]
curvature = false

[tuning]
instances = [7]
seeds = [10, 11]
grid = [0.01, 0.1, 0.5]

[[problems]]
spec = "saddle(index=1)"
dims = [4, 8]

[[problems]]
spec = "quadratic(condition=10.0)"
dims = [5]

[[problems]]
spec = "rastrigin"
dims = [2]
"""
#: Fields that measure time, not outcome: the only ones allowed to differ between executors.
TIMINGS = {"wall_s", "metrics_s"}
ROOT = Path(__file__).resolve().parents[1]


def _by_key(records: list[dict]) -> dict[str, dict]:
    return {r["key"]: {k: v for k, v in r.items() if k not in TIMINGS} for r in records}


def _raw_keys(folder: Path) -> Counter:
    """How often each key appears in the folder's results file, read line by line."""
    return Counter(json.loads(line)["key"] for line in (folder / RESULTS_FILE).read_text().splitlines())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("serial")
    run_suite(parse_suite(TUNED), out, progress=False)
    return _by_key(ResultStore(out).records())


def test_processes_give_the_serial_records(reference: dict[str, dict], tmp_path: Path) -> None:
    run_suite(parse_suite(TUNED), tmp_path, progress=False, executor="processes", workers=2)
    assert _by_key(ResultStore(tmp_path).records()) == reference
    assert {r["phase"] for r in reference.values()} == {"tune", "score"}


def test_ray_gives_the_serial_records_and_retries_killed_workers(
    reference: dict[str, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'landbench[ray]')")
    for name, value in _kill_env(tmp_path).items():  # Ray's workers inherit the driver's environment
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, logging_level="error")
    try:  # one local cluster for both sweeps (the executor leaves a Ray it did not start running)
        run_suite(parse_suite(TUNED), tmp_path / "tuned", progress=False, executor="ray")
        killer = _killer_suite(random.Random(3), kills=2)
        killed = run_suite(killer, tmp_path / "killed", progress=False, executor="ray")
    finally:
        ray.shutdown()
    assert _by_key(ResultStore(tmp_path / "tuned").records()) == reference
    assert len(os.listdir(tmp_path / "kills")) == 2 and not killed.failed  # two workers died, Ray retried
    assert set(_raw_keys(tmp_path / "killed").values()) == {1}
    monkeypatch.delenv(KILL_DIR)
    run_suite(killer, tmp_path / "serial", progress=False)
    assert _by_key(ResultStore(tmp_path / "killed").records()) == _by_key(ResultStore(tmp_path / "serial").records())


def test_shards_together_hold_the_suite_once(reference: dict[str, dict], tmp_path: Path) -> None:
    suite = parse_suite(TUNED)
    parts = [shard_scenarios(suite, Shard(i, 3)) for i in (1, 2, 3)]
    assert sorted(map(str, sum(parts, []))) == sorted(map(str, suite.scenarios()))  # a partition
    assert all(parts)
    merged: list[dict] = []
    for i in (1, 2, 3):
        run_suite(suite, tmp_path / str(i), progress=False, shard=Shard(i, 3))
        merged += ResultStore(tmp_path / str(i)).records()
    scored = [r for r in merged if r["phase"] == "score"]
    assert len(scored) == len({r["key"] for r in scored})  # no scored run in two shards
    assert {k: v for k, v in _by_key(merged).items()} == reference  # each shard tuned what it scored


def test_shard_is_checked() -> None:
    for text in ("0/3", "4/3", "1/0", "a/b", "1"):
        with pytest.raises(ValueError, match="expected i/n"):
            Shard.parse(text)


def test_an_optimizer_that_raises_fails_its_job_and_the_sweep_goes_on(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    args = ["run", "--problem", "quadratic(dim=4)", "--optimizer", "adversarial:RaisingSGD(lr=0.1, at=100)"]
    args += ["--optimizer", "sgd(lr=0.1)", "--steps", "150", "--seeds", "3", "--out", out, "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "RuntimeError: RaisingSGD raises at step 100" in result.stderr
    assert "3 runs failed" in result.stderr
    records = ResultStore(out).records()
    failed = [r for r in records if r.get("failed")]
    assert len(records) == 6 and len(failed) == 3
    assert {r["failed"] for r in failed} == {"RuntimeError: RaisingSGD raises at step 100"}
    assert all("final_loss" not in r for r in failed)

    status = CliRunner().invoke(main, ["status", out])
    assert status.exit_code == 1 and "RaisingSGD raises at step 100" in status.output
    assert "seeds 0,1,2" in status.output

    ranked = CliRunner().invoke(main, ["rank", out])
    assert ranked.exit_code == 0, ranked.output
    assert "left out 3 failed runs" in ranked.stderr
    assert "RaisingSGD" not in ranked.stdout

    board = rank(ResultStore(out).records(), bootstrap=10)  # the API leaves them out too, and says so
    assert any("3 failed runs left out" in w for w in board.warnings)
    assert [s.optimizer for s in board.standings] == ["sgd(lr=0.1)"]

    again = CliRunner().invoke(main, args)  # failed runs are not retried unless asked
    assert "0 runs ran" in again.stdout
    retried = CliRunner().invoke(main, [*args, "--retry-failed"])
    assert "3 runs ran" in retried.stdout and retried.exit_code == 1
    assert len(ResultStore(out).records()) == 9  # the failures of the retry are written too ...
    assert len(load_results([out])) == 6  # ... and take the place of the first ones


def test_a_retried_failure_that_now_runs_replaces_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = parse_suite(TUNED).with_overrides(optimizers=["sgd"], problems=["quadratic(dim=3)"], tune=False)
    import landbench.jobs

    real = landbench.jobs.run_batch

    def broken(*args, **kwargs):
        raise MemoryError("out of memory on the device")

    monkeypatch.setattr(landbench.jobs, "run_batch", broken)
    first = run_suite(suite, tmp_path, progress=False)
    assert [r["failed"] for r in first.failed] == ["MemoryError: out of memory on the device"] * 2
    monkeypatch.setattr(landbench.jobs, "run_batch", real)
    assert run_suite(suite, tmp_path, progress=False).ran == 0
    retried = run_suite(suite, tmp_path, progress=False, retry_failed=True)
    assert retried.ran == 2 and not retried.failed
    assert all("final_loss" in r for r in retried.records)
    raw = ResultStore(tmp_path).records()
    assert len(raw) == 4 and sum(bool(r.get("failed")) for r in raw) == 2  # written records are never rewritten
    assert not any(r.get("failed") for r in load_results([tmp_path]))  # the run that ran wins over its failure


def test_sys_exit_in_an_optimizer_never_ends_a_sweep_with_status_0(tmp_path: Path) -> None:
    for code in (0, 3):
        out = str(tmp_path / f"exit{code}")
        args = [
            "run",
            "--problem",
            "quadratic(dim=4)",
            "--optimizer",
            f"adversarial:ExitingSGD(lr=0.1, at=70, code={code})",
        ]
        result = CliRunner().invoke(main, [*args, "--steps", "80", "--seeds", "2", "--out", out, "--no-progress"])
        assert result.exit_code == 1, result.output
        assert f"SystemExit: {code}" in result.stderr


def test_a_tuning_rate_that_raises_is_no_candidate(tmp_path: Path) -> None:
    text = TUNED.replace('optimizers = ["sgd", "adam"]', 'optimizers = ["adversarial:RaisingSGD(at=100)"]')
    text = text.replace("grid = [0.01, 0.1, 0.5]", 'grids = {"adversarial:RaisingSGD(at=100)" = [0.01, 0.1]}')
    # every rate raises (at step 100 < 150): nothing can be scored, and the run says so
    result = run_suite(parse_suite(text), tmp_path, progress=False)
    assert not result.records and result.untuned
    assert "every tuning run" in result.untuned[0][1]


def _kill_env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "kills"
    folder.mkdir()
    return {KILL_DIR: str(folder), SPARED_PID: str(os.getpid())}


def _group(pgid: int) -> list[int]:
    """The processes still alive in process group ``pgid``."""
    alive = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.getpgid(int(name)) == pgid:
                stat = Path(f"/proc/{name}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":  # a zombie has exited
                    alive.append(int(name))
        except (ProcessLookupError, FileNotFoundError):
            continue
    return alive


def _wait_until(condition, seconds: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _lines(folder: Path) -> int:
    """Complete lines in the folder's results file so far."""
    try:
        return (folder / RESULTS_FILE).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _killer_suite(rng: random.Random, kills: int) -> Suite:
    """The tiny suite, untuned, with an SGD that kills its process at a random step (after the probe)."""
    killer = f"adversarial:KillerSGD(lr=0.1, at={rng.randint(70, 140)}, kills={kills})"
    return parse_suite(TUNED).with_overrides(optimizers=[killer, "adam(lr=0.1)"], tune=False)


def test_killed_workers_are_replaced_and_every_record_is_kept_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = _killer_suite(random.Random(11), kills=2)
    for name, value in _kill_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    result = run_suite(suite, tmp_path / "out", progress=False, executor="processes", workers=2)
    assert len(os.listdir(tmp_path / "kills")) == 2  # two workers died
    assert not result.failed and result.ran == 16
    assert set(_raw_keys(tmp_path / "out").values()) == {1}
    monkeypatch.delenv(KILL_DIR)
    run_suite(suite, tmp_path / "serial", progress=False)
    assert _by_key(ResultStore(tmp_path / "out").records()) == _by_key(ResultStore(tmp_path / "serial").records())


@pytest.mark.slow  # about 11 s: three pools die in turn; the retry path is also in the killed-workers test
def test_a_worker_that_always_dies_fails_its_job_after_its_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = parse_suite(TUNED).with_overrides(
        optimizers=["adversarial:KillerSGD(lr=0.1, at=80, kills=10)"], problems=["quadratic(dim=3)"], tune=False
    )
    for name, value in _kill_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    result = run_suite(suite, tmp_path / "out", progress=False, executor="processes", workers=1)
    assert len(os.listdir(tmp_path / "kills")) == 3  # the first try and two retries
    assert [r["failed"] for r in result.failed] == [
        "WorkerDied: its worker process died 3 times (killed, out of memory, or exited)"
    ] * 2


@pytest.mark.slow  # about 20 s: SIGKILL at random points, four times; the default run stays under five minutes
def test_a_sweep_killed_at_random_points_resumes_to_every_record_once(
    reference: dict[str, dict], tmp_path: Path
) -> None:
    (tmp_path / "suite.toml").write_text(TUNED)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "landbench.cli", "run", str(tmp_path / "suite.toml"), "--out", str(out)]
    command += ["--executor", "processes", "--workers", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(5)
    total = len(reference)
    stored = [0]
    for _ in range(2):  # SIGKILL the whole sweep (driver and workers) at a random point of a job
        sweep = subprocess.Popen(
            command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wanted = rng.randint(
            stored[-1] + 1, total // 2 + 16 * len(stored)
        )  # wait for some more records, then a random moment
        deadline = time.monotonic() + 120
        while _lines(out) < wanted and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        assert sweep.poll() is None, "the sweep ended before it could be killed"
        if len(stored) == 1:  # the driver alone: its workers must not outlive it
            os.kill(sweep.pid, signal.SIGKILL)
            sweep.wait()
            assert _wait_until(lambda pgid=sweep.pid: not _group(pgid), 20), f"left running: {_group(sweep.pid)}"
        else:  # the driver and its workers at once (Ctrl-C of a terminal is a SIGINT to all of them)
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
        stored.append(len(ResultStore(out).records()))
    assert 0 < stored[1] < total and stored[1] < stored[2]  # the first kill left part of the sweep; the resume added
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    counts = _raw_keys(out)
    assert set(counts.values()) == {1}, [k for k, n in counts.items() if n > 1]
    assert _by_key(ResultStore(out).records()) == reference


def test_any_exception_but_an_interrupt_fails_its_job_on_one_line(tmp_path: Path, monkeypatch) -> None:
    import asyncio

    import landbench.jobs

    suite = parse_suite(TUNED).with_overrides(optimizers=["sgd"], problems=["quadratic(dim=3)"], tune=False)

    def cancelled(*args, **kwargs):
        raise asyncio.CancelledError("first line\n\x1b[31msecond line\x1b[0m" + "x" * 1000)

    monkeypatch.setattr(landbench.jobs, "run_batch", cancelled)
    result = run_suite(suite, tmp_path, progress=False)
    assert [r["failed"] for r in result.failed] == ["asyncio.exceptions.CancelledError: first line"] * 2

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(landbench.jobs, "run_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, tmp_path / "other", progress=False)
    assert not (tmp_path / "other" / RESULTS_FILE).exists()


def test_a_pool_whose_workers_cannot_start_is_one_error_and_stores_nothing(tmp_path: Path) -> None:
    script = tmp_path / "sweep.py"  # no `if __name__ == "__main__":`: spawned workers cannot start
    script.write_text(
        "from landbench.runner import run_suite\nfrom landbench.suite import load_suite\n"
        "suite = load_suite('smoke').with_overrides(problems=['quadratic(dim=2)'], seeds=[0], steps=5)\n"
        f"run_suite(suite, {str(tmp_path / 'out')!r}, executor='processes', workers=1, progress=False)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "could not start its worker processes" in done.stderr
    assert not (tmp_path / "out" / RESULTS_FILE).exists()


def test_executor_options_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    base = ["run", "--problem", "quadratic(dim=2)", "--optimizer", "sgd", "--seeds", "1", "--steps", "5"]
    for flags, message in [
        (["--workers", "2"], "--workers is an option of the processes executor"),
        (["--address", "h:1"], "--address is an option of the ray executor"),
        (["--executor", "processes", "--workers", "0"], "--workers"),
        (["--shard", "1/99999999999999"], "expected i/n"),
        (["--shard", "0/3"], "expected i/n"),
        (["--out", ""], "expected a folder name"),
    ]:
        out = tmp_path / "out"
        result = CliRunner().invoke(main, [*base, "--out", str(out), *flags])
        assert result.exit_code == 2 and message in result.output, (flags, result.output)
        assert "Traceback" not in result.output and not out.exists(), flags


def test_ray_addresses_are_checked_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from landbench.errors import LandbenchError
    from landbench.executors.ray import RayExecutor

    with pytest.raises(LandbenchError, match="give --device cuda"):
        RayExecutor(device="cuda:1")
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'landbench[ray]')")
    started = time.monotonic()
    with pytest.raises(LandbenchError, match="nothing answers there"), RayExecutor(address="127.0.0.1:1"):
        pass
    assert time.monotonic() - started < 30
    with pytest.raises(LandbenchError, match="expected host:port"), RayExecutor(address="nonsense"):
        pass
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # what `ray job submit` sets: that cluster, not a local one
    with pytest.raises(LandbenchError, match="127.0.0.1:1: nothing answers"), RayExecutor():
        pass


def test_many_shards_cost_nothing_and_an_empty_shard_says_so(tmp_path: Path) -> None:
    suite = parse_suite(TUNED)
    started = time.monotonic()
    assert shard_scenarios(suite, Shard(999_999, 1_000_000)) == []
    assert time.monotonic() - started < 5
    (tmp_path / "suite.toml").write_text(TUNED)
    result = CliRunner().invoke(
        main, ["run", str(tmp_path / "suite.toml"), "--shard", "50/60", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0 and "shard 50/60 of tiny-tuned has no scenarios" in result.stderr
    assert not (tmp_path / "o").exists()


def test_status_counts_the_suite_as_run_with_the_same_options(tmp_path: Path) -> None:
    (tmp_path / "suite.toml").write_text(TUNED)
    options = ["--seeds", "1", "--steps", "40", "--problem", "quadratic(dim=3)"]
    out = str(tmp_path / "out")
    assert CliRunner().invoke(main, ["run", str(tmp_path / "suite.toml"), *options, "--out", out]).exit_code == 0
    done = CliRunner().invoke(main, ["status", out, str(tmp_path / "suite.toml"), *options])
    assert done.exit_code == 0 and "14 runs done, 0 failed, 0 missing of 14" in done.output  # 2x(3x2) tuning + 2
    partial = CliRunner().invoke(main, ["status", out, str(tmp_path / "suite.toml"), "--steps", "40"])
    assert partial.exit_code == 1 and "missing" in partial.output
    empty = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert empty.exit_code == 2 and "no results in" in empty.output


def test_ray_without_a_gpu_refuses_cuda_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'landbench[ray]')")
    from landbench.errors import LandbenchError
    from landbench.executors.ray import RayExecutor

    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # a cluster already there, as on a head node
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0})
    with pytest.raises(LandbenchError, match="the Ray cluster has no GPU"), RayExecutor(device="cuda"):
        pass


def test_processes_pin_one_worker_per_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import queue

    from landbench.executors import processes
    from landbench.jobs import make_job

    monkeypatch.setattr(processes, "visible_gpus", lambda: ["3", "5"])
    monkeypatch.setattr(processes, "available_cores", lambda: 16)
    monkeypatch.setattr(processes.torch, "get_num_threads", lambda: 16)
    pool = processes.ProcessExecutor(device="cuda")
    assert (pool.workers, pool.gpus, pool.threads) == (2, ["3", "5"], 8)
    one = processes.ProcessExecutor(device="cuda:1")
    assert (one.workers, one.gpus) == (1, ["5"])
    three = processes.ProcessExecutor(device="cuda", workers=3)  # more workers than GPUs: dealt in turn
    assert three.gpus == ["3", "5", "3"]
    with pytest.raises(ValueError, match="2 GPUs are visible"):
        processes.ProcessExecutor(device="cuda:2")
    scenario = parse_suite(TUNED).scenarios()[0]
    job = make_job("score", scenario, [scenario.optimizer], [0], "cuda:1")
    assert pool._pinned(job).device == "cuda" and pool._pinned(job).keys == job.keys  # its only GPU
    gpus: queue.Queue[str] = queue.Queue()
    gpus.put("5")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5")
    monkeypatch.setattr(processes, "_die_with_parent", lambda: None)
    monkeypatch.setattr(processes.signal, "signal", lambda *args: None)
    monkeypatch.setattr(processes.torch, "set_num_threads", lambda n: None)
    processes._init_worker(gpus, 8)  # what a new worker does first
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    cpu = processes.ProcessExecutor(device="cpu", workers=32)
    assert cpu.threads == 1 and "32 worker processes on 16 cores" in cpu.warnings()[0]


def test_third_party_optimizers_give_the_serial_records_on_worker_processes(tmp_path: Path) -> None:
    """What users bring (pytorch-optimizer, batched, per tensor and separate modes) on the pool."""
    pytest.importorskip("pytorch_optimizer", reason="pytorch-optimizer is not installed")
    optimizers = [
        "pytorch_optimizer:Lamb(lr=0.01)",
        "pytorch_optimizer:AdaBelief(lr=0.01)",
        "pytorch_optimizer:Prodigy",
    ]
    suite = parse_suite(TUNED).with_overrides(optimizers=optimizers, problems=["saddle(dim=6)"], tune=False)
    run_suite(suite, tmp_path / "serial", progress=False)
    run_suite(suite, tmp_path / "pool", progress=False, executor="processes", workers=2)
    serial = _by_key(ResultStore(tmp_path / "serial").records())
    assert len(serial) == 6 and not any(r.get("failed") for r in serial.values())
    assert _by_key(ResultStore(tmp_path / "pool").records()) == serial
