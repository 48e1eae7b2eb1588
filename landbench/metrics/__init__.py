"""Metrics of runs and of landscapes at points: curvature (sharpness, Hessian trace, basin width)."""

from landbench.metrics.curvature import (
    DEFAULT_BASIN_PROBES,
    DEFAULT_HUTCHINSON_PROBES,
    DEFAULT_LANCZOS_ITERATIONS,
    DEFAULT_TAU,
    basin_width,
    curvature_metrics,
    hessian_trace,
    needs_float64,
    sharpness,
)

__all__ = [
    "DEFAULT_BASIN_PROBES",
    "DEFAULT_HUTCHINSON_PROBES",
    "DEFAULT_LANCZOS_ITERATIONS",
    "DEFAULT_TAU",
    "basin_width",
    "curvature_metrics",
    "hessian_trace",
    "needs_float64",
    "sharpness",
]
