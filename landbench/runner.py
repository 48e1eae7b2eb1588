"""Run a suite into a results folder: skip what is stored, run the rest batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from landbench.engine import run_batch
from landbench.landscapes import make, resolve_device, resolve_dtype
from landbench.optimizers import choose_mode, resolve
from landbench.records import build_records
from landbench.store import ResultStore
from landbench.suite import Scenario, Suite


@dataclass
class SuiteRun:
    """What a suite run did: every record of the suite's runs (old and new) and counts."""

    records: list[dict[str, Any]] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0


def missing_seeds(scenarios: list[Scenario], stored: Mapping[str, Any], device: str) -> dict[Scenario, list[int]]:
    """For each scenario, the run seeds whose records are not stored yet."""
    device_type = torch.device(device).type
    return {sc: [s for s in sc.seeds if sc.key(s, device_type) not in stored] for sc in scenarios}


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    device: str = "cpu",
    progress: bool | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> SuiteRun:
    """Run every scenario of ``suite`` that ``out`` does not hold yet, appending each batch as it ends.

    ``on_record`` sees every record of the suite in scenario order, stored ones included (the
    CLI's ``--json`` prints them). ``progress``: a bar on stderr (None: only on a terminal).
    """
    _check_before_running(suite, device)
    store = ResultStore(out)
    device_type = torch.device(device).type
    stored = {r["key"]: r for r in store.records() if "key" in r}
    scenarios = suite.scenarios()
    remaining = missing_seeds(scenarios, stored, device)
    result = SuiteRun()
    bar = tqdm(
        total=sum(len(seeds) for seeds in remaining.values()),
        unit="run",
        desc=suite.name,
        disable=None if progress is None else not progress,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} runs [{elapsed}<{remaining}]{postfix}",
        delay=0.5,
    )
    with bar:
        for scenario in scenarios:
            seeds = remaining[scenario]
            new: dict[int, dict[str, Any]] = {}
            if seeds:
                bar.set_postfix_str(f"{scenario.problem} {scenario.optimizer}", refresh=False)
                new = {r["seed"]: r for r in _run_scenario(scenario, seeds, device, bar)}
                store.append(new[s] for s in seeds)
                result.ran += len(seeds)
                bar.update(result.ran - bar.n)  # exact count, whatever the per-step increments added up to
            for seed in scenario.seeds:
                record = new.get(seed) or stored[scenario.key(seed, device_type)]
                result.skipped += seed not in new
                result.records.append(record)
                if on_record is not None:
                    on_record(record)
    return result


def _check_before_running(suite: Suite, device: str) -> None:
    """Fail before the first batch, not half-way: the device exists, every optimizer is batch-safe."""
    place = resolve_device(device)
    for name, dtype in {(s.optimizer, s.settings.dtype) for s in suite.scenarios()}:
        choose_mode(resolve(name), place, resolve_dtype(dtype))


def _run_scenario(scenario: Scenario, seeds: list[int], device: str, bar: tqdm) -> list[dict[str, Any]]:
    landscape = make(scenario.problem, seed=scenario.instance, device=device, dtype=scenario.settings.dtype)
    optimizer = resolve(scenario.optimizer)
    runs_per_step = len(seeds) / scenario.steps
    outcome = run_batch(
        landscape,
        optimizer,
        seeds,
        steps=scenario.steps,
        noise=scenario.noise,
        settings=scenario.settings,
        progress=lambda steps: bar.update(steps * runs_per_step),
    )
    return build_records(
        landscape, optimizer, outcome, steps=scenario.steps, noise=scenario.noise, settings=scenario.settings
    )
