"""The least_squares family (finite sum; being written)."""

from __future__ import annotations

from landbench.landscapes.base import DIM, Landscape
from landbench.landscapes.finite_sum import SAMPLES, FiniteSum


class LeastSquares(FiniteSum, Landscape):
    """Placeholder while the family is written."""

    family = "least_squares"
    params = (DIM, SAMPLES)
