"""Time the default curvature metrics against the 200-step optimisation loop (issue 12).

For each size B x d of the saddle family (float32; ``--problem`` for another) it runs 200 steps
of SGD and Adam with ``landbench.run(..., curvature=False)``, takes the final points of the SGD
batch, and times at those points: sharpness, hessian_trace, basin_width (as the records get it)
and all three (``metrics``; ``--engine`` adds ``landbench.engine._curvature``). Medians of
``--repeats`` (default 3); the ratios printed are the metrics' time over the loop's (the target
is at most 1).

    python scripts/profile_metrics.py                     # one thread, the four sizes of issue 12
    python scripts/profile_metrics.py --threads 0         # the engine's choice per size (landbench.threads)
    python scripts/profile_metrics.py --problem "rastrigin(dim={d})" --sizes 256x1000
    python scripts/profile_metrics.py --module /tmp/old_curvature.py   # another curvature module

``--module`` times the metric functions of another copy of ``landbench/metrics/curvature.py``
(e.g. ``git show aa0f0a9~1:landbench/metrics/curvature.py > /tmp/old_curvature.py``, the one
before ``curvature_metrics``), with the engine's old rule for its basin width (a float64 twin
whenever it fits) unless it has ``curvature_metrics`` of its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

import landbench
from landbench.api import plan
from landbench.engine import _curvature
from landbench.settings import Settings
from landbench.threads import choose_threads, using_threads

SIZES = [(256, 10), (256, 1000), (64, 10_000), (2, 1_000_000)]
#: The engine's rule before curvature_metrics: the basin width on a float64 twin whenever it fits.
OLD_TWIN_BYTES = 1 << 30


def load(path: str | None) -> ModuleType:
    if path is None:
        from landbench.metrics import curvature

        return curvature
    spec = importlib.util.spec_from_file_location("curvature_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_time(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def whole(module: ModuleType, landscape: Any, x: torch.Tensor, seeds: list[int], settings: Settings) -> Any:
    """All three metrics as the engine computes them, with ``module``'s functions."""
    if hasattr(module, "curvature_metrics"):
        return module.curvature_metrics(landscape, x, seeds, **settings.metric_options())
    precise = landscape
    if landscape.dtype != torch.float64 and 2 * landscape.tensor_bytes() <= OLD_TWIN_BYTES:
        precise = landscape.astype(torch.float64)
    return {
        "sharpness": module.sharpness(landscape, x, seeds, iterations=settings.lanczos_iterations),
        "hessian_trace": module.hessian_trace(landscape, x, seeds, probes=settings.hutchinson_probes),
        "basin_width": module.basin_width(
            precise, x.to(precise.dtype), seeds, tau=settings.tau, probes=settings.basin_probes
        ),
    }


def profile(batch: int, dim: int, module: ModuleType, repeats: int, engine: bool, problem: str) -> dict[str, float]:
    spec = problem.format(d=dim)
    seeds = list(range(batch))
    settings = Settings()
    out: dict[str, float] = {}
    for name in ("sgd(lr=0.1)", "adam(lr=0.01)"):
        out[name.split("(")[0]] = median_time(
            lambda name=name: landbench.run(spec, name, seeds=batch, steps=200, curvature=False), repeats
        )
    prepared = plan(spec, "sgd(lr=0.1)", seeds=batch, steps=200, curvature=False)
    landscape, x = prepared.landscape, prepared.execute().final_x
    twin = landscape
    if 2 * landscape.tensor_bytes() <= OLD_TWIN_BYTES:
        twin = landscape.astype(torch.float64)
    out["sharpness"] = median_time(lambda: module.sharpness(landscape, x, seeds), repeats)
    out["hessian_trace"] = median_time(lambda: module.hessian_trace(landscape, x, seeds), repeats)
    if hasattr(module, "curvature_metrics"):  # the module decides on the twin itself, per run
        out["basin_width"] = median_time(lambda: module._recorded_basin_width(landscape, x, seeds), repeats)
    else:
        out["basin_width"] = median_time(lambda: module.basin_width(twin, x.to(twin.dtype), seeds), repeats)
    out["metrics"] = median_time(lambda: whole(module, landscape, x, seeds, settings), repeats)
    if engine:
        out["engine"] = median_time(lambda: _curvature(landscape, x, seeds, settings), repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads; 0: as the engine chooses them per size"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--module", help="path of another curvature.py to time instead of landbench's")
    parser.add_argument("--sizes", help="e.g. 256x10,2x1000000 (default: the four sizes of issue 12)")
    parser.add_argument("--engine", action="store_true", help="also time landbench.engine._curvature")
    parser.add_argument("--problem", default="saddle(dim={d})", help="the problem, {d} for the dimension")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = SIZES
    if args.sizes:
        sizes = [tuple(int(float(n)) for n in size.split("x")) for size in args.sizes.split(",")]  # type: ignore[misc]
    module = load(args.module)
    threads = torch.get_num_threads() if args.threads else "chosen per size"
    print(f"{args.problem} threads={threads} repeats={args.repeats} module={module.__file__}")
    columns = ["sgd", "adam", "sharpness", "hessian_trace", "basin_width", "metrics"] + (
        ["engine"] if args.engine else []
    )
    print(f"{'B x d':>12} " + " ".join(f"{c:>13}" for c in columns) + "   metrics/sgd  metrics/adam")
    for batch, dim in sizes:
        with using_threads(choose_threads(batch * dim, args.threads or None)):
            row = profile(batch, dim, module, args.repeats, args.engine, args.problem)
        cells = " ".join(f"{row[c]:13.4f}" for c in columns)
        ratios = f"{row['metrics'] / row['sgd']:11.2f}  {row['metrics'] / row['adam']:12.2f}"
        print(f"{batch:>5} x {dim:<6g}{cells}   {ratios}")


if __name__ == "__main__":
    main()
