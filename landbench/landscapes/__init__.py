"""The catalogue of landscape families and :func:`make`, which builds one from a spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import CriticalPoint, Known, Landscape
from landbench.landscapes.classical import Ackley, Levy, Quadratic, Rastrigin, Rosenbrock, StyblinskiTang
from landbench.landscapes.saddle import Saddle
from landbench.landscapes.saddle_chain import SaddleChain
from landbench.spec import Spec, parse_spec, suggest

FAMILIES: dict[str, type[Landscape]] = {
    cls.family: cls for cls in (Saddle, SaddleChain, Quadratic, Rosenbrock, Rastrigin, Ackley, StyblinskiTang, Levy)
}

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype from a dtype or its name ("float32", "float64", ...)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise SpecError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(_DTYPES)}")
    return _DTYPES[name]


def family(name: str) -> type[Landscape]:
    """The landscape class of a family name; an unknown name lists the valid ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise SpecError(
            f"unknown landscape family {name!r}{suggest(name, list(FAMILIES))}; valid families: {', '.join(FAMILIES)}"
        ) from None


def make(
    spec: str | Mapping[str, Any] | Spec,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float32,
) -> Landscape:
    """Build a landscape instance from a spec such as ``"saddle(dim=100, index=3)"``.

    ``seed`` is the instance seed: random families (a rotated saddle, ...) are a deterministic
    function of (spec, seed), drawn on the CPU and then moved to ``device``, so every device sees
    the same instance. Bad names or arguments raise :class:`~landbench.errors.SpecError` naming
    what is valid.
    """
    parsed = parse_spec(spec, what="problem")
    return family(parsed.name)(seed=seed, device=resolve_device(device), dtype=resolve_dtype(dtype), **parsed.kwargs)


def resolve_device(device: torch.device | str) -> torch.device:
    """A torch device that exists on this machine; otherwise a SpecError saying what is valid."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise SpecError(f"unknown device {device!r}; valid devices look like 'cpu', 'cuda' or 'cuda:1'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("device 'cuda' was asked for, but torch sees no CUDA GPU on this machine; use 'cpu'")
    return resolved


__all__ = ["FAMILIES", "CriticalPoint", "Known", "Landscape", "family", "make", "resolve_device", "resolve_dtype"]
