"""The phase_retrieval family (finite sum; being written)."""

from __future__ import annotations

from landbench.landscapes.base import DIM, Landscape
from landbench.landscapes.finite_sum import SAMPLES, FiniteSum


class PhaseRetrieval(FiniteSum, Landscape):
    """Placeholder while the family is written."""

    family = "phase_retrieval"
    params = (DIM, SAMPLES)
