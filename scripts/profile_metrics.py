"""Time the default curvature metrics against the 200-step optimisation loop (issue 12).

For each size B x d of the saddle family (float32) it runs 200 steps of SGD and Adam with
``landbench.run(..., curvature=False)``, takes the final points of the SGD batch, and times at
those points: sharpness, hessian_trace, basin_width (each as the engine calls it) and the whole of
``landbench.engine._curvature``. Medians of ``--repeats`` (default 3); the ratio printed is the
metrics' time over the loop's (the target is at most 1).

    python scripts/profile_metrics.py                     # one thread, the four sizes of issue 12
    python scripts/profile_metrics.py --threads 0         # torch's default thread count
    python scripts/profile_metrics.py --module /tmp/old_curvature.py   # another curvature module

``--module`` times the metric functions of another copy of ``landbench/metrics/curvature.py``
(e.g. ``git show HEAD~3:landbench/metrics/curvature.py > /tmp/old_curvature.py``), with the
engine's float64 twin rule for its basin width unless it has ``curvature_metrics`` of its own.
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
from landbench.engine import PRECISE_TWIN_BYTES, _curvature
from landbench.settings import Settings

SIZES = [(256, 10), (256, 1000), (64, 10_000), (2, 1_000_000)]


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
        return module.curvature_metrics(
            landscape,
            x,
            seeds,
            iterations=settings.lanczos_iterations,
            probes=settings.hutchinson_probes,
            tau=settings.tau,
            basin_probes=settings.basin_probes,
        )
    precise = landscape
    if landscape.dtype != torch.float64 and 2 * landscape.tensor_bytes() <= PRECISE_TWIN_BYTES:
        precise = landscape.astype(torch.float64)
    return {
        "sharpness": module.sharpness(landscape, x, seeds, iterations=settings.lanczos_iterations),
        "hessian_trace": module.hessian_trace(landscape, x, seeds, probes=settings.hutchinson_probes),
        "basin_width": module.basin_width(
            precise, x.to(precise.dtype), seeds, tau=settings.tau, probes=settings.basin_probes
        ),
    }


def profile(batch: int, dim: int, module: ModuleType, repeats: int, engine: bool) -> dict[str, float]:
    spec = f"saddle(dim={dim})"
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
    if 2 * landscape.tensor_bytes() <= PRECISE_TWIN_BYTES:
        twin = landscape.astype(torch.float64)
    out["sharpness"] = median_time(lambda: module.sharpness(landscape, x, seeds), repeats)
    out["hessian_trace"] = median_time(lambda: module.hessian_trace(landscape, x, seeds), repeats)
    if hasattr(module, "basin_landscape"):  # the module decides on the twin itself
        out["basin_width"] = median_time(
            lambda: module.basin_width(precise := module.basin_landscape(landscape, x), x.to(precise.dtype), seeds),
            repeats,
        )
    else:
        out["basin_width"] = median_time(lambda: module.basin_width(twin, x.to(twin.dtype), seeds), repeats)
    out["metrics"] = median_time(lambda: whole(module, landscape, x, seeds, settings), repeats)
    if engine:
        out["engine"] = median_time(lambda: _curvature(landscape, x, seeds, settings), repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads; 0 keeps torch's default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--module", help="path of another curvature.py to time instead of landbench's")
    parser.add_argument("--sizes", help="e.g. 256x10,2x1000000 (default: the four sizes of issue 12)")
    parser.add_argument("--engine", action="store_true", help="also time landbench.engine._curvature")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = SIZES
    if args.sizes:
        sizes = [tuple(int(float(n)) for n in size.split("x")) for size in args.sizes.split(",")]  # type: ignore[misc]
    module = load(args.module)
    print(f"threads={torch.get_num_threads()} repeats={args.repeats} module={module.__file__}")
    columns = ["sgd", "adam", "sharpness", "hessian_trace", "basin_width", "metrics"] + (
        ["engine"] if args.engine else []
    )
    print(f"{'B x d':>12} " + " ".join(f"{c:>13}" for c in columns) + "   metrics/sgd  metrics/adam")
    for batch, dim in sizes:
        row = profile(batch, dim, module, args.repeats, args.engine)
        cells = " ".join(f"{row[c]:13.4f}" for c in columns)
        ratios = f"{row['metrics'] / row['sgd']:11.2f}  {row['metrics'] / row['adam']:12.2f}"
        print(f"{batch:>5} x {dim:<6g}{cells}   {ratios}")


if __name__ == "__main__":
    main()
