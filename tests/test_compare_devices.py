"""Matching and comparing one suite's records from two devices: ``landbench.records.key_on`` and
``scripts/compare_devices.py`` (the last step of ``scripts/gpu_check.sh``).

No GPU here: "another device" is the same suite run with every start coordinate moved by about two
units in the last place of float32, which is what another device's rounding does to a run (it
contracts away on a convex problem, and grows to anything on a chaotic one)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from runs import load_script

import landbench
from landbench.errors import LandbenchError, SpecError
from landbench.records import key_on
from landbench.runner import run_suite
from landbench.store import load_results
from landbench.suite import parse_suite

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_devices.py"

TUNED = """
name = "tiny-tuned"
seeds = [0, 1]
steps = 60
optimizers = ["sgd", "adam"]

[metrics]
curvature = false

[tuning]
instances = [7]
seeds = [10]
grid = [0.01, 0.1]

[[problems]]
spec = "quadratic(condition=10.0)"
dims = [5]

[[problems]]
spec = "least_squares(samples=32)"
dims = [4]
batch_size = [4, 32]
"""


@pytest.fixture(scope="module")
def compare_devices() -> ModuleType:
    return load_script(SCRIPT)


#: (problem, optimizer, noise, noise model): a convex problem, a saddle, a chaotic run (levy with
#: momentum at lr 0.05: starts moved by 2**-20 end at 31 or 17 instead of 10.6), gaussian noise
#: (drawn by each device's generator) and frozen noise (a hash of the point: the same everywhere).
RUNS = [
    ("quadratic(dim=10, condition=10.0)", "sgd(lr=0.05)", 0.0, "gaussian"),
    ("saddle(dim=10)", "adam(lr=0.05)", 0.0, "gaussian"),
    ("levy(dim=4)", "sgd(lr=0.05, momentum=0.9)", 0.0, "gaussian"),
    ("saddle(dim=10)", "sgd(lr=0.05)", 0.01, "gaussian"),
    ("saddle(dim=10)", "sgd(lr=0.05)", 0.01, "frozen"),
]


def records(jitter: tuple[int, float] | None, module: ModuleType) -> list[dict[str, Any]]:
    out = []
    with module.jittered_starts(*jitter) if jitter else contextlib.nullcontext():
        for problem, optimizer, noise, model in RUNS:
            out.extend(landbench.run(problem, optimizer, seeds=4, steps=300, noise=noise, noise_model=model))
    return out


def elsewhere(rows: list[dict[str, Any]], device: str = "cuda") -> list[dict[str, Any]]:
    """The records as that device would have written them: its name, and the key the run has there."""
    return [{**r, "device": device, "key": key_on(r, device)} for r in rows]


@pytest.fixture(scope="module")
def two_devices(compare_devices: ModuleType) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The runs, and the same runs from starts moved by 2**-22 (pattern 9, none of the twins') as
    "cuda" would have written them."""
    return records(None, compare_devices), elsewhere(records((9, 2.0**-22), compare_devices))


def test_a_record_gives_back_its_own_key_on_its_device_and_another_elsewhere(tmp_path: Path) -> None:
    """Every record of a tuned suite (tuning and scored phases, two batch sizes of a finite sum)
    recomputes the key its planner gave it; on another device it has another key, one per run."""
    run_suite(parse_suite(TUNED), tmp_path, progress=False)
    stored = load_results([tmp_path])
    assert {r.get("phase") for r in stored} == {"tune", "score"} and any("tuning" in r for r in stored)
    assert {r.get("batch_size") for r in stored if r["family"] == "least_squares"} == {4, 32}
    assert all(key_on(r, "cpu") == r["key"] for r in stored)
    elsewhere = {key_on(r, "cuda") for r in stored}
    assert len(elsewhere) == len(stored) and not elsewhere & {r["key"] for r in stored}


def test_a_record_whose_key_another_rule_made_is_refused() -> None:
    (record,) = landbench.run("quadratic(dim=3)", "sgd(lr=0.1)", seeds=1, steps=5)
    with pytest.raises(LandbenchError, match="its key is not the one landbench"):
        key_on({**record, "steps": 6}, "cuda")


