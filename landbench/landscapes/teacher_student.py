"""The teacher_student family (finite sum; being written)."""

from __future__ import annotations

from landbench.landscapes.base import DIM, Landscape
from landbench.landscapes.finite_sum import SAMPLES, FiniteSum


class TeacherStudent(FiniteSum, Landscape):
    """Placeholder while the family is written."""

    family = "teacher_student"
    params = (DIM, SAMPLES)
