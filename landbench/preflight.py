"""Everything a run needs, checked before its first job: nothing half-runs.

:func:`check_suite` is called on a whole suite before any job of it runs (``landbench run``), and
:func:`check_problem` and :func:`check_optimizer` by :func:`landbench.api.plan` for one scenario:

* the device exists;
* every problem of every scenario (and of every tuning batch) is valid and fits: its instance
  (couplings, random features, frames: :meth:`landbench.landscapes.Landscape.footprint`, estimated
  from the parameters, nothing allocated) plus the state of its batch of runs (``runs x dim`` numbers
  for the iterates, the gradients and the optimizer's state, :data:`STATE_COPIES` copies, and the
  curvature metrics' probes) against the memory the device has available now (the host's
  ``MemAvailable``, or CUDA's free memory); a problem that does not fit is refused with one line that
  says what it needs and what fits (``use dim <= N``, or fewer seeds);
* a streamed p-spin that would regenerate more than :data:`MAX_STREAMED` couplings at every
  evaluation (hours per step) is refused the same way;
* every optimizer spec resolves and passes the batch-safety probe
  (:func:`landbench.optimizers.batching.choose_mode`) at every dtype it runs in;
* the records of the whole suite fit in the host's memory (:data:`RECORD_BYTES` each).

Steps cost time, not memory (the loss curve is kept at log-spaced steps and the event buffers are
chunked); :func:`landbench.settings.check_steps` bounds them at :data:`landbench.settings.MAX_STEPS`.
The checks are arithmetic plus one cached probe per optimizer: they take well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from landbench.errors import SpecError
from landbench.landscapes import family, resolve_device, resolve_dtype
from landbench.landscapes.base import Footprint, available_memory
from landbench.optimizers import OptimizerSpec, choose_mode, resolve
from landbench.settings import Settings
from landbench.spec import Spec, parse_spec

#: Copies of the ``runs x dim`` iterates a batch holds: the iterates, their gradients, up to three
#: tensors of optimizer state, and the engine's noise and start buffers.
STATE_COPIES = 6
#: A streamed p-spin regenerates its couplings at every evaluation, about 50 ns per number on a CPU:
#: more than this many (over an hour per step) is refused.
MAX_STREAMED = 10**11
#: Host memory of one record while a suite runs (its JSON is about 2 KB).
RECORD_BYTES = 8 * 1024


def size_text(n: float) -> str:
    """Bytes in binary units: ``512 B``, ``3.2 MiB``, ``4.5 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover


@dataclass(frozen=True)
class Need:
    """What one batch of a problem needs: on the device, on the host, and per evaluation."""

    footprint: Footprint
    state: int  # bytes of the batch's runs (iterates, gradients, optimizer state, metric probes)
    device: int  # bytes on the device, in all
    host: int  # bytes on the host (all of it when the device is the CPU)


def need(
    problem: str | Spec, dtype: torch.dtype, runs: int, settings: Settings, device: torch.device, free: int
) -> Need:
    """What a batch of ``runs`` runs of ``problem`` (a spec with its dim) takes, estimated without
    allocating; a bad spec raises :class:`SpecError` as building it would."""
    parsed = parse_spec(problem, what="problem")
    cls = family(parsed.name)
    footprint = cls.footprint(dtype, free, **parsed.kwargs)
    dim = footprint.coordinates or int(parsed.kwargs.get("dim", 1))  # the search space's, which runs hold
    vectors = STATE_COPIES + (settings.basin_probes + 4 if settings.curvature else 0)
    state = runs * (dim * dtype.itemsize * vectors + footprint.per_run)
    on_device = footprint.instance + state
    if device.type == "cpu":
        return Need(footprint, state, on_device + footprint.host, on_device + footprint.host)
    return Need(footprint, state, on_device, footprint.host)


