"""Run a suite into a results folder: skip what is stored, run the rest batch by batch."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from landbench.engine import CoupledBatch, run_batch
from landbench.landscapes import make, resolve_device, resolve_dtype
from landbench.optimizers import choose_mode, resolve
from landbench.optimizers.batching import grid_mode
from landbench.records import build_records
from landbench.store import ResultStore
from landbench.suite import Scenario, Suite
from landbench.tuning import choose, scored, tuning_units, with_lr


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

    A suite with a ``[tuning]`` table first runs its tuning grids (:mod:`landbench.tuning`), then
    scores its scenarios with the chosen learning rates; both phases resume from ``out``. With its
    tuning turned off (``suite.with_overrides(tune=False)``) there are no tuning runs, and the
    scored records say that nothing was tuned.
    ``on_record`` sees every scored record of the suite in scenario order, stored ones included
    (the CLI's ``--json`` prints them). ``progress``: a bar on stderr (None: only on a terminal).
    """
    _check_before_running(suite, device)
    store = ResultStore(out)
    device_type = torch.device(device).type
    stored = {r["key"]: r for r in store.records() if "key" in r}
    scenarios = suite.scenarios()
    units = tuning_units(suite.tuning, scenarios) if suite.tuning is not None else []
    grids = {unit: [with_lr(unit.optimizer, lr) for lr in suite.tuning.rates_for(unit.optimizer)] for unit in units}  # type: ignore[union-attr]
    tune_left = {u: any(u.key(s, device_type, o) not in stored for o in grids[u] for s in u.seeds) for u in units}
    result = SuiteRun()
    bar = tqdm(
        total=sum(len(grids[u]) * len(u.seeds) for u in units if tune_left[u]) + sum(len(sc.seeds) for sc in scenarios),
        unit="run",
        desc=suite.name,
        disable=None if progress is None else not progress,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} runs [{elapsed}<{remaining}]{postfix}",
        delay=0.5,
    )
    with bar:
        if suite.tuning is not None:
            tuned = []
            for unit in units:
                if tune_left[unit]:
                    bar.set_postfix_str(f"tuning {unit.label} on {unit.problem}", refresh=False)
                    done = bar.n
                    new = _tune_unit(unit, grids[unit], device, bar)
                    store.append(r for r in new if r["key"] not in stored)
                    stored.update((r["key"], r) for r in new)
                    bar.update(done + len(new) - bar.n)
                tuned += [stored[unit.key(s, device_type, o)] for o in grids[unit] for s in unit.seeds]
            scenarios = scored(scenarios, suite.tuning, choose(tuned))
        remaining = missing_seeds(scenarios, stored, device)
        bar.total = bar.n + sum(len(seeds) for seeds in remaining.values())
        ran_before = bar.n
        for scenario in scenarios:
            seeds = remaining[scenario]
            new_records: dict[int, dict[str, Any]] = {}
            if seeds:
                bar.set_postfix_str(f"{scenario.problem} {scenario.optimizer}", refresh=False)
                runs = _run_scenario(scenario, seeds, device, bar)
                for record in runs:
                    _set_role(record, scenario, device_type)
                new_records = {r["seed"]: r for r in runs}
                store.append(new_records[s] for s in seeds)
                result.ran += len(seeds)
                bar.update(ran_before + result.ran - bar.n)  # exact, whatever the per-step increments added up to
            for seed in scenario.seeds:
                record = new_records.get(seed) or stored[scenario.key(seed, device_type)]
                result.skipped += seed not in new_records
                result.records.append(record)
                if on_record is not None:
                    on_record(record)
    return result


def _set_role(record: dict[str, Any], scenario: Scenario, device_type: str) -> None:
    """Mark a record of a tuned suite with its phase, its label and (scored runs) the tuning it got."""
    if scenario.phase is None:
        return
    record["phase"] = scenario.phase
    record["label"] = scenario.label
    if scenario.tuning is not None:
        record["tuning"] = json.loads(scenario.tuning)
    record["key"] = scenario.key(record["seed"], device_type, record["optimizer"])


def _tune_unit(unit: Scenario, specs: list[str], device: str, bar: tqdm) -> list[dict[str, Any]]:
    """Every rate of a tuning grid on one tuning batch: in one batch where the optimizer takes a
    param group per rate at every rate of the grid (:func:`landbench.optimizers.batching.grid_mode`)
    and the batch's spot check of independence agrees, else one batch per rate."""
    landscape = make(unit.problem, seed=unit.instance, device=device, dtype=unit.settings.dtype)
    base = resolve(unit.optimizer)
    resolved = [resolve(spec) for spec in specs]
    seeds = list(unit.seeds)
    runs_per_step = len(seeds) * len(specs) / unit.steps
    common = {"steps": unit.steps, "noise": unit.noise, "settings": unit.settings}
    lrs = [float(spec.kwargs["lr"]) for spec in resolved]
    mode = grid_mode(base, landscape.device, landscape.dtype, lrs)
    records: list[dict[str, Any]] = []
    if mode is not None:
        done = bar.n
        try:
            outcome = run_batch(
                landscape, base, seeds, lrs=lrs, mode=mode, progress=lambda n: bar.update(n * runs_per_step), **common
            )
            records = build_records(landscape, [spec for spec in resolved for _ in seeds], outcome, **common)
        except CoupledBatch:  # the spot check caught a coupling the probe missed: one batch per rate
            bar.update(done - bar.n)
    if not records:
        for spec in resolved:
            outcome = run_batch(
                landscape, spec, seeds, progress=lambda n: bar.update(n * len(seeds) / unit.steps), **common
            )
            records += build_records(landscape, spec, outcome, **common)
    device_type = landscape.device.type
    for record in records:
        _set_role(record, unit, device_type)
    return records


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
