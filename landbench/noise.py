"""Gradient-noise models: the law of the noise the engine adds to every gradient, ``noise * draw``.

A model is named by a short spec (a suite's ``noise_model``, ``--noise-model``, ``landbench.run``'s
``noise_model``); ``noise`` keeps its meaning as the noise's size:

=========================  ===========================================================================
``gaussian`` (default)     independent standard normal draws per coordinate and evaluation:
                           ``noise`` is the standard deviation (the records of every suite before
                           noise models were added, bit for bit).
``student_t(nu=...)``      Student-t with ``nu > 0`` degrees of freedom per coordinate, independent per
                           evaluation, drawn as ``z / sqrt(2 G / nu)`` with ``z`` standard normal and
                           ``G ~ Gamma(nu/2)``. For ``nu > 2`` it is scaled by ``sqrt((nu - 2)/nu)`` so
                           that ``noise`` stays the standard deviation; for ``nu <= 2`` the variance is
                           infinite and ``noise`` is the t law's scale (the standard t times ``noise``).
                           Tails: ``P(|X| > x) ~ x^-nu``.
``alpha_stable(alpha=.)``  symmetric alpha-stable per coordinate, ``0 < alpha <= 2``, characteristic
                           function ``exp(-|noise t|^alpha)``: ``noise`` is the scale parameter (not a
                           standard deviation, which is infinite for ``alpha < 2``; ``alpha = 2`` is a
                           normal law of variance ``2 noise^2``, ``alpha = 1`` a Cauchy law of scale
                           ``noise``). Chambers-Mallows-Stuck sampling (1976): ``U ~ U(-pi/2, pi/2)``,
                           ``W ~ Exp(1)``, ``X = sin(alpha U) / cos(U)^(1/alpha) *
                           (cos((1 - alpha) U) / W)^((1 - alpha)/alpha)`` (``tan U`` at ``alpha = 1``).
                           Tails: ``P(|X| > x) ~ x^-alpha``. For small alpha a draw can exceed the
                           largest float32 number; the run then diverges, as it would.
``frozen`` or              a fixed function of the point, per run: the noise at ``x`` is a standard
``frozen(cell=...)``       normal vector drawn from a counter-based hash keyed by the run (instance
                           seed, run seed) and by ``floor(x / cell)`` coordinate-wise (default cell
                           ``1e-3``): the same ``x`` (the same cell) always gets the same noise, another
                           cell independent noise. It is a piecewise-constant random field, as COCO's
                           noisy functions are fixed functions of x and a seed: an optimizer that stands
                           still sees the same error again and cannot average it away. The draw uses
                           exact integer and IEEE operations only (as :func:`landbench.rng.counter_normal`),
                           so it is the same on every device and for any batching.
=========================  ===========================================================================

Every model is per run and reproducible: a run's noise depends on its instance seed, its run seed
(and for ``frozen``, its point) only, never on which runs share its batch; the draws are made on the
landscape's device (:class:`landbench.rng.RunNoise`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from landbench.errors import SpecError

#: The models, with their parameter (None: none).
MODELS: dict[str, str | None] = {"gaussian": None, "student_t": "nu", "alpha_stable": "alpha", "frozen": "cell"}
#: The default cell of ``frozen``.
FROZEN_CELL = 1e-3
DEFAULT = "gaussian"
VALID = (
    "gaussian, student_t(nu=...) with nu > 0, alpha_stable(alpha=...) with 0 < alpha <= 2, "
    "frozen or frozen(cell=...) with cell > 0"
)
_SPEC = re.compile(r"^\s*([A-Za-z_]+)\s*(?:\(\s*(?:([A-Za-z_]+)\s*=\s*)?([^()=,\s]*)\s*\))?\s*$")


@dataclass(frozen=True)
class NoiseModel:
    """A parsed noise model: its name and parameter (None for gaussian)."""

    name: str
    value: float | None = None

    @property
    def canonical(self) -> str:
        """The model's spec as records, keys and suites hold it: ``"student_t(nu=3.0)"``."""
        parameter = MODELS[self.name]
        if parameter is None:
            return self.name
        return f"{self.name}({parameter}={float(self.value)!r})"  # type: ignore[arg-type]

    @property
    def unit_scale(self) -> float:
        """The factor applied to a standard draw so that ``noise`` means what the table above says."""
        if self.name == "student_t" and self.value is not None and self.value > 2:
            return math.sqrt((self.value - 2) / self.value)
        return 1.0

    def __str__(self) -> str:
        return self.canonical


def _bad(value: object, why: str = "") -> SpecError:
    text = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return SpecError(f"noise_model must be one of {VALID}; got {text}{f' ({why})' if why else ''}")


def parse_noise_model(value: object) -> NoiseModel:
    """A noise model from its spec (``"student_t(nu=3)"``, ``"student_t(3)"``, ``"frozen"``, a
    :class:`NoiseModel`); anything else raises :class:`SpecError` naming the valid models."""
    if isinstance(value, NoiseModel):
        return value
    if not isinstance(value, str):
        raise _bad(value)
    match = _SPEC.match(value)
    if match is None or match.group(1) not in MODELS:
        raise _bad(value)
    name, key, text = match.group(1), match.group(2), match.group(3)
    parameter = MODELS[name]
    if text is None or text == "":
        if key is not None:
            raise _bad(value)
        if name == "frozen":
            return NoiseModel(name, FROZEN_CELL)
        if parameter is None:
            return NoiseModel(name)
        raise _bad(value, f"{name} needs {parameter}=...")
    if parameter is None or (key is not None and key != parameter):
        raise _bad(value, f"{name} takes {'no parameter' if parameter is None else parameter + '=...'}")
    try:
        number = float(text)
    except ValueError:
        raise _bad(value) from None
    if not math.isfinite(number):
        raise _bad(value, f"{parameter} must be finite")
    if name == "student_t" and not number > 0:
        raise _bad(value, "nu must be > 0")
    if name == "alpha_stable" and not 0 < number <= 2:
        raise _bad(value, "alpha must be in (0, 2]")
    if name == "frozen" and not number > 0:
        raise _bad(value, "cell must be > 0")
    return NoiseModel(name, number)


def check_noise_model(value: object) -> str:
    """The canonical spec of a noise model (see :func:`parse_noise_model`)."""
    return parse_noise_model(value).canonical