def check_problem(
    problem: str | Spec,
    dtype: torch.dtype | str,
    runs: int,
    settings: Settings | None = None,
    device: torch.device | str = "cpu",
    *,
    free: int | None = None,
    host_free: int | None = None,
) -> None:
    """Refuse, with one line that says what fits, a batch of ``runs`` runs of ``problem`` that the
    device (or, for a GPU, the host that draws the instance) cannot hold, or a streamed p-spin whose
    every step would take hours. ``free``/``host_free``: bytes available (default: measured now)."""
    place = resolve_device(device)
    kind = resolve_dtype(dtype)
    settings = settings or Settings(dtype=str(kind).removeprefix("torch."))
    free = available_memory(place) if free is None else free
    host_free = (
        (free if place.type == "cpu" else available_memory(torch.device("cpu"))) if host_free is None else host_free
    )
    need_now = need(problem, kind, runs, settings, place, free)
    streamed = need_now.footprint.streamed
    too_slow = streamed > MAX_STREAMED
    too_big = need_now.device > free or need_now.host > host_free
    if not (too_slow or too_big):
        return
    dtype_name = str(kind).removeprefix("torch.")
    if too_slow:
        head = (
            f"{problem} regenerates {streamed:.3g} couplings at every evaluation (about {streamed * 5e-8 / 3600:.3g} "
            f"hours per step on a CPU; at most {MAX_STREAMED:.0e} are allowed)"
        )
    else:
        where = "this machine" if place.type == "cpu" else (str(place) if need_now.device > free else "the host")
        have = free if (place.type == "cpu" or need_now.device > free) else host_free
        total = need_now.device if (place.type == "cpu" or need_now.device > free) else need_now.host
        fp = need_now.footprint
        parts = [f"{size_text(fp.instance)} for {fp.what}"] if fp.instance >= need_now.state else []
        if runs:
            parts.append(f"{size_text(need_now.state)} for {runs} run{'s' if runs != 1 else ''}")
        if fp.instance < need_now.state:
            parts.append(f"{size_text(fp.instance)} for {fp.what}")
        head = (
            f"{problem} needs {size_text(total)} in {dtype_name} ({', '.join(parts)}); "
            f"{where} has {size_text(have)} available"
        )
    raise SpecError(f"{head}: {_what_fits(problem, kind, runs, settings, place, free, host_free)}")


def _fits(
    problem: str | Spec, kind: torch.dtype, runs: int, settings: Settings, place: torch.device, free: int, host: int
) -> bool:
    n = need(problem, kind, runs, settings, place, free)
    return n.device <= free and n.host <= host and n.footprint.streamed <= MAX_STREAMED


