"""What the speed benchmarks share: families, dimensions, batch, device, and what cannot run.

asv times every commit of a history with this (the current) benchmarks folder, so the speed
benchmarks use only what landbench has had from its first commit: ``make``, ``loss_and_grad``,
``run_batch`` and ``resolve``; a family that a commit does not have is skipped there. (For that
reason the device helpers below do not come from ``landbench.asv_tracking``, which old commits lack.)
"""

from __future__ import annotations

import os

import torch

#: Every family of the catalogue, in a fixed list: asv needs the same parameters at every commit.
FAMILIES: list[str] = [
    "saddle",
    "saddle_chain",
    "gaussian_field",
    "pspin",
    "basins",
    "valley",
    "quadratic",
    "rosenbrock",
    "rastrigin",
    "ackley",
    "styblinski_tang",
    "levy",
    "least_squares",
    "deep_linear",
    "matrix_sensing",
    "phase_retrieval",
    "teacher_student",
]
DIMS: list[int] = [10, 1000]
#: Runs per batch: the rows of the ``(BATCH, dim)`` tensor.
BATCH = 16

#: Arguments besides ``dim``: the Gaussian field keeps 256 random features (its default up to
#: d = 16) so that its cost grows like d, not d^2 (``max(256, 16 d)`` features at d = 1000 take
#: 64 MB and a second to build, too slow for a suite that runs in well under a minute).
EXTRA_ARGS: dict[str, str] = {"gaussian_field": ", features=256"}

#: (family, dim) pairs that are skipped, with the reason asv prints.
TOO_LARGE: dict[tuple[str, int], str] = {
    ("pspin", 1000): "the 3-spin couplings take 4 N^3 bytes, 4 GB at N = 1000",
    ("matrix_sensing", 1000): "256 sensing matrices of 1000 x 1000 (packed) take 512 MB",
    ("deep_linear", 1000): "three 1000 x 1000 layers per run: 3e6 coordinates, 16 runs, seconds a step",
}


def problem_spec(family: str, dim: int) -> str:
    """The problem spec timed for ``family`` at ``dim``; NotImplementedError (asv: skipped) if it cannot run."""
    from landbench.landscapes import FAMILIES as installed

    if family not in installed:
        raise NotImplementedError(f"{family}: not in this version of landbench")
    if (family, dim) in TOO_LARGE:
        raise NotImplementedError(f"{family} at dim={dim}: {TOO_LARGE[family, dim]}")
    return f"{family}(dim={dim}{EXTRA_ARGS.get(family, '')})"


def device() -> torch.device:
    """``$LANDBENCH_ASV_DEVICE`` (``cuda`` on a GPU machine), else the CPU."""
    return torch.device(os.environ.get("LANDBENCH_ASV_DEVICE", "cpu") or "cpu")


def synchronize(place: torch.device) -> None:
    """Wait for the GPU's queued work inside a timed region (a no-op on the CPU)."""
    if place.type == "cuda":
        torch.cuda.synchronize(place)
