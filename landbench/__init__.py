"""landbench: benchmark gradient-based optimizers on analytic loss landscapes.

>>> import landbench
>>> landscape = landbench.make("saddle(dim=100, index=3)")
>>> records = landbench.run("saddle(dim=100, index=3)", "sgd(lr=0.1)", seeds=8, steps=500)

The names below are imported on first use, so that ``import landbench`` (and the pytest plugin,
which every pytest run of an environment with landbench loads) does not import torch until
something that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from landbench._version import __version__
from landbench.errors import BatchSafetyError, LandbenchError, SpecError, SuiteError

if TYPE_CHECKING:
    from landbench.api import run
    from landbench.critical import critical_points
    from landbench.landscapes import FAMILIES, CriticalPoint, Landscape, make
    from landbench.mode_connectivity import connectivity

#: Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "run": "landbench.api",
    "FAMILIES": "landbench.landscapes",
    "CriticalPoint": "landbench.landscapes",
    "Landscape": "landbench.landscapes",
    "make": "landbench.landscapes",
    "connectivity": "landbench.mode_connectivity",
    "critical_points": "landbench.critical",
}

__all__ = [
    "FAMILIES",
    "BatchSafetyError",
    "CriticalPoint",
    "Landscape",
    "LandbenchError",
    "SpecError",
    "SuiteError",
    "__version__",
    "connectivity",
    "critical_points",
    "make",
    "run",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'landbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
