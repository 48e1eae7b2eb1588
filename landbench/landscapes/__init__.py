"""The catalogue of landscape families and :func:`make`, which builds one from a spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import CriticalPoint, Known, Landscape
from landbench.landscapes.basins import Basins
from landbench.landscapes.classical import Ackley, Levy, Quadratic, Rastrigin, Rosenbrock, StyblinskiTang
from landbench.landscapes.gaussian_field import GaussianField
from landbench.landscapes.pspin import PSpin
from landbench.landscapes.saddle import Saddle
from landbench.landscapes.saddle_chain import SaddleChain
from landbench.landscapes.valley import Valley
from landbench.spec import Spec, parse_spec, suggest

FAMILIES: dict[str, type[Landscape]] = {
    cls.family: cls
    for cls in (
        Saddle,
        SaddleChain,
        GaussianField,
        PSpin,
        Basins,
        Valley,
        Quadratic,
        Rosenbrock,
        Rastrigin,
        Ackley,
        StyblinskiTang,
        Levy,
    )
}

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype from a dtype or its name ("float32", "float64", ...)."""
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
    what is valid, and so does an instance too big for the memory available (estimated from its
    parameters before anything is allocated: :func:`landbench.preflight.check_problem`).
    """
    parsed = parse_spec(spec, what="problem")
    cls = family(parsed.name)
    place, kind = resolve_device(device), resolve_dtype(dtype)
    from landbench.preflight import check_problem  # here: preflight needs this module

    check_problem(parsed, kind, 0, None, place)  # the instance alone, estimated before anything is allocated
    try:
        return cls(seed=seed, device=place, dtype=kind, **parsed.kwargs)
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError) and "memory" not in str(exc) and "alloc" not in str(exc):
            raise
        raise SpecError(
            f"{parsed}: not enough memory on {place} to build this landscape ({type(exc).__name__}); use a smaller dim"
        ) from None


def resolve_device(device: torch.device | str) -> torch.device:
    """A torch device that exists on this machine; otherwise a SpecError saying what is valid."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise SpecError(f"unknown device {device!r}; valid devices are 'cpu', 'cuda' and 'cuda:N'")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SpecError("device 'cuda' was asked for, but torch sees no CUDA GPU on this machine; use 'cpu'")
        if resolved.index is not None and resolved.index >= count:
            raise SpecError(f"device {device!r} does not exist: torch sees {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return resolved


__all__ = ["FAMILIES", "CriticalPoint", "Known", "Landscape", "family", "make", "resolve_device", "resolve_dtype"]
