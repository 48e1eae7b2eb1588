"""The matrix_sensing family (finite sum; being written)."""

from __future__ import annotations

from landbench.landscapes.base import DIM, Landscape
from landbench.landscapes.finite_sum import SAMPLES, FiniteSum


class MatrixSensing(FiniteSum, Landscape):
    """Placeholder while the family is written."""

    family = "matrix_sensing"
    params = (DIM, SAMPLES)
