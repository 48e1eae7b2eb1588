"""``landbench bench``: how fast landbench steps and measures, against the loops a user would write.

For each size (runs B x dimension d, steps T) on the saddle family and each optimizer (SGD, Adam),
four ways of making the same B runs are timed side by side in one process:

* the **hand-written batched loop**: the ``(B, d)`` update in a few lines of torch, closed-form
  gradients, no events, no metrics (:func:`hand_loop`): the floor landbench is held to;
* ``landbench.run`` with the curvature metrics off, and with the default metrics;
* the **naive per-run loop**: one run at a time, autograd and ``torch.optim`` (:func:`naive_loop`),
  timed on a few runs and steps and scaled to ``B x T`` (it is linear in both).

Each is the median of ``repeats`` timings. Throughput is run-steps x d per second. The share of
the copy bandwidth compares the bytes the step must move (SGD: read x, write g, read both, write x:
5 passes; Adam: 11 with its two moments) with ``y.copy_(x)`` measured on the device at the same
size (a read and a write per element).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from landbench.landscapes import make, resolve_device
from landbench.optimizers import resolve
from landbench.threads import choose_threads, using_threads

#: (runs, dim, steps) of the table in issue 12.
SIZES: tuple[tuple[int, int, int], ...] = ((256, 10, 1000), (256, 1000, 200), (64, 10_000, 100), (2, 1_000_000, 20))
#: The same sizes with a tenth of the steps, for ``--quick``.
QUICK_SIZES: tuple[tuple[int, int, int], ...] = tuple((b, d, max(5, t // 10)) for b, d, t in SIZES)
OPTIMIZERS = {"sgd": "sgd(lr=0.01)", "adam": "adam(lr=0.001)"}
#: Passes over the ``(B, d)`` state that one step must make at the least (see the module docstring).
PASSES = {"sgd": 5, "adam": 11}
PROBLEM = "saddle(dim={d})"


@dataclass
class Row:
    """One size and optimizer: seconds of each way, and what they mean."""

    runs: int
    dim: int
    steps: int
    optimizer: str
    hand_s: float
    no_metrics_s: float
    metrics_s: float
    naive_s: float
    copy_bandwidth: float  # bytes per second of y.copy_(x) at this size
    threads: int

    @property
    def throughput(self) -> float:
        """Run-steps x d per second of ``landbench.run`` without metrics."""
        return self.runs * self.steps * self.dim / self.no_metrics_s

    @property
    def bandwidth_share(self) -> float:
        """Bytes the step must move per second, over the measured copy bandwidth (landbench.run, no metrics)."""
        itemsize = 4  # float32, landbench's default dtype
        moved = PASSES[self.optimizer] * self.runs * self.dim * itemsize * self.steps
        return moved / self.no_metrics_s / self.copy_bandwidth

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "throughput": self.throughput,
            "no_metrics_over_hand": self.no_metrics_s / self.hand_s,
            "metrics_over_hand": self.metrics_s / self.hand_s,
            "naive_over_metrics": self.naive_s / self.metrics_s,
            "bandwidth_share": self.bandwidth_share,
        }


def median_time(work: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """The median wall time of ``work()`` over ``repeats`` calls (after one untimed warm-up)."""
    return median_times({"work": work}, repeats, device)["work"]


def median_times(ways: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, float]:
    """The median wall time of each way over ``repeats`` rounds, after one untimed warm-up each.

    The ways take turns within a round (hand, run, run with metrics, hand, ...), so that a load that
    comes and goes on a shared machine falls on all of them alike and their ratios stay meaningful.
    """
    for work in ways.values():
        work()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, work in ways.items():
            _sync(device)
            start = time.perf_counter()
            work()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_loop(landscape: Any, optimizer: str, runs: int, steps: int) -> torch.Tensor:
    """The batched loop a user would write: closed-form gradients, the update in place, nothing else."""
    x = landscape.sample_start(range(runs))
    if optimizer == "sgd":
        for _ in range(steps):
            _, g = landscape.loss_and_grad(x)
            x.add_(g, alpha=-0.01)
        return x
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    for t in range(1, steps + 1):
        _, g = landscape.loss_and_grad(x)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v / (1 - b2**t)).sqrt_().add_(eps)
        x.addcdiv_(m, denom, value=-lr / (1 - b1**t))
    return x


def naive_loop(landscape: Any, optimizer: str, seeds: Sequence[int], steps: int) -> list[float]:
    """One run at a time, autograd and ``torch.optim``: what a user's first script does. Returns each
    run's final loss (the runs landbench makes batched, one by one)."""
    spec = resolve(optimizer)
    finals = []
    for seed in seeds:
        x = torch.nn.Parameter(landscape.sample_start([seed]))
        opt = spec.build([x])
        for _ in range(steps):
            opt.zero_grad()
            landscape.loss(x).sum().backward()
            opt.step()
        finals.append(float(landscape.loss(x.detach())[0]))
    return finals