def test_rounding_agrees_chaos_is_named_and_noise_drawn_on_each_device_is_not_compared(
    compare_devices: ModuleType, two_devices: tuple[list[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    a, b = two_devices
    said: list[str] = []
    counts = compare_devices.compare(a, b, say=said.append)
    assert counts["disagreeing"] == 0 and counts["one device only"] == 0, said
    assert counts["drawn"] == 4  # gaussian noise; frozen noise is compared
    assert counts["chaotic"] >= 1 and all("levy" in line for line in said if line.startswith("chaotic")), said
    assert counts["agreeing"] >= 12  # quadratic, saddle, frozen noise: 4 seeds each
    assert said[-1].startswith(f"{20 - counts['drawn']} runs compared (cpu vs cuda)")


def test_a_real_difference_a_failure_or_a_missing_run_disagrees_and_fails_the_check(
    compare_devices: ModuleType, two_devices: tuple[list[dict[str, Any]], list[dict[str, Any]]], tmp_path: Path
) -> None:
    a, b = two_devices
    b = [dict(r) for r in b]
    saddle = [r for r in b if r["optimizer"] == "adam(lr=0.05)"]
    assert all(r["escaped"] and abs(r["final_loss"] + 0.25) < 1e-3 for r in saddle)  # at the minimum, f* = -1/4
    saddle[0]["final_loss"] *= 1.01  # 1 % off the minimum: no twin moves that far
    saddle[0]["loss_gap"] = saddle[0]["final_loss"] - saddle[0]["f_star"]
    identity = ("problem", "optimizer", "instance", "seed", "steps", "noise", "dtype", "device", "settings", "key")
    failed = {name: saddle[1][name] for name in identity}  # what landbench.jobs.failed_records writes
    b[b.index(saddle[1])] = failed | {"failed": "RuntimeError: CUDA error: an illegal memory access"}
    b.remove(saddle[2])
    said: list[str] = []
    counts = compare_devices.compare(a, b, say=said.append)
    assert (counts["disagreeing"], counts["one device only"]) == (2, 1), said
    assert any(line.startswith("disagreeing: saddle(dim=10) adam") and "final_loss" in line for line in said), said
    assert any("failed: False vs True" in line for line in said), said
    assert any(line.startswith("on one device only (cpu): saddle(dim=10) adam") for line in said), said

    for name, rows in (("a", a), ("b", b)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert compare_devices.main([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]) == 1
    assert compare_devices.main([str(tmp_path / "a.jsonl"), str(tmp_path / "a.jsonl")]) == 0


def test_one_device_type_compares_noise_too_and_odd_folders_are_lines_not_tracebacks(
    compare_devices: ModuleType, two_devices: tuple[list[dict[str, Any]], list[dict[str, Any]]], tmp_path: Path
) -> None:
    """CPU against CPU: the same generators, so noisy runs are compared run by run. A run failed on
    both sides, a record another version keyed, a twin that cannot run here (its optimizer's module
    is gone) and a folder that is not there are each one line, never a traceback."""
    a, _ = two_devices
    said: list[str] = []
    counts = compare_devices.compare(a, a, say=said.append)
    assert (counts["agreeing"], counts["drawn"]) == (20, 0), said

    failed = {**a[0], "failed": "RuntimeError: boom"}
    stale = {**a[1], "key": "0123456789abcdef"}  # not what this landbench makes of its run
    moved = {**a[5], "final_loss": a[5]["final_loss"] + 1.0}  # a saddle run, off by 1
    said.clear()
    with pytest.MonkeyPatch.context() as patch:

        def cannot(*args: Any) -> None:
            raise SpecError("optimizer 'gone_module:SGD': cannot import module 'gone_module'")

        patch.setattr(compare_devices, "twin", cannot)
        counts = compare_devices.compare([failed, stale, a[5]], [failed, stale, moved], say=said.append)
    assert (counts["failed on both"], counts["not read"], counts["disagreeing"]) == (1, 2, 1), said
    assert any(line.startswith("failed on both: ") and "RuntimeError: boom" in line for line in said), said
    assert any(line.startswith("not read (A): 0123456789abcdef") for line in said), said
    assert any("its twin cannot run on cpu here: SpecError: optimizer 'gone_module:SGD'" in line for line in said)
    assert compare_devices.main([str(tmp_path / "nowhere"), str(tmp_path / "nowhere")]) == 2


def test_the_gpu_check_compares_the_smoke_suite_with_this_script() -> None:
    """What a session that is lent a GPU runs: the smoke suite on both devices, then this comparison."""
    script = (SCRIPT.parent / "gpu_check.sh").read_text()
    assert "scripts/compare_devices.py" in script and "run smoke --device cuda" in script
