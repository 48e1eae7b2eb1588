"""Speed benchmarks (pytest-benchmark). They never assert a time.

Ordinary test runs pass ``--benchmark-disable`` (see pyproject.toml): each benchmark body then runs
once, as a smoke test. To time them::

    python -m pytest tests/test_speed.py --benchmark-enable --benchmark-only

Each benchmark stores in ``extra_info`` what the number means: coordinate-steps per second, the
speed-up of the batched engine over a plain per-run loop (autograd, one run at a time, the way one
would write it by hand), and the fraction of this machine's measured memory bandwidth that the step
reaches for the bytes it must move, against the STREAM triad on this machine.

``test_bench_table`` gives the table of ``landbench bench --quick`` entry by entry: throughput and,
for ``landbench.run``, the ratio to the hand-written batched loop measured beside it.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import pytest
import torch

import landbench
from landbench.bench import OPTIMIZERS, PROBLEM, QUICK_SIZES, hand_loop, naive_loop
from landbench.engine import run_batch
from landbench.landscapes import make
from landbench.optimizers import resolve
from landbench.settings import Settings
from landbench.threads import choose_threads, using_threads

NO_METRICS = Settings(curvature=False)


def triad_bandwidth(elements: int, threads: int) -> float:
    """Bytes per second of the STREAM triad ``z = x + s y`` on float32 tensors of this size, on
    ``threads`` intra-op threads (two reads and a write per element; McCalpin, "STREAM: sustainable
    memory bandwidth")."""
    x, y, z = torch.randn(elements), torch.randn(elements), torch.empty(elements)
    with using_threads(threads):
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
    threads = choose_threads(elements)  # the batch's threads: the bandwidth is measured on the same
    # The least a step can move: read x, write the gradient, read both and write x in the update.
    bytes_per_step = 5 * 4 * elements
    benchmark.extra_info.update(
        {
            "step_s": step_s,
            "coordinate_steps_per_s": elements / step_s,
            "threads": threads,
            "fraction_of_triad_bandwidth": bytes_per_step / step_s / triad_bandwidth(elements, threads),
        }
    )


# The table of ``landbench bench`` (issue 12), one entry per quick size x optimizer x way: the same
# loops that ``landbench.bench.measure`` times, on the threads it runs each size on.

TABLE_WAYS = ["hand", "run_no_metrics", "run_metrics"]
#: With benchmarks disabled (ordinary test runs) each body runs once as a smoke test, on the size
#: cut to at most these runs, dimension and steps: the quick table with metrics takes a minute.
SMOKE_LIMITS = (8, 1000, 5)


def _size_threads(elements: int) -> contextlib.AbstractContextManager[Any]:
    """The intra-op threads ``landbench.bench.measure`` runs a size on."""
    return using_threads(choose_threads(elements))


@pytest.mark.parametrize("way", TABLE_WAYS)
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("size", QUICK_SIZES, ids=[f"{b}x{d}-{t}steps" for b, d, t in QUICK_SIZES])
def test_bench_table(benchmark, size: tuple[int, int, int], optimizer: str, way: str) -> None:
    """``extra_info``: the size, the throughput in run-steps x d per second and, for ``landbench.run``,
    its ratio to the hand-written batched loop timed side by side here (median of 3 after a warm-up)."""
    if benchmark.disabled:
        size = tuple(min(n, limit) for n, limit in zip(size, SMOKE_LIMITS))
    runs, dim, steps = size
    landscape = make(PROBLEM.format(d=dim), dtype="float32")
    spec = OPTIMIZERS[optimizer]

    def hand() -> torch.Tensor:
        return hand_loop(landscape, optimizer, runs, steps)

    ways = {
        "hand": hand,
        "run_no_metrics": lambda: landbench.run(landscape, spec, seeds=runs, steps=steps, curvature=False),
        "run_metrics": lambda: landbench.run(landscape, spec, seeds=runs, steps=steps),
    }
    with _size_threads(runs * dim):
        start = time.perf_counter()
        benchmark.pedantic(ways[way], rounds=3, warmup_rounds=1)
        seconds = benchmark.stats.stats.median if benchmark.stats else time.perf_counter() - start
        info: dict[str, Any] = {
            "runs": runs,
            "dim": dim,
            "steps": steps,
            "optimizer": optimizer,
            "way": way,
            "threads": torch.get_num_threads(),
            "seconds": seconds,
            "throughput": runs * steps * dim / seconds,
        }
        if way != "hand":
            hand()  # warm-up
            times = []
            for _ in range(3):
                start = time.perf_counter()
                hand()
                times.append(time.perf_counter() - start)
            info["hand_s"] = statistics.median(times)
            info["ratio_to_hand"] = seconds / info["hand_s"]
    benchmark.extra_info.update(info)
