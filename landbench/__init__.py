"""landbench: benchmark gradient-based optimizers on analytic loss landscapes.

>>> import landbench
>>> landscape = landbench.make("saddle(dim=100, index=3)")
>>> records = landbench.run("saddle(dim=100, index=3)", "sgd(lr=0.1)", seeds=8, steps=500)
"""

from landbench._version import __version__
from landbench.api import run
from landbench.errors import BatchSafetyError, LandbenchError, SpecError, SuiteError
from landbench.landscapes import FAMILIES, CriticalPoint, Landscape, make
from landbench.mode_connectivity import connectivity

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
    "make",
    "run",
]
