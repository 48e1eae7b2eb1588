"""Settings of a run that are not the problem, the optimizer or the scenario: dtype and metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
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
from landbench.spec import Param, bind_params

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

    * ``targets``: thresholds on ``loss_gap`` whose first hitting step is recorded (default
      ``10, 1, ..., 1e-8``, as in COCO).
    * ``tau``: basin_width is the radius where the mean loss rise along random directions
      reaches ``tau`` (default 0.1, in loss units).
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

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "settings") -> Settings:
        """Validate ``values``; unknown keys or bad values raise :class:`SpecError` naming what is valid."""
        values = dict(values)
        if isinstance(values.get("dtype"), torch.dtype):
            values["dtype"] = str(values["dtype"]).removeprefix("torch.")
        targets = values.pop("targets", DEFAULT_TARGETS)
        bound = bind_params(where, _PARAMS, values, noun="setting", also_valid=["targets"])
        return cls(targets=_targets(targets, where), **bound)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as stored in each record."""
        out = asdict(self)
        out["targets"] = list(self.targets)
        return out


def _targets(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise SpecError(f"{where}: targets must be a non-empty list of positive finite numbers, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item < math.inf:
            raise SpecError(f"{where}: targets must be a non-empty list of positive finite numbers, got {value!r}")
        out.append(float(item))
    return tuple(sorted(set(out), reverse=True))
