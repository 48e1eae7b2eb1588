"""Track landbench scores per commit with asv (airspeed velocity), in any repository.

Subclass :class:`LandbenchScores` in a module of your asv ``benchmarks/`` folder and name the
optimizers and problems; asv then runs every problem once per asv run (in ``setup_cache``) and
tracks, per optimizer and problem, numbers where larger is worse (asv's convention)::

    from landbench.asv_tracking import LandbenchScores

    class MyOptimizerScores(LandbenchScores):
        optimizers = ["mypkg.optim:MyOpt(lr=0.01)", "adam(lr=0.01)"]
        problems = ["saddle(dim=100, index=3)", "rosenbrock(dim=10)", "basins(dim=2)"]
        seeds = 8
        steps = 1000

The metrics (``track_`` methods; ``metrics`` selects them, by default all):

============== ========= ===================================================================
metric         unit      value
============== ========= ===================================================================
escape_steps   steps     median escape step over the runs (saddle problems)
loss_gap       loss      median final ``loss - f*`` (problems with a known f*)
basin_miss     fraction  share of runs that did not end in the widest well (``basins``)
sharpness      curvature median largest Hessian eigenvalue at the last iterate
diverged       fraction  share of runs whose loss became NaN or inf
test_loss      loss      median population loss at the last iterate (finite-sum families)
gen_gap        loss      median ``test_loss - final_loss``, the generalization gap (finite sums)
============== ========= ===================================================================

On a finite-sum family (``least_squares``, ``teacher_student``, ...) ``batch_size`` sets the
minibatch size of every run (:mod:`landbench.minibatch`; default: the full batch); the class's
other problems run their full batch.

A run that never escaped is censored, never a number: the median counts it as infinitely late,
and a median that lands on a censored (or diverged) run is ``nan``, which asv shows as ``n/a``
(as it does for a metric that does not apply to a problem, such as ``escape_steps`` on
Rosenbrock). Diverged runs count as infinitely bad in every median and as misses in
``basin_miss``.

The base class is abstract (its ``optimizers`` and ``problems`` are abstract), so asv does not
discover it where it is imported; a subclass that sets both is discovered, with its inherited
``track_`` methods. Each such subclass gets a ``setup_cache`` of its own (asv shares a cache
between benchmarks whose ``setup_cache`` comes from the same file and line, which an inherited
method would), and a ``version`` that changes with its settings, so that asv starts a new series
when ``seeds``, ``steps`` or the like change.

A subclass is checked when it is created, that is when asv imports the module: its lists, metric
names and dtype, every problem spec (validated without building the landscape) and every optimizer
spec that :meth:`LandbenchScores.optimizer_spec` gives, resolved, its module imported. A mistake
raises a one-line ``TypeError`` that ``asv check`` and ``asv run`` print as they are, instead of a
``setup_cache`` that asv reports only as "failed" unless it is given ``-e``. An optimizer whose
module cannot be imported names the missing package, the interpreter, and how to install it.

Installing: asv benchmarks the project of the repository it runs in, so your optimizer package is
that project. In the environments asv builds, asv installs it at every commit (``build_command``
and ``install_command``) and the rest from ``matrix.req``: ``"torch": ["2.13.0"]`` and, since
landbench is not on the package index, ``"landbench": ["../landbench"]`` (a checkout beside your
repository; asv 0.6.6 reads only ``../name`` or ``./name`` paths) or a ``git+https://`` URL. With
``asv run --python=same`` nothing is installed for you: ``python -m pip install ../landbench -e .``
first. The README's "Tracking your optimizer's landbench scores with asv" has the whole recipe,
which ``tests/test_asv.py`` runs as written.

The device is ``LANDBENCH_ASV_DEVICE`` (default ``cpu``; ``cuda`` on a GPU machine). Set
``"launch_method": "forkserver"`` in asv.conf.json: asv then imports torch once, not once per
benchmark and parameter.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import importlib
import inspect
import linecache
import math
import os
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from landbench.api import run
from landbench.errors import SpecError
from landbench.landscapes import Landscape, family, make, resolve_dtype
from landbench.landscapes.finite_sum import applicable_batch_size, finite_sum_families, is_finite_sum_problem
from landbench.noise import check_noise_model
from landbench.optimizers import ENTRY_POINT_GROUP, resolve
from landbench.outcomes import summarize
from landbench.settings import check_batch_size
from landbench.spec import parse_spec

#: Environment variable that selects the device the scores are computed on.
DEVICE_ENV = "LANDBENCH_ASV_DEVICE"

#: How to make an optimizer's package importable where asv runs (the end of the import-time error).
INSTALL_HINT = (
    "Install it in the environment asv runs the benchmarks in: `python -m pip install -e .` in your "
    "repository before `asv run --python=same`; in the environments that asv builds, asv installs your "
    "repository's own package at every commit (build_command and install_command in asv.conf.json) and "
    "any other package listed in matrix.req (landbench's README, \"Tracking your optimizer's landbench "
    'scores with asv").'
)

#: Bump when the definition of a metric changes (it enters every subclass's asv ``version``).
SCORES_VERSION = 1

Record = Mapping[str, Any]


def benchmark_device() -> torch.device:
    """The device of the benchmarks: ``$LANDBENCH_ASV_DEVICE``, else the CPU."""
    return torch.device(os.environ.get(DEVICE_ENV, "cpu") or "cpu")


@functools.lru_cache(maxsize=1)
def _tuned_specs() -> dict[tuple[str, str], str]:
    """(label, family) -> the optimizer spec the shipped baselines chose for that family."""
    from landbench.references import load_reference

    return {(r["label"], r["tuning"]["family"]): r["optimizer"] for r in load_reference("baselines")}


def reference_labels() -> list[str]:
    """The optimizers of the shipped baselines, by label (their spec without ``lr``)."""
    return sorted({label for label, _ in _tuned_specs()})


def reference_spec(label: str, problem: str) -> str:
    """The spec of a classic at the learning rate the shipped baselines tuned for ``problem``'s family.

    ``reference_spec("adam", "saddle(dim=100, index=3)")`` is ``"adam(lr=10.0)"``: the rate Adam
    was given on the saddle family by ``landbench run baselines`` (see the README).
    """
    family = parse_spec(problem, what="problem").name
    try:
        return _tuned_specs()[(label, family)]
    except KeyError:
        raise ValueError(
            f"no tuned rate for {label!r} on the {family!r} family in the shipped baselines; "
            f"labels: {', '.join(reference_labels())}"
        ) from None


# The metrics: each maps one scenario's records (and its landscape) to one number, larger is worse.
# Each reads landbench.outcomes.summarize, the summary every view shows: a diverged run escaped
# nothing and ranks worst in every median; a median that falls on a censored or diverged run is nan.


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def escape_steps(records: Sequence[Record], landscape: Landscape) -> float:
    """Median escape step; runs that never escaped (or diverged) count as infinitely late."""
    escapes = summarize(list(records)).escapes
    return math.nan if escapes is None else _or_nan(escapes.median)  # nan: no designated saddle


def loss_gap(records: Sequence[Record], landscape: Landscape) -> float:
    """Median final ``loss - f*``; diverged runs count as infinitely far; nan when f* is unknown."""
    return _or_nan(summarize(list(records)).median_loss_gap)


def basin_miss(records: Sequence[Record], landscape: Landscape) -> float:
    """Share of runs that did not end in the widest well's basin, diverged runs included (nan unless
    the family is ``basins``)."""
    basins = summarize(list(records)).family.get("basin")
    return math.nan if basins is None or basins["wide_share"] is None else 1.0 - basins["wide_share"]


def sharpness(records: Sequence[Record], landscape: Landscape) -> float:
    """Median largest Hessian eigenvalue at the last iterate; diverged runs count as infinitely sharp."""
    return _or_nan(summarize(list(records)).median_sharpness)  # nan also when curvature metrics were off


def diverged(records: Sequence[Record], landscape: Landscape) -> float:
    """Share of runs whose loss became NaN or inf."""
    result = summarize(list(records))
    return result.diverged / result.runs


def test_loss(records: Sequence[Record], landscape: Landscape) -> float:
    """Median population (test) loss at the last iterate; diverged runs count as infinitely bad;
    nan on a landscape that is not a finite sum."""
    return _or_nan(summarize(list(records)).median_test_loss)


def gen_gap(records: Sequence[Record], landscape: Landscape) -> float:
    """Median generalization gap ``test_loss - final_loss`` at the last iterate; diverged runs count
    as infinitely bad; nan on a landscape that is not a finite sum."""
    return _or_nan(summarize(list(records)).median_generalization_gap)


#: Metric name -> (summary of a scenario's records, asv unit).
METRICS: dict[str, tuple[Callable[[Sequence[Record], Landscape], float], str]] = {
    "escape_steps": (escape_steps, "steps"),
    "loss_gap": (loss_gap, "loss"),
    "basin_miss": (basin_miss, "fraction"),
    "sharpness": (sharpness, "curvature"),
    "diverged": (diverged, "fraction"),
    "test_loss": (test_loss, "loss"),
    "gen_gap": (gen_gap, "loss"),
}
#: The metrics before finite sums: a subclass that tracks every metric keeps the asv version it had.
_FIRST_METRICS = ("escape_steps", "loss_gap", "basin_miss", "sharpness", "diverged")

Scores = dict[tuple[str, str, str], float]


def _track(metric: str) -> Callable[..., float]:
    """The ``track_<metric>`` method: look the number up in the cache that ``setup_cache`` made."""

    def track(self: LandbenchScores, scores: Scores, optimizer: str, problem: str) -> float:
        return scores[(metric, optimizer, problem)]

    track.__name__ = track.__qualname__ = f"track_{metric}"
    track.__doc__ = f"{METRICS[metric][0].__doc__} Unit: {METRICS[metric][1]}; larger is worse."
    track.unit = METRICS[metric][1]  # type: ignore[attr-defined]
    return track


class LandbenchScores(abc.ABC):
    """Base class of asv benchmarks that track landbench scores; subclass it and set the attributes.

    Required: ``optimizers`` (specs, or labels that :meth:`optimizer_spec` turns into specs) and
    ``problems`` (problem specs with ``dim``). Optional: ``seeds`` (a count or a list), ``steps``,
    ``noise``, ``noise_model`` (the noise's law, :mod:`landbench.noise`), ``batch_size`` (the
    minibatch size on finite-sum families, :mod:`landbench.minibatch`), ``instance``, ``dtype``,
    ``metrics`` (names of :data:`METRICS` to track) and asv's
    ``timeout`` (it also bounds ``setup_cache``, which runs everything).
    """

    seeds: ClassVar[int | Sequence[int]] = 8
    steps: ClassVar[int] = 1000
    noise: ClassVar[float] = 0.0
    noise_model: ClassVar[str] = "gaussian"
    batch_size: ClassVar[int | None] = None
    instance: ClassVar[int] = 0
    dtype: ClassVar[str] = "float32"
    metrics: ClassVar[Sequence[str]] = tuple(METRICS)
    timeout: ClassVar[float] = 600.0
    param_names: ClassVar[list[str]] = ["optimizer", "problem"]

    @property
    @abc.abstractmethod
    def optimizers(self) -> Sequence[str]:
        """The optimizers to track (an asv parameter)."""

    @property
    @abc.abstractmethod
    def problems(self) -> Sequence[str]:
        """The problem specs to run them on, each with ``dim`` (an asv parameter)."""

    track_escape_steps = _track("escape_steps")
    track_loss_gap = _track("loss_gap")
    track_basin_miss = _track("basin_miss")
    track_sharpness = _track("sharpness")
    track_diverged = _track("diverged")
    track_test_loss = _track("test_loss")
    track_gen_gap = _track("gen_gap")

    def optimizer_spec(self, optimizer: str, problem: str) -> str:
        """The spec to run for the parameter ``optimizer`` on ``problem`` (by default itself)."""
        return optimizer

    def compute_scores(self) -> Scores:
        """Run every optimizer on every problem and summarise: ``{(metric, optimizer, problem): value}``."""
        device = benchmark_device()
        scores: Scores = {}
        for problem in self.problems:
            landscape = make(problem, seed=self.instance, device=device, dtype=self.dtype)
            for optimizer in self.optimizers:
                records = run(
                    landscape,
                    self.optimizer_spec(optimizer, problem),
                    seeds=self.seeds,
                    steps=self.steps,
                    noise=self.noise,
                    noise_model=self.noise_model,
                    batch_size=applicable_batch_size(problem, self.batch_size),
                    curvature="sharpness" in self.metrics,
                )
                for metric in self.metrics:
                    scores[(metric, optimizer, problem)] = float(METRICS[metric][0](records, landscape))
        return scores

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if any(isinstance(getattr(cls, name), property) for name in ("optimizers", "problems")):
            return  # still abstract: an intermediate base, not a benchmark
        _check(cls)
        cls.params = [list(cls.optimizers), list(cls.problems)]
        for metric in METRICS:
            name = f"track_{metric}"
            if metric not in cls.metrics:
                setattr(cls, name, None)  # not a function: asv does not discover it
            elif getattr(cls, name) is None:  # hidden by a parent that tracked less
                setattr(cls, name, LandbenchScores.__dict__[name])
        if "version" not in cls.__dict__:
            digest = hashlib.sha256(_settings(cls).encode()).hexdigest()[:16]
            cls.version = f"landbench-scores-{SCORES_VERSION}-{digest}"
        if "setup_cache" not in cls.__dict__:
            cls.setup_cache = _own_setup_cache(cls)


def _check(cls: type[LandbenchScores]) -> None:
    """Refuse a subclass whose settings cannot run, at import (so that ``asv check`` and ``asv run`` say why).

    Everything that ``setup_cache`` would otherwise find out only when it runs (a failure that asv
    reports as a bare "failed" unless it is given ``-e``) is checked here: the lists, the metric
    names, the dtype, every problem spec (validated without building the landscape) and every
    optimizer spec that :meth:`LandbenchScores.optimizer_spec` gives for each problem, resolved,
    its module imported.
    """
    for name in ("optimizers", "problems"):
        value = getattr(cls, name)
        if isinstance(value, str) or not value or not all(isinstance(v, str) for v in value):
            raise TypeError(f"{cls.__qualname__}.{name} must be a non-empty list of spec strings, got {value!r}")
    unknown = [cls.metrics] if isinstance(cls.metrics, str) else [m for m in cls.metrics if m not in METRICS]
    if unknown:
        raise TypeError(
            f"{cls.__qualname__}.metrics must be a list of metric names, got {unknown!r}; valid: {', '.join(METRICS)}"
        )
    try:
        resolve_dtype(cls.dtype)
    except SpecError as exc:
        raise TypeError(f"{cls.__qualname__}.dtype: {exc}") from None
    try:
        check_noise_model(cls.noise_model)
    except SpecError as exc:
        raise TypeError(f"{cls.__qualname__}.noise_model: {exc}") from None
    try:
        batch_size = check_batch_size(cls.batch_size, "batch_size")
    except SpecError as exc:
        raise TypeError(f"{cls.__qualname__}.{exc}") from None
    for problem in cls.problems:
        try:
            parsed = parse_spec(problem, what="problem")
            if "dim" not in parsed.kwargs:
                raise TypeError(f"{cls.__qualname__}.problems: {problem!r} must give dim, e.g. 'saddle(dim=100)'")
            canonical = family(parsed.name).canonical(**parsed.kwargs)
        except SpecError as exc:
            raise TypeError(f"{cls.__qualname__}.problems: {exc}") from None
        try:
            applicable_batch_size(canonical, batch_size)
        except SpecError as exc:
            raise TypeError(f"{cls.__qualname__}.batch_size: {exc}") from None
    if batch_size is not None and not any(is_finite_sum_problem(p) for p in cls.problems):
        raise TypeError(
            f"{cls.__qualname__}.batch_size: no problem is a finite sum; batch sizes apply to {finite_sum_families()}"
        )
    probe = object.__new__(cls)  # optimizer_spec may read the class's settings; __init__ is asv's to call
    checked: set[str] = set()
    for optimizer in cls.optimizers:
        for problem in cls.problems:
            try:
                spec = probe.optimizer_spec(optimizer, problem)
            except ValueError as exc:  # e.g. a label that reference_spec does not know
                raise TypeError(f"{cls.__qualname__}.optimizers: {optimizer!r} on {problem!r}: {exc}") from None
            if spec not in checked:
                _check_optimizer(cls.__qualname__, optimizer, spec)
                checked.add(spec)


def _check_optimizer(owner: str, optimizer: str, spec: str) -> None:
    """Resolve the spec of ``owner``'s ``optimizer``; a module that cannot be imported names the package to install."""
    where = f"{owner}.optimizers: {optimizer!r}" + ("" if spec == optimizer else f" (spec {spec!r})")
    try:
        name = parse_spec(spec, what="optimizer").name
        if ":" in name:
            _import_optimizer_module(where, name.partition(":")[0])
        resolve(spec)
    except SpecError as exc:
        hint = (
            f"; a name that a package registers (entry-point group {ENTRY_POINT_GROUP!r}) needs that package "
            f"installed in this environment ({sys.executable})"
            if str(exc).startswith("unknown optimizer")
            else ""
        )
        raise TypeError(f"{where}: {exc}{hint}") from None


