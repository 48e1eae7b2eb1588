"""The Landscape contract: a batched, differentiable loss with what is known about it.

A landscape evaluates ``B`` points at once: ``x`` has shape ``(B, dim)`` and ``loss(x)`` shape
``(B,)``. Families override :meth:`Landscape.loss_and_grad` and :meth:`Landscape.hvp` with closed
forms; the autograd versions here are the fallback and the reference the tests compare against.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from landbench.errors import SpecError
from landbench.outcomes import is_diverged
from landbench.rng import cpu_generator, generators
from landbench.spec import Param, bind_params, format_spec, non_defaults

DIM = Param("dim", int, doc="dimension d of the search space", low=1)


def available_memory(device: torch.device) -> int:
    """Bytes available now on ``device``: CUDA's free memory, or the host's ``MemAvailable``
    (``/proc/meminfo``; free pages where that file is missing)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no way to know: do not refuse
        return 2**62


@dataclass(frozen=True)
class Footprint:
    """What an instance of a family takes, estimated from its parameters without allocating anything
    (:meth:`Landscape.footprint`; :mod:`landbench.preflight` checks it against the machine before a run).

    ``instance``: bytes the instance holds on its device (couplings, random features, frames, known
    points), described by ``what``; ``per_run``: bytes of work space per run of a batch while it is
    evaluated, beyond the run's own state; ``host``: bytes drawn at once in float64 on the host while
    building (what a GPU run needs of the host's memory); ``streamed``: numbers regenerated at every
    evaluation (a p-spin whose couplings are streamed in blocks), the cost of a step in time;
    ``coordinates``: the dimension of the search space where it is not the spec's ``dim`` (a network
    family's weights: ``dim`` is its data's dimension there), 0 where it is.
    """

    instance: int = 0
    what: str = "its known points"
    per_run: int = 0
    host: int = 0
    streamed: int = 0
    coordinates: int = 0


@dataclass(frozen=True)
class FamilyField:
    """A record field that a family adds (see :meth:`Landscape.record_fields`), with how a set of
    runs is summarised over it, so that every view (the CLI's table, the assertions, the report,
    the asv metrics) reads the family's own summary instead of knowing the family.

    ``summarize(records)`` gets the records of one problem's runs (diverged ones included: they hold
    null in the field, and the family says what that counts as) and returns a JSON-ready dict;
    ``describe(summary)`` turns it into a few words for a table cell.
    """

    name: str
    doc: str
    summarize: Callable[[Sequence[dict[str, Any]]], dict[str, Any]]
    describe: Callable[[dict[str, Any]], str]


