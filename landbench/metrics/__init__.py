"""Metrics of runs and of landscapes at points: curvature (sharpness, Hessian trace, basin width)."""

from landbench.metrics.curvature import (
    DEFAULT_BASIN_PROBES,
    DEFAULT_HUTCHINSON_PROBES,
    DEFAULT_LANCZOS_ITERATIONS,
    DEFAULT_TAU,
    basin_width,
    hessian_trace,
    sharpness,
)

__all__ = [
    "DEFAULT_BASIN_PROBES",
    "DEFAULT_HUTCHINSON_PROBES",
    "DEFAULT_LANCZOS_ITERATIONS",
    "DEFAULT_TAU",
    "basin_width",
    "hessian_trace",
    "sharpness",
]