def _import_optimizer_module(where: str, module: str) -> None:
    """Import an optimizer's module, or say which package is missing from this environment and how to add it."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) and exc.name else None
        cause = f"the package {missing!r} is not installed" if missing else "it cannot be imported"
        raise TypeError(
            f"{where}: cannot import {module!r} ({type(exc).__name__}: {exc}): {cause} in this environment "
            f"({sys.executable}). {INSTALL_HINT}"
        ) from None


def _settings(cls: type[LandbenchScores]) -> str:
    """The settings that change what a subclass's numbers mean (they enter its asv version)."""
    seeds = cls.seeds if isinstance(cls.seeds, int) else list(cls.seeds)
    law = check_noise_model(cls.noise_model)
    batch = check_batch_size(cls.batch_size)  # one spelling per size: 8 and "8" are one series, "full" none
    metrics = list(_FIRST_METRICS) if set(cls.metrics) == set(METRICS) else list(cls.metrics)
    return (
        f"seeds={seeds!r}, steps={cls.steps!r}, noise={cls.noise!r}, instance={cls.instance!r}, "
        f"dtype={cls.dtype!r}, metrics={metrics!r}"
        + ("" if law == "gaussian" else f", noise_model={law!r}")  # gaussian: the versions asv already has
        + ("" if batch is None else f", batch_size={batch!r}")
    )


