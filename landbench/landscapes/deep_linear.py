"""The deep_linear family (finite sum; being written)."""

from __future__ import annotations

from landbench.landscapes.base import DIM, Landscape
from landbench.landscapes.finite_sum import SAMPLES, FiniteSum


class DeepLinear(FiniteSum, Landscape):
    """Placeholder while the family is written."""

    family = "deep_linear"
    params = (DIM, SAMPLES)
