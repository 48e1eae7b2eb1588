"""Speed benchmarks (pytest-benchmark). They never assert a time.

Ordinary test runs pass ``--benchmark-disable`` (see pyproject.toml): each benchmark body then runs
once, as a smoke test. To time them::

    python -m pytest tests/test_speed.py --benchmark-enable --benchmark-only

Each benchmark stores in ``extra_info`` what the number means: coordinate-steps per second, the
speed-up of the batched engine over a plain per-run loop (autograd, one run at a time, the way one
would write it by hand), and the fraction of this machine's measured memory bandwidth that the step
reaches for the bytes it must move, against the STREAM triad on this machine.
"""

from __future__ import annotations

import time

import pytest
import torch

import landbench
from landbench.bench import naive_loop
from landbench.engine import run_batch
from landbench.optimizers import resolve
from landbench.settings import Settings

NO_METRICS = Settings(curvature=False)


def triad_bandwidth(elements: int) -> float:
    """Bytes per second of the STREAM triad ``z = x + s y`` on float32 tensors of this size
    (two reads and a write per element; McCalpin, "STREAM: sustainable memory bandwidth")."""
    x, y, z = torch.randn(elements), torch.randn(elements), torch.empty(elements)
    torch.add(x, y, alpha=0.5, out=z)
    repeats = max(3, int(3e8 // (12 * elements)))
    start = time.perf_counter()
    for _ in range(repeats):
        torch.add(x, y, alpha=0.5, out=z)
    return 12 * elements * repeats / (time.perf_counter() - start)


@pytest.mark.parametrize("problem", ["saddle(dim=100)", "rosenbrock(dim=100)"])
def test_batched_engine_against_a_plain_per_run_loop(benchmark, problem: str) -> None:
    seeds, steps, optimizer = list(range(32)), 100, "adam(lr=0.001)"
    landscape = landbench.make(problem)
    spec = resolve(optimizer)
    outcome = benchmark(lambda: run_batch(landscape, spec, seeds, steps=steps, settings=NO_METRICS, verify=False))
    start = time.perf_counter()
    reference = naive_loop(landscape, optimizer, seeds, steps)
    loop_s = time.perf_counter() - start
    # Same numbers, whichever way the runs were done.
    torch.testing.assert_close(outcome.tracker.last_loss, torch.tensor(reference), rtol=1e-4, atol=1e-6)
    batched_s = benchmark.stats.stats.mean if benchmark.stats else outcome.wall_s
    benchmark.extra_info.update(
        {"runs": len(seeds), "steps": steps, "plain_loop_s": loop_s, "speedup_over_plain_loop": loop_s / batched_s}
    )


@pytest.mark.parametrize(
    ("problem", "batch"), [("saddle(dim=1000000)", 8), ("saddle(dim=100000, index=3, rotate=True)", 16)]
)
def test_large_dimension_against_memory_bandwidth(benchmark, problem: str, batch: int) -> None:
    landscape = landbench.make(problem)
    spec = resolve("sgd(lr=0.001)")
    seeds = list(range(batch))
    short, long = 2, 22

    def steady_step_time() -> float:
        """Seconds per step without the per-batch set-up: the difference of two budgets."""
        times = [
            run_batch(landscape, spec, seeds, steps=n, settings=NO_METRICS, verify=False).wall_s for n in (short, long)
        ]
        return (times[1] - times[0]) / (long - short)

    step_s = benchmark.pedantic(steady_step_time, rounds=3)
    elements = batch * landscape.dim
    # The least a step can move: read x, write the gradient, read both and write x in the update.
    bytes_per_step = 5 * 4 * elements
    benchmark.extra_info.update(
        {
            "step_s": step_s,
            "coordinate_steps_per_s": elements / step_s,
            "fraction_of_triad_bandwidth": bytes_per_step / step_s / triad_bandwidth(elements),
        }
    )