def _own_setup_cache(cls: type[LandbenchScores]) -> Callable[[LandbenchScores], Scores]:
    """A ``setup_cache`` for ``cls`` alone.

    asv keys a setup cache by the defining module and the source line of ``setup_cache``, so an
    inherited method would make every subclass share the first one's numbers. This one is compiled
    from a few lines of its own (registered with :mod:`linecache`, so that ``inspect`` can read
    them) that claim ``cls``'s module and sit at ``cls``'s line there: a key that is unique per class
    and the same in every process.
    """
    try:
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        line = zlib.crc32(f"{cls.__module__}.{cls.__qualname__}".encode()) % 100_000 + 1
    filename = f"<landbench.asv_tracking setup_cache of {cls.__module__}.{cls.__qualname__}>"
    body = [
        "def setup_cache(self):",
        f"    # {cls.__qualname__}: {_settings(cls)}",
        "    return self.compute_scores()",
    ]
    source = "\n" * (line - 1) + "\n".join(body) + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    function = namespace["setup_cache"]
    function.__module__ = cls.__module__
    function.__qualname__ = f"{cls.__qualname__}.setup_cache"
    function.__doc__ = "Run every optimizer on every problem once per asv run; the track_ methods read the numbers."
    return function


__all__ = [
    "DEVICE_ENV",
    "METRICS",
    "LandbenchScores",
    "basin_miss",
    "benchmark_device",
    "diverged",
    "escape_steps",
    "gen_gap",
    "loss_gap",
    "reference_labels",
    "reference_spec",
    "sharpness",
    "test_loss",
]