def _valid(problem: str | Spec) -> bool:
    try:
        parsed = parse_spec(problem, what="problem")
        family(parsed.name).canonical(**parsed.kwargs)
    except SpecError:
        return False
    return True


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest n in [low, high] with ``fits(n)``, for ``fits`` true up to some n; low - 1 when none."""
    low, top = low - 1, high
    while low < top:
        mid = (low + top + 1) // 2
        if fits(mid):
            low = mid
        else:
            top = mid - 1
    return low


def _what_fits(
    problem: str | Spec, kind: torch.dtype, runs: int, settings: Settings, place: torch.device, free: int, host: int
) -> str:
    """``use dim <= N`` (at these seeds), and/or ``or at most R runs``, or what else to do."""
    parsed = parse_spec(problem, what="problem")
    dim = int(parsed.kwargs.get("dim", 1))

    def at_dim(d: int) -> Spec:
        return Spec(parsed.name, {**parsed.kwargs, "dim": d})

    # the smallest dim the family accepts with these parameters (index <= dim, ...), then the largest that fits
    smallest = dim - _largest(lambda k: _valid(at_dim(dim - k)), 0, dim - 1)
    best_dim = _largest(lambda d: _fits(at_dim(d), kind, runs, settings, place, free, host), smallest, dim - 1)
    best_runs = _largest(lambda r: _fits(problem, kind, r, settings, place, free, host), 1, runs - 1)
    options = []
    if best_dim >= smallest:
        options.append(f"dim <= {best_dim}" + (f" (with {runs} seeds)" if runs > 1 else ""))
    if best_runs >= 1:
        options.append(f"at most {best_runs} seeds")
    if parsed.name == "pspin" and parsed.kwargs.get("storage") == "dense":
        blocks = Spec(parsed.name, {**parsed.kwargs, "storage": "blocks"})
        if _fits(blocks, kind, runs, settings, place, free, host):  # offered only where it fits
            options.append("storage='blocks'")
    if kind == torch.float64 and _fits(problem, torch.float32, runs, settings, place, free, host):
        options.append("dtype float32")
    if not options:
        return f"no dim fits on {place} with the other parameters as given: make them smaller"
    return "use " + " or ".join(options)


def check_optimizer(
    optimizer: str | OptimizerSpec, dtype: torch.dtype | str, device: torch.device | str
) -> OptimizerSpec:
    """Resolve ``optimizer`` and run its batch-safety probe on ``device`` in ``dtype`` (cached per
    spec, device and dtype); return the resolved spec."""
    resolved = resolve(optimizer)
    choose_mode(resolved, resolve_device(device), resolve_dtype(dtype))
    return resolved


def check_suite(suite: object, device: str | torch.device) -> None:
    """Check everything ``suite`` (a :class:`landbench.suite.Suite`) needs on ``device`` before any
    of its jobs runs; raise :class:`SpecError` (one line, what is valid or what fits) otherwise.

    The device exists; every scenario's problem, and every tuning batch's (the rates of a grid share
    one batch where they can: ``rates x seeds`` runs), fits in the memory available, with its
    batch of runs; every optimizer, and every rate of its tuning grid, resolves; every optimizer
    passes the batch-safety probe at each dtype it runs in; the suite's records fit on the host.
    """
    from landbench.suite import Suite
    from landbench.tuning import tuning_units

    assert isinstance(suite, Suite)
    place = resolve_device(device)
    scenarios = suite.scenarios()
    if not scenarios:
        where = f" ({suite.path})" if suite.path else ""
        raise SpecError(f"suite {suite.name!r}{where} has no problems or no optimizers to run")
    batches: dict[tuple[str, str, bool], tuple[int, Settings]] = {}

    def add(problem: str, settings: Settings, runs: int) -> None:
        key = (problem, settings.dtype, settings.curvature)
        if key not in batches or batches[key][0] < runs:
            batches[key] = (runs, settings)

    for scenario in scenarios:
        add(scenario.problem, scenario.settings, len(scenario.seeds))
    runs_total = sum(len(sc.seeds) for sc in scenarios)
    grids: dict[str, list[str]] = {}
    if suite.tuning is not None:
        for unit in tuning_units(suite.tuning, scenarios):
            if unit.optimizer not in grids:
                from landbench.tuning import with_lr

                grids[unit.optimizer] = [with_lr(unit.optimizer, lr) for lr in suite.tuning.rates_for(unit.optimizer)]
            add(unit.problem, unit.settings, len(unit.seeds) * len(grids[unit.optimizer]))
            runs_total += len(unit.seeds) * len(grids[unit.optimizer])
    free = available_memory(place)
    host_free = free if place.type == "cpu" else available_memory(torch.device("cpu"))
    for (problem, dtype, _), (runs, settings) in batches.items():
        check_problem(problem, dtype, runs, settings, place, free=free, host_free=host_free)
    if runs_total * RECORD_BYTES > host_free:
        raise SpecError(
            f"suite {suite.name!r} has {runs_total} runs, whose records need about "
            f"{size_text(runs_total * RECORD_BYTES)} "
            f"of host memory; this machine has {size_text(host_free)} available: run fewer seeds, problems or "
            f"optimizers at a time (--problem, --optimizer, --seeds)"
        )
    for name, dtype in dict.fromkeys((s.optimizer, s.settings.dtype) for s in scenarios):
        check_optimizer(name, dtype, place)
    for scenario in scenarios:
        check_representable(f"noise {scenario.noise:g}", scenario.noise, scenario.settings.dtype)
    if suite.tuning is not None:
        for unit in tuning_units(suite.tuning, scenarios):
            for lr in suite.tuning.rates_for(unit.optimizer):
                check_representable(f"the tuning rate {lr:g} of {unit.label}", lr, unit.settings.dtype)


def check_representable(what: str, value: float, dtype: str) -> None:
    """Refuse a number the runs' dtype cannot hold (it would be inf: every run would fail)."""
    largest = torch.finfo(resolve_dtype(dtype)).max
    if abs(value) > largest:
        raise SpecError(f"{what} does not fit in {dtype} (at most {largest:.4g}): give a smaller one or float64")


__all__ = [
    "available_memory",
    "check_optimizer",
    "check_problem",
    "check_representable",
    "check_suite",
    "need",
    "size_text",
]