def where_runs_ended(records: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    """Where runs ended, by a categorical final-point field (``basin``, ``mode``): the number of runs
    per value (``"none"`` where the run ended in none), the diverged runs apart (they ended nowhere:
    :mod:`landbench.outcomes`), and the number of runs."""
    counts: dict[str, int] = {}
    diverged = 0
    for record in records:
        if is_diverged(record):
            diverged += 1
            continue
        value = record.get(name)
        label = "none" if value is None else str(value)
        counts[label] = counts.get(label, 0) + 1
    ordered = dict(sorted(counts.items(), key=lambda item: (item[0] == "none", len(item[0]), item[0])))
    return {"runs": len(records), "diverged": diverged, "ended_in": ordered}


def describe_ends(name: str) -> Callable[[dict[str, Any]], str]:
    """The table text of :func:`where_runs_ended`: ``"basin 0:50% 1:25% none:25%"`` (diverged runs
    are a column of their own in every table)."""

    def describe(summary: dict[str, Any]) -> str:
        runs = summary["runs"] or 1
        shares = " ".join(f"{value}:{100 * count / runs:.0f}%" for value, count in summary["ended_in"].items())
        return f"{name} {shares}" if shares else ""  # every run diverged: nothing ended anywhere

    return describe


@dataclass(frozen=True)
class CriticalPoint:
    """A known critical point: its location, loss value, Morse index and Hessian summary.

    ``point`` is one representative location (for a manifold of minima, one point of it; the
    ``note`` says which set it represents). ``lambda_max``/``lambda_min``/``trace`` describe the
    Hessian there; ``None`` where it does not exist (a kink) or is not known.
    """

    kind: str  # "minimum", "saddle" or "maximum"
    value: float
    point: torch.Tensor | None = None
    index: int = 0
    lambda_max: float | None = None
    lambda_min: float | None = None
    trace: float | None = None
    note: str = ""

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (the point is summarised, not listed, when it is long)."""
        out: dict[str, Any] = {"kind": self.kind, "value": self.value, "index": self.index}
        if self.point is not None:
            values = self.point.detach().cpu().double()
            out["point"] = [float(v) for v in values] if values.numel() <= 8 else _describe_vector(values)
        for key in ("lambda_max", "lambda_min", "trace"):
            out[key] = getattr(self, key)
        if self.note:
            out["note"] = self.note
        return out


def _describe_vector(v: torch.Tensor) -> str:
    nonzero = int((v != 0).sum())
    head = ", ".join(f"{float(x):.6g}" for x in v[:3])
    return f"[{head}, ...] (d={v.numel()}, {nonzero} nonzero, norm {float(v.norm()):.6g})"


@dataclass
class Known:
    """What is known about an instance: optimum value, designated saddle (runs start near it),
    minima (global first) and other saddles (the barriers between minima, a chain's saddles)."""

    f_star: float | None = None
    saddle: CriticalPoint | None = None
    minima: list[CriticalPoint] = field(default_factory=list)
    saddles: list[CriticalPoint] = field(default_factory=list)

    def placed(self, place: Callable[[CriticalPoint], CriticalPoint]) -> Known:
        """The same knowledge with every point passed through ``place`` (device and dtype)."""
        return Known(
            f_star=self.f_star,
            saddle=place(self.saddle) if self.saddle else None,
            minima=[place(m) for m in self.minima],
            saddles=[place(s) for s in self.saddles],
        )


class Landscape:
    """Base class of every landscape family.

    Subclasses declare ``family``, ``params`` (a tuple of :class:`~landbench.spec.Param`, ``dim``
    first), ``formula`` and ``reference``, and implement :meth:`loss`, :meth:`_build` (draw the
    instance from a CPU generator and fill ``self.known``) and :meth:`_sample_start`. Parameters
    become attributes of the same name.
    """

    family: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = (DIM,)
    formula: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    start: ClassVar[str] = ""  # the start distribution, in words
    constrained: ClassVar[bool] = False  # True when project_/tangent/retract are not the identity
    #: the fields this family adds to a run's record, and how runs are summarised over them
    outcome_fields: ClassVar[tuple[FamilyField, ...]] = ()
    dim: int

    def __init__(
        self,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpecError(f"{self.family}: the instance seed must be a non-negative integer, got {seed!r}")
        self.values = bind_params(self.family, self.params, kwargs)
        for name, value in self.values.items():
            setattr(self, name, value)
        self._check()
        self.seed = seed
        self.device = torch.device(device)
        self.dtype = dtype
        self.spec = format_spec(self.family, non_defaults(self.params, self.values))
        self.known = Known()
        self._build()
        self._check_known()
        self.known = self.known.placed(self.place)

    def _check_known(self) -> None:
        """Known values must be finite numbers (extreme parameters can overflow them)."""
        points = ([self.saddle] if self.saddle else []) + list(self.minima)
        values = [self.f_star] + [p.value for p in points]
        if any(v is not None and not math.isfinite(v) for v in values):
            raise SpecError(
                f"{self.spec}: these parameters overflow the landscape's known values (f* = {self.f_star}); "
                f"choose parameters of moderate size"
            )

    @classmethod
    def canonical(cls, **kwargs: Any) -> str:
        """Validate parameters exactly as the constructor does, without building an instance,
        and return the canonical spec string (e.g. for planning a suite of huge landscapes)."""
        values = bind_params(cls.family, cls.params, kwargs)
        probe = cls.__new__(cls)
        probe.__dict__.update(values)
        probe._check()
        return format_spec(cls.family, non_defaults(cls.params, values))

    @classmethod
    def footprint(cls, dtype: torch.dtype, free: int, **kwargs: Any) -> Footprint:
        """What an instance with these parameters takes (:class:`Footprint`), in ``dtype`` on a device
        with ``free`` bytes available, estimated without building it; parameters are validated as the
        constructor does (a :class:`SpecError` for a bad one)."""
        values = bind_params(cls.family, cls.params, kwargs)
        probe = cls.__new__(cls)
        probe.__dict__.update(values)
        probe._check()
        return probe._footprint(dtype, free)

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        """A family's estimate (see :meth:`footprint`; parameters are attributes, nothing is built).
        The default: a few known points of dimension d, in float64 on the host and in ``dtype`` on
        the device."""
        return Footprint(instance=4 * self.dim * (8 + dtype.itemsize), host=4 * self.dim * 8)

    # --- what a family provides ------------------------------------------------------------

    def _check(self) -> None:
        """Cross-parameter checks (e.g. index <= dim); raise SpecError with what is valid."""

    def _build(self) -> None:
        """Draw the instance (see :meth:`instance_generator`) and fill ``self.known``."""

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The loss of each row of ``x``: shape ``(B, dim)`` to ``(B,)``."""
        raise NotImplementedError

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        """One start point, float64 on the CPU, shape ``(dim,)``."""
        raise NotImplementedError

    # --- derived, with autograd fallbacks ------------------------------------------------------

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss ``(B,)`` and gradient ``(B, dim)``; autograd unless the family gives a closed form.

        Both are fresh tensors that the caller may modify in place (the engine adds noise to the
        gradient).
        """
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            value = self.loss(x)
            (grad,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), grad

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Hessian-vector products ``H(x_b) v_b`` for each row b; autograd unless overridden."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.loss(x).sum(), x, create_graph=True)
            (product,) = torch.autograd.grad((grad * v).sum(), x)
        return product

    def project_(self, x: torch.Tensor) -> None:
        """Map iterates back onto the feasible set in place (a no-op for unconstrained families)."""

    def sample_start(self, seeds: Sequence[int]) -> torch.Tensor:
        """Start points for run seeds ``seeds``: ``(len(seeds), dim)`` on the device.

        Run ``s`` on instance ``i`` starts from a CPU generator seeded with (i, s), so a run's start
        does not depend on the other runs of its batch, nor on the device.
        """
        streams = generators((self.seed,), [int(s) for s in seeds], ("start",))  # one hashing pass
        rows = [self._sample_start(stream) for stream in streams]
        return torch.stack(rows).to(device=self.device, dtype=self.dtype)

    # --- what is known ----------------------------------------------------------------------

    @property
    def f_star(self) -> float | None:
        """The global minimum value, or None when it is not known."""
        return self.known.f_star

    @property
    def saddle(self) -> CriticalPoint | None:
        """The designated saddle runs start near (point and value), or None."""
        return self.known.saddle

    @property
    def minima(self) -> list[CriticalPoint]:
        """Known minima, global first."""
        return self.known.minima

    @property
    def escape_thresholds(self) -> list[float]:
        """Losses at which a run has escaped each designated saddle, in order.

        One saddle: halfway from its value down to f*. A family with a chain of saddles (see
        saddle_chain) overrides this with one threshold per saddle.
        """
        if self.saddle is None or self.f_star is None:
            return []
        return [self.saddle.value + 0.5 * (self.f_star - self.saddle.value)]

    def record_fields(
        self, x: torch.Tensor, escape_steps: torch.Tensor | None, diverged: torch.Tensor
    ) -> dict[str, list[Any]]:
        """Family-specific fields of each run's record, from the final iterates ``x`` (B, d), the
        escape steps (B, n_saddles; -1 when censored) and which runs diverged (B,), e.g. which
        basin a run ended in (null for a diverged run, whose final iterate means nothing). One
        list of B JSON values per field; none by default."""
        return {}

    def tangent(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Project directions ``v`` onto the feasible set's tangent space at ``x`` (identity when
        unconstrained). Curvature metrics probe only tangent directions."""
        return v

    def retract(self, x: torch.Tensor) -> torch.Tensor:
        """Map points back onto the feasible set, out of place (identity when unconstrained)."""
        return x

    def facts(self) -> dict[str, Any]:
        """Other known numbers of the instance, JSON-ready (barriers, threshold energies, ...)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: formula, parameters, start distribution, known points, facts."""
        return {
            "spec": self.spec,
            "family": self.family,
            "formula": self.formula,
            "reference": self.reference,
            "parameters": dict(self.values),
            "instance": self.seed,
            "start": self.start,
            "f_star": self.f_star,
            "saddle": self.saddle.summary() if self.saddle else None,
            "minima": [m.summary() for m in self.minima],
            "saddles": [s.summary() for s in self.known.saddles],
            "facts": self.facts(),
        }

    def __repr__(self) -> str:
        return f"<Landscape {self.spec} instance={self.seed} {self.device} {self.dtype}>"

    def astype(self, dtype: torch.dtype) -> Landscape:
        """The same instance in another floating-point type: a shallow copy whose floating tensors
        are cast (the metrics evaluate loss differences of float32 runs in float64 with it)."""
        if dtype == self.dtype:
            return self
        twin = copy.copy(self)
        twin.dtype = dtype
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                setattr(twin, name, value.to(dtype))
        twin.known = self.known.placed(twin.place)
        return twin

    def tensor_bytes(self) -> int:
        """Bytes held in the instance's tensors (its couplings, frames, frequencies, ...), each storage once."""
        storages = {
            v.untyped_storage().data_ptr(): v.untyped_storage().nbytes()
            for v in vars(self).values()
            if isinstance(v, torch.Tensor)
        }
        return sum(storages.values())

    # --- helpers for families ------------------------------------------------------------------

    def place(self, point: CriticalPoint) -> CriticalPoint:
        """The critical point with its location on this landscape's device and dtype."""
        if point.point is None:
            return point
        return dataclasses.replace(point, point=self._tensor(point.point))

    def instance_generator(self, *parts: int | str) -> torch.Generator:
        """The CPU generator of this instance, seeded by (family, instance seed, ``parts``).

        A family passes the parameters its random draw depends on (e.g. dim and index for the
        rotated saddle's frame), so that changing another parameter keeps the same draw. Draw in
        float64 on the CPU, then :meth:`_tensor`: the CPU and the GPU get the same instance.
        """
        return cpu_generator(self.family, self.seed, *parts)

    def _tensor(self, value: torch.Tensor) -> torch.Tensor:
        """Cast a float64 CPU tensor to this landscape's dtype and device."""
        return value.to(device=self.device, dtype=self.dtype)


def squared_norm(t: torch.Tensor) -> torch.Tensor:
    """``|t_b|^2`` for each row b.

    Without autograd it is ``vector_norm(t)^2``, one pass with no (B, d) temporary (3-5 times faster
    than ``(t * t).sum(1)`` at large d); under autograd it is ``(t * t).sum(1)``, whose second
    derivative is smooth at 0, where the norm's is not.
    """
    if t.requires_grad and torch.is_grad_enabled():
        return (t * t).sum(1)
    return torch.linalg.vector_norm(t, dim=1).square()


def smoothstep(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``S(t) = t^3 (10 - 15 t + 6 t^2)`` on [0, 1] (clamped outside) and its first two derivatives:
    0 and 1 at the ends with vanishing first and second derivatives there."""
    inside = (t > 0) & (t < 1)
    t = t.clamp(0.0, 1.0)
    value = t * t * t * (10.0 - 15.0 * t + 6.0 * t * t)
    slope = torch.where(inside, 30.0 * t * t * (1.0 - t) ** 2, torch.zeros_like(t))
    curvature = torch.where(inside, 60.0 * t * (1.0 - t) * (1.0 - 2.0 * t), torch.zeros_like(t))
    return value, slope, curvature


def uniform_box(generator: torch.Generator, dim: int, low: float, high: float) -> torch.Tensor:
    """A point uniform in the box ``[low, high]^dim`` (float64, CPU)."""
    return low + (high - low) * torch.rand(dim, generator=generator, dtype=torch.float64)


def uniform_sphere(generator: torch.Generator, dim: int, radius: float) -> torch.Tensor:
    """A point uniform on the sphere of the given radius about 0 (float64, CPU)."""
    z = torch.randn(dim, generator=generator, dtype=torch.float64)
    return radius * z / z.norm()


def family_params(params: Sequence[Param]) -> list[dict[str, Any]]:
    """Parameters as JSON-ready dicts, for ``landbench list``."""
    return [
        {
            "name": p.name,
            "type": p.kind.__name__,
            "default": None if p.required else p.default,
            "required": p.required,
            "valid": p.describe_range(),
            "doc": p.doc,
        }
        for p in params
    ]
