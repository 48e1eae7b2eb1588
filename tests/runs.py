"""Experiments that several test files run through landbench (not references: those are in reference.py)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np

import landbench


def mean_noise_escape(index: int, sigma: float, seeds: int = 600, dim: int | None = None) -> tuple[float, float]:
    """Mean escape step (and its standard error) of GD with gradient noise ``sigma``, started exactly
    at the saddle of index ``index`` (dimension ``index + 2`` unless given); float64."""
    records = landbench.run(
        f"saddle(dim={dim or index + 2}, index={index}, init_radius=0.0)",
        "sgd(lr=0.1)",
        seeds=seeds,
        steps=600,
        noise=sigma,
        dtype="float64",
        curvature=False,
    )
    steps = np.array([r["escape_step"] for r in records], dtype=float)
    assert all(r["escaped"] for r in records)
    return float(steps.mean()), float(steps.std() / math.sqrt(len(steps)))


def load_script(path: Path) -> ModuleType:
    """A script of the project's ``scripts/`` folder (not a package) as a module, to test its functions."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