def copy_bandwidth(elements: int, device: torch.device, repeats: int = 5) -> float:
    """Bytes per second of ``y.copy_(x)`` on float32 tensors of ``elements`` (a read and a write each)."""
    elements = max(elements, 1 << 20)  # below a few MiB the copy measures launch overhead, not memory
    x = torch.randn(elements, device=device)
    y = torch.empty_like(x)
    seconds = median_time(lambda: y.copy_(x), repeats, device)
    return 8 * elements / seconds


def measure(
    sizes: Sequence[tuple[int, int, int]] = SIZES,
    optimizers: Sequence[str] = tuple(OPTIMIZERS),
    device: str = "cpu",
    repeats: int = 3,
    naive_budget: tuple[int, int] = (2, 20),
    progress: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> list[Row]:
    """Time every size x optimizer (see the module docstring). ``naive_budget``: the runs and steps
    the naive loop is timed on before it is scaled to the size's ``B x T``. Every way at a size runs
    on the intra-op threads landbench chooses for that size (:func:`landbench.threads.choose_threads`;
    ``threads`` overrides it), so that the ratios compare loops, not thread counts."""
    import landbench

    place = resolve_device(device)
    rows = []
    for runs, dim, steps in sizes:
        landscape = make(PROBLEM.format(d=dim), device=place, dtype="float32")
        count = choose_threads(runs * dim, threads)
        with using_threads(count):
            bandwidth = copy_bandwidth(runs * dim, place)
            for name in optimizers:
                spec = OPTIMIZERS[name]
                if progress is not None:
                    progress(f"{name} at {runs} x {dim}, {steps} steps, {count} thread{'s' * (count > 1)}")
                common = {"seeds": runs, "steps": steps, "device": place, "threads": count}
                naive_runs, naive_steps = min(runs, naive_budget[0]), min(steps, naive_budget[1])
                seconds = median_times(
                    {
                        "hand": lambda: hand_loop(landscape, name, runs, steps),  # noqa: B023
                        "bare": lambda: landbench.run(landscape, spec, curvature=False, **common),  # noqa: B023
                        "full": lambda: landbench.run(landscape, spec, **common),  # noqa: B023
                    },
                    repeats,
                    place,
                )
                naive = median_time(lambda: naive_loop(landscape, spec, range(naive_runs), naive_steps), repeats, place)  # noqa: B023
                naive *= (runs / naive_runs) * (steps / naive_steps)
                hand, bare, full = seconds["hand"], seconds["bare"], seconds["full"]
                rows.append(Row(runs, dim, steps, name, hand, bare, full, naive, bandwidth, count))
    return rows


def table(rows: Sequence[Row]) -> str:
    """The rows as the table of issue 12: seconds of the hand loop, then ratios to it and to the naive loop."""
    header = (
        "B x d, steps",
        "opt",
        "hand loop",
        "run, no metrics",
        "run, metrics",
        "naive / run",
        "run-steps x d / s",
        "copy bw share",
    )
    lines = [header]
    for r in rows:
        lines.append(
            (
                f"{r.runs} x {r.dim:g}, {r.steps}",
                r.optimizer,
                f"{r.hand_s:.3g} s",
                f"{r.no_metrics_s / r.hand_s:.2f}x",
                f"{r.metrics_s / r.hand_s:.2f}x",
                f"{r.naive_s / r.metrics_s:.3g}x",
                f"{r.throughput:.3g}",
                f"{100 * r.bandwidth_share:.1f} %",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
