"""Quality of the classical optimizers at the learning rates the shipped baselines tuned for each family.

The numbers come from :mod:`landbench.asv_tracking` (the module users subclass too): each class runs
its problems once per asv run, in ``setup_cache``, and its ``track_`` methods report per optimizer
numbers where larger is worse. A median that lands on a run that never escaped (censored) is nan,
which asv shows as n/a, never a made-up step count.
"""

from __future__ import annotations

from landbench.asv_tracking import LandbenchScores, reference_spec

#: Classics of ``landbench/references/baselines.jsonl.gz``, by label; each runs at the rate tuned
#: for the problem's family there (``reference_spec``).
CLASSICS = ["gd", "sgd(momentum=0.9)", "adam", "rmsprop"]


class _Classics(LandbenchScores):
    """The classics at their tuned rates, in float64 like the baselines (still abstract: no problems)."""

    optimizers = CLASSICS
    dtype = "float64"

    def optimizer_spec(self, optimizer: str, problem: str) -> str:
        return reference_spec(optimizer, problem)


class SaddleEscape(_Classics):
    """Median steps to escape the index-3 saddle in dimension 100 (unit: steps)."""

    problems = ["saddle(dim=100, index=3)"]
    metrics = ("escape_steps",)


class ClassicalGap(_Classics):
    """Median final loss gap on Rosenbrock in dimension 10 after 3000 steps, and the diverged share."""

    problems = ["rosenbrock(dim=10)"]
    steps = 3000
    metrics = ("loss_gap", "diverged")


class WideBasin(_Classics):
    """Share of runs that miss the wide basin, and the median sharpness where they end.

    In dimension 2 the narrow well catches some runs (none to a quarter of them for the
    classics); from dimension 5 on every classic ends in the wide one, and the number would be 0.
    """

    problems = ["basins(dim=2)"]
    seeds = 16
    metrics = ("basin_miss", "sharpness")
