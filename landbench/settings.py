"""Settings of a run that are not the problem, the optimizer or the scenario: dtype and metrics."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.metrics.curvature import (
    DEFAULT_BASIN_PROBES,
    DEFAULT_HUTCHINSON_PROBES,
    DEFAULT_LANCZOS_ITERATIONS,
    DEFAULT_TAU,
)
from landbench.noise import check_noise_model
from landbench.spec import Param, bind_params

#: The largest step budget: steps cost time, not memory, and a billion steps of even the smallest
#: problem take hours; a larger budget is a typo.
MAX_STEPS = 10**9
#: The most run seeds (or instances) of one scenario: each run's record stays in memory while a suite runs.
MAX_SEEDS = 10**6
#: The largest run or instance seed.
MAX_SEED = 2**63 - 1

#: Targets on the loss gap f - f*, as in COCO: 10, 1, 0.1, ..., 1e-8.
DEFAULT_TARGETS: tuple[float, ...] = tuple(10.0 ** (1 - i) for i in range(10))

_PARAMS = (
    Param("dtype", str, "float32", "floating-point type of the runs", choices=("float32", "float64")),
    Param("curvature", bool, True, "compute sharpness, hessian_trace and basin_width at the final points"),
    Param("tau", float, DEFAULT_TAU, "loss rise that defines basin_width, in loss units", low=0.0, low_open=True),
    Param("lanczos_iterations", int, DEFAULT_LANCZOS_ITERATIONS, "Lanczos steps for sharpness", low=1, high=1024),
    Param("hutchinson_probes", int, DEFAULT_HUTCHINSON_PROBES, "Rademacher probes for hessian_trace", low=1, high=4096),
    Param("basin_probes", int, DEFAULT_BASIN_PROBES, "random directions for basin_width", low=1, high=4096),
    Param("curve_points", int, 50, "log-spaced steps at which each run's loss is recorded", low=2, high=10000),
)


@dataclass(frozen=True)
class Settings:
    """Metric and precision settings, with documented defaults.

    * ``targets``: thresholds on ``loss_gap`` (default ``10, 1, ..., 1e-8``, as in COCO). Per target a
      record holds when the run reached it and held it to the end of its budget (``reach_steps``,
      ``reach_evals``: what every view counts, see :mod:`landbench.outcomes`) and COCO's first
      hitting time (``first_hit_steps``, ``first_hit_evals``: for comparison only).
    * ``tau``: basin_width is the radius where the mean loss rise along random directions
      reaches ``tau`` (default 0.1, in loss units).
    * ``noise_model``: the law of the gradient noise (:mod:`landbench.noise`; default ``gaussian``).
    * ``batch_size``: on a finite-sum landscape (:mod:`landbench.landscapes.finite_sum`), the examples
      each gradient averages over, drawn per run without replacement within an epoch
      (:mod:`landbench.minibatch`); None (the default) is the full batch.
    * the rest: see ``landbench list --json`` or the README.
    """

    dtype: str = "float32"
    targets: tuple[float, ...] = DEFAULT_TARGETS
    curvature: bool = True
    tau: float = DEFAULT_TAU
    lanczos_iterations: int = DEFAULT_LANCZOS_ITERATIONS
    hutchinson_probes: int = DEFAULT_HUTCHINSON_PROBES
    basin_probes: int = DEFAULT_BASIN_PROBES
    curve_points: int = 50
    #: the gradient-noise model (:mod:`landbench.noise`), canonical; only a non-default one is stored
    noise_model: str = "gaussian"
    #: the minibatch size on a finite-sum landscape; None: the full batch (only a number is stored)
    batch_size: int | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "settings") -> Settings:
        """Validate ``values``; unknown keys or bad values raise :class:`SpecError` naming what is valid."""
        values = dict(values)
        if isinstance(values.get("dtype"), torch.dtype):
            values["dtype"] = str(values["dtype"]).removeprefix("torch.")
        targets = values.pop("targets", DEFAULT_TARGETS)
        model = values.pop("noise_model", "gaussian")
        batch = check_batch_size(values.pop("batch_size", None), where)
        bound = bind_params(where, _PARAMS, values, noun="setting", also_valid=["targets"])
        return cls(targets=_targets(targets, where), noise_model=check_noise_model(model), batch_size=batch, **bound)

    def metric_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`landbench.metrics.curvature.curvature_metrics` these
        settings give: Lanczos iterations, Hutchinson probes, tau and basin-width directions."""
        return {
            "iterations": self.lanczos_iterations,
            "probes": self.hutchinson_probes,
            "tau": self.tau,
            "basin_probes": self.basin_probes,
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as stored in each record (and hashed into run keys): ``noise_model`` only when
        it is not the default and ``batch_size`` only when it is a number, so that full-batch gaussian
        runs keep their keys and records."""
        out = asdict(self)
        out["targets"] = list(self.targets)
        if out["noise_model"] == "gaussian":
            del out["noise_model"]
        if out["batch_size"] is None:
            del out["batch_size"]
        return out


#: The largest minibatch size (the most examples a finite-sum family holds).
MAX_BATCH_SIZE = 2**24 - 1


#: The word that names the full batch where a number is expected (a suite's list, ``--batch-size``).
FULL_BATCH = "full"


def check_batch_size(value: Any, where: str = "batch_size") -> int | None:
    """A minibatch size: a positive integer up to :data:`MAX_BATCH_SIZE` (a string of digits from the
    command line), or None or ``"full"`` (the full batch). Anything else raises :class:`SpecError`
    saying what is valid."""
    if isinstance(value, str):
        value = value.strip()
        if value.isascii() and value.isdigit():
            value = int(value)
    if value is None or value == FULL_BATCH:
        return None
    if not is_integer(value) or not 1 <= int(value) <= MAX_BATCH_SIZE:
        raise SpecError(
            f"{where}: batch_size must be a whole number of examples from 1 to {MAX_BATCH_SIZE}, "
            f"or {FULL_BATCH!r} (the full batch), got {_short(value)}"
        )
    return int(value)


def _targets(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = [value]
    bad = SpecError(f"{where}: targets must be a non-empty list of positive finite numbers, got {_short(value)}")
    if not isinstance(value, (list, tuple)) or not value:
        raise bad
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise bad
        try:
            number = float(item)
        except (OverflowError, ValueError):
            raise bad from None
        if not 0 < number < math.inf:
            raise bad
        out.append(number)
    return tuple(sorted(set(out), reverse=True))


def is_integer(value: Any) -> bool:
    """An integer, Python's or numpy's, but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def normalize_seeds(seeds: int | Sequence[int], where: str = "seeds") -> list[int]:
    """A count n means run seeds 0..n-1; a list is taken as given (non-negative, no repeats)."""
    if is_integer(seeds):
        if seeds < 1:  # type: ignore[operator]
            raise SpecError(f"{where} must be a count >= 1 or a list of run seeds, got {seeds}")
        if seeds > MAX_SEEDS:  # type: ignore[operator]
            raise SpecError(f"{where} must be a count of at most {MAX_SEEDS} seeds per scenario, got {_short(seeds)}")
        return list(range(int(seeds)))  # type: ignore[arg-type]
    if isinstance(seeds, (str, bytes, Mapping)):
        values = []
    else:
        try:
            values = list(itertools.islice(iter(seeds), MAX_SEEDS + 1))  # type: ignore[arg-type]
        except TypeError:
            values = []
    if len(values) > MAX_SEEDS:
        raise SpecError(f"{where} lists more than {MAX_SEEDS} run seeds")
    if not values or any(not is_integer(s) or not 0 <= s <= MAX_SEED for s in values):
        raise SpecError(
            f"{where} must be a count >= 1 or a non-empty list of non-negative integers (below 2**63), "
            f"got {_short(seeds)}"
        )
    values = [int(s) for s in values]
    if len(set(values)) != len(values):
        raise SpecError(f"{where} lists a run seed twice: {values!r}")
    return values


def _short(value: Any) -> str:
    """``repr`` of a value, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_steps(steps: Any, where: str = "steps") -> int:
    """The step budget: an integer from 1 to :data:`MAX_STEPS`."""
    if not is_integer(steps) or steps < 1:
        raise SpecError(f"{where} must be an integer >= 1, got {_short(steps)}")
    if steps > MAX_STEPS:
        raise SpecError(
            f"{where} must be at most {MAX_STEPS:.0e} (a billion steps take hours on any problem), got {_short(steps)}"
        )
    return int(steps)


def check_noise(noise: Any) -> float:
    """The gradient-noise standard deviation: a finite number >= 0."""
    try:
        ok = not isinstance(noise, bool) and isinstance(noise, numbers.Real) and 0 <= float(noise) < math.inf
    except (OverflowError, ValueError, TypeError):
        ok = False
    if not ok:
        raise SpecError(
            f"noise must be a finite number >= 0 (the gradient-noise standard deviation), got {_short(noise)}"
        )
    return float(noise) + 0.0  # -0.0 is 0.0: the same scenario, the same key
