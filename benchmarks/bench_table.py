"""The table of ``landbench bench`` (issue 12) as asv benchmarks.

:class:`BenchTable` times, for each size of the table (runs B x dimension d, steps T, saddle
family, float32) and each optimizer (SGD, Adam), each of the four ways that
:func:`landbench.bench.measure` compares, running exactly what it runs:

* ``hand``: :func:`landbench.bench.hand_loop`, the hand-written batched loop;
* ``run_no_metrics``: ``landbench.run(..., curvature=False)``;
* ``run_metrics``: ``landbench.run(...)`` with its default metrics;
* ``naive``: :func:`landbench.bench.naive_loop` on its scaled-down budget only, ``NAIVE_BUDGET``
  (at most 2 runs of at most 20 steps). Multiply its time by ``(B / runs) x (T / steps)`` of that
  budget to compare it with the others, as ``landbench bench`` does.

Throughput (run-steps x d per second) is ``B x T x d`` over the time. :class:`BenchRatios`
reports the ratios of the table (``track_``, unit "ratio") for one size and optimizer, from one
call of ``landbench.bench.measure`` with one timing per way.

The sizes are a fixed list (asv needs the same parameters at every commit; a test checks that they
are ``landbench.bench.SIZES``). Commits older than ``landbench.bench`` skip every benchmark here.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from ._common import device, synchronize

#: (runs, dim, steps) of the table in issue 12: ``landbench.bench.SIZES``.
SIZES: list[tuple[int, int, int]] = [(256, 10, 1000), (256, 1000, 200), (64, 10_000, 100), (2, 1_000_000, 20)]
#: The parameter labels of the sizes, as the table prints them ("B x d, steps").
LABELS: dict[str, tuple[int, int, int]] = {f"{b} x {d}, {t}": (b, d, t) for b, d, t in SIZES}
WAYS = ["hand", "run_no_metrics", "run_metrics", "naive"]
#: Runs and steps the naive per-run loop is timed on (``measure``'s ``naive_budget``).
NAIVE_BUDGET = (2, 20)
#: The size of :class:`BenchRatios`: the one issue 12's targets for the metrics name (256 x 1000).
RATIO_SIZE = (256, 1000, 200)
RATIO_OPTIMIZER = "sgd"
#: Steps of the untimed warm-up in ``setup``.
WARMUP_STEPS = 3


def _bench_module() -> Any:
    """``landbench.bench``, or NotImplementedError (asv: skipped) at a commit that does not have it."""
    try:
        from landbench import bench
    except ImportError as exc:
        raise NotImplementedError(f"landbench.bench is not in this version of landbench ({exc})") from exc
    return bench


def _size_threads(elements: int) -> int | None:
    """The intra-op threads ``landbench.bench.measure`` runs every way of a size on (landbench's
    choice for ``elements``), or None at a commit that does not choose them."""
    try:
        from landbench.threads import choose_threads
    except ImportError:
        return None
    return choose_threads(elements)


class BenchTable:
    """Seconds of one way of making the B runs of one size of the table (see the module docstring)."""

    params = [list(LABELS), ["sgd", "adam"], WAYS]
    param_names = ["size", "optimizer", "way"]
    #: 2 x 10^6 with the default metrics took 10 to 30 s a call on 2 shared cores (before issue 12's work).
    timeout = 300

    def setup(self, size: str, optimizer: str, way: str) -> None:
        bench = _bench_module()
        import landbench
        from landbench.landscapes import make

        runs, dim, steps = LABELS[size]
        place = device()
        landscape = make(bench.PROBLEM.format(d=dim), device=place, dtype="float32")
        spec = bench.OPTIMIZERS[optimizer]
        common: dict[str, Any] = {"seeds": runs, "steps": steps, "device": place}
        # Every way of a size on the threads landbench chooses for it, as in ``measure`` (asv runs
        # each benchmark in a process of its own; teardown restores the count all the same).
        self.threads_before = torch.get_num_threads()
        count = _size_threads(runs * dim)
        if count is not None:
            torch.set_num_threads(count)
            if "threads" in inspect.signature(landbench.run).parameters:
                common["threads"] = count
        if way == "hand":
            self.work = lambda: bench.hand_loop(landscape, optimizer, runs, steps)
        elif way == "run_no_metrics":
            self.work = lambda: landbench.run(landscape, spec, curvature=False, **common)
        elif way == "run_metrics":
            self.work = lambda: landbench.run(landscape, spec, **common)
        else:
            naive_runs, naive_steps = min(runs, NAIVE_BUDGET[0]), min(steps, NAIVE_BUDGET[1])
            self.work = lambda: bench.naive_loop(landscape, spec, range(naive_runs), naive_steps)
        self.place = place
        # Warm-up (untimed; asv re-runs setup before every timed call): thread pool, allocator, lazy
        # imports, on a few steps of the same way (the default metrics are left cold: a second
        # metrics call would double the cost of ``asv run --quick``).
        if way == "hand":
            bench.hand_loop(landscape, optimizer, runs, min(steps, WARMUP_STEPS))
        elif way == "naive":
            bench.naive_loop(landscape, spec, range(1), WARMUP_STEPS)
        else:
            landbench.run(landscape, spec, curvature=False, **(common | {"steps": min(steps, WARMUP_STEPS)}))
        synchronize(place)

    def teardown(self, size: str, optimizer: str, way: str) -> None:
        if hasattr(self, "threads_before"):
            torch.set_num_threads(self.threads_before)

    def time_way(self, size: str, optimizer: str, way: str) -> None:
        """Seconds for the B runs of T steps (``naive``: for its scaled-down budget)."""
        self.work()
        synchronize(self.place)


class BenchRatios:
    """The ratios of the table for SGD at 256 x 1000, 200 steps, measured side by side by one call of
    ``landbench.bench.measure`` (one timing per way after a warm-up), in ``setup_cache``."""

    unit = "ratio"
    timeout = 300

    def setup_cache(self) -> dict[str, float]:
        try:
            from landbench.bench import measure
        except ImportError:
            return {}
        (row,) = measure(
            sizes=[RATIO_SIZE], optimizers=[RATIO_OPTIMIZER], device=str(device()), repeats=1, naive_budget=NAIVE_BUDGET
        )
        return row.as_dict()

    def setup(self, cache: dict[str, float]) -> None:
        if not cache:
            _bench_module()  # raises NotImplementedError: skipped

    def track_run_over_hand(self, cache: dict[str, float]) -> float:
        """``landbench.run`` without metrics over the hand-written batched loop (target: at most 1.3)."""
        return cache["no_metrics_over_hand"]

    def track_metrics_over_hand(self, cache: dict[str, float]) -> float:
        """``landbench.run`` with its default metrics over the hand-written batched loop (the target for
        the metrics: at most the cost of the loop itself)."""
        return cache["metrics_over_hand"]

    def track_naive_over_run(self, cache: dict[str, float]) -> float:
        """The naive per-run loop (scaled to B x T) over ``landbench.run`` with its default metrics
        (larger is better; target: at least 100)."""
        return cache["naive_over_metrics"]
