"""The catalogue of landscape families and :func:`make`, which builds one from a spec.

The catalogue (:data:`FAMILIES`) is landbench's own families, then those that installed packages
register in the ``landbench.landscapes`` entry-point group, name to class::

    [project.entry-points."landbench.landscapes"]
    double_well = "landbench_double_well:DoubleWell"

The class subclasses :class:`Landscape` and its ``family`` is the entry point's name; its class
attribute ``group`` (a word such as ``"wells"``, its own name when it sets none) is the family group
the ranking and the report put it in (:func:`family_group`). A registered family is imported the
first time it is looked up (``make``, a suite, ``landbench describe``) or the catalogue is listed,
never by ``import landbench``. A registered name that is a built-in family is ignored, with a
warning; a registered family that cannot be loaded is one :class:`~landbench.errors.SpecError` line
naming its entry point when it is asked for, a warning when the catalogue is listed, and leaves every
other family as it was. ``examples/landscape_plugin/`` is a complete example.
"""

from __future__ import annotations

import importlib.metadata
import sys
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.landscapes.base import CriticalPoint, Known, Landscape
from landbench.landscapes.basins import Basins
from landbench.landscapes.classical import Ackley, Levy, Quadratic, Rastrigin, Rosenbrock, StyblinskiTang
from landbench.landscapes.deep_linear import DeepLinear
from landbench.landscapes.gaussian_field import GaussianField
from landbench.landscapes.least_squares import LeastSquares
from landbench.landscapes.matrix_sensing import MatrixSensing
from landbench.landscapes.phase_retrieval import PhaseRetrieval
from landbench.landscapes.pspin import PSpin
from landbench.landscapes.saddle import Saddle
from landbench.landscapes.saddle_chain import SaddleChain
from landbench.landscapes.teacher_student import TeacherStudent
from landbench.landscapes.valley import Valley
from landbench.spec import Spec, parse_spec, suggest

#: The entry-point group through which other packages register landscape families.
ENTRY_POINT_GROUP = "landbench.landscapes"
#: The class attribute through which a registered family names its group for the ranking and the report.
GROUP_ATTRIBUTE = "group"

#: landbench's own families (their groups are :data:`landbench.ranking.GROUPS`).
BUILTIN: dict[str, type[Landscape]] = {
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
        LeastSquares,
        DeepLinear,
        MatrixSensing,
        PhaseRetrieval,
        TeacherStudent,
    )
}


def _one_line(exc: BaseException) -> str:
    """``Type: the last line of its message`` (a message of many lines ends with what went wrong)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def _package(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return repr(dist.name) if dist is not None else "(unknown)"


_said: set[str] = set()


def _say_once(message: str) -> None:
    """A warning given once per process, however often the catalogue is read, on one line
    (``landbench: UserWarning: ...``: no source line, which would be landbench's, not the plug-in's)."""
    if message not in _said:
        _said.add(message)
        warnings.warn_explicit(message, UserWarning, "landbench", 0, module="landbench")


#: (sys.path when read, {name: entry point}): the registered families, read again when sys.path changes
_registry: tuple[tuple[str, ...], dict[str, importlib.metadata.EntryPoint]] | None = None
#: (sys.path, name, entry point value) -> the class, or the message of why it cannot be loaded
_loaded: dict[tuple[tuple[str, ...], str, str], type[Landscape] | str] = {}


def registered() -> dict[str, importlib.metadata.EntryPoint]:
    """Families that installed packages register in the ``landbench.landscapes`` entry-point group,
    by name (nothing is imported). A built-in name is ignored (with a warning, once); a name two
    packages register is taken from the first (with a warning, once)."""
    global _registry
    path = tuple(sys.path)
    if _registry is not None and _registry[0] == path:
        return _registry[1]
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        name = entry_point.name
        if name in BUILTIN:
            _say_once(
                f"landscape family {name!r} registered by the package {_package(entry_point)} as "
                f"{entry_point.value!r} is ignored: {name!r} is a built-in family; register it under another name"
            )
        elif name in found and found[name].value != entry_point.value:
            _say_once(
                f"landscape family {name!r} is registered twice, as {found[name].value!r} by the package "
                f"{_package(found[name])} and as {entry_point.value!r} by {_package(entry_point)}; the first is used"
            )
        else:
            found.setdefault(name, entry_point)
    _registry = (path, found)
    return found


def _load(name: str, entry_point: importlib.metadata.EntryPoint) -> type[Landscape]:
    """The class a registered family names, checked; a SpecError of one line naming the entry point."""
    key = (tuple(sys.path), name, entry_point.value)
    if key not in _loaded:
        _loaded[key] = _try_load(name, entry_point)
    found = _loaded[key]
    if isinstance(found, str):
        raise SpecError(found)
    return found


def _try_load(name: str, entry_point: importlib.metadata.EntryPoint) -> type[Landscape] | str:
    package = _package(entry_point)
    where = f"landscape family {name!r} (entry point {name} = {entry_point.value!r} of the package {package})"
    try:
        target = entry_point.load()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - whatever a plug-in's import runs; SystemExit must not end landbench
        return f"{where} cannot be loaded: {_one_line(exc)}"
    if not isinstance(target, type) or not issubclass(target, Landscape):
        if isinstance(target, type):
            what = f"the class {target.__module__}.{target.__qualname__}"
        else:
            what = f"a {type(target).__name__}"
        return f"{where} is {what}, not a subclass of landbench.Landscape"
    if target.family != name:
        return (
            f"{where}: its class declares family = {target.family!r}; the class's family must be the entry point's "
            f"name, {name!r}"
        )
    group = getattr(target, GROUP_ATTRIBUTE, name)
    if not isinstance(group, str) or not group.strip():
        return f"{where}: its class attribute {GROUP_ATTRIBUTE} must be a non-empty string, got {group!r}"
    return target


class Families(Mapping[str, type[Landscape]]):
    """The catalogue, name to class: the built-in families in their order, then the registered ones
    sorted by name, each imported when first looked up. Iterating (``landbench list``) leaves out a
    registered family that cannot be loaded, with a warning; looking it up raises its SpecError."""

    def __getitem__(self, name: str) -> type[Landscape]:
        if name in BUILTIN:
            return BUILTIN[name]
        plugins = registered()
        if name in plugins:
            return _load(name, plugins[name])
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        try:
            self[name]  # type: ignore[index]
        except (KeyError, SpecError):
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        yield from BUILTIN
        for name, entry_point in sorted(registered().items()):
            try:
                _load(name, entry_point)
            except SpecError as exc:
                _say_once(f"{exc}; it is left out")
                continue
            yield name

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Families({', '.join(self)})"


#: Every family: the built-in ones, then the registered ones (see :class:`Families`).
FAMILIES: Mapping[str, type[Landscape]] = Families()


def family_group(name: str) -> str | None:
    """The group a registered family declares (its class attribute ``group``, its own name where it
    sets none), or None for a name that is not a registered family or cannot be loaded. The groups of
    the built-in families are :data:`landbench.ranking.GROUPS`."""
    plugins = registered()
    if name in BUILTIN or name not in plugins:
        return None
    try:
        cls = _load(name, plugins[name])
    except SpecError:
        return None
    return str(getattr(cls, GROUP_ATTRIBUTE, name))


_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype from a dtype or its name ("float32", "float64", ...)."""
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise SpecError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(_DTYPES)}")
    return _DTYPES[name]


def family(name: str) -> type[Landscape]:
    """The landscape class of a family name, built-in or registered; an unknown name lists the valid
    ones, and a registered one that cannot be loaded says why in one line."""
    try:
        return FAMILIES[name]
    except KeyError:
        names = list(FAMILIES)
        raise SpecError(
            f"unknown landscape family {name!r}{suggest(name, names)}; valid families: {', '.join(names)}"
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
            if parsed.name in BUILTIN:
                raise
            raise SpecError(f"{parsed}: the registered family failed to build: {_one_line(exc)}") from None
        raise SpecError(
            f"{parsed}: not enough memory on {place} to build this landscape ({type(exc).__name__}); use a smaller dim"
        ) from None
    except (SpecError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # a registered family's constructor, whatever it runs: never end landbench
        if parsed.name in BUILTIN:
            raise
        raise SpecError(f"{parsed}: the registered family failed to build: {_one_line(exc)}") from None


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
            raise SpecError(f"device {str(resolved)!r} was asked for, but torch sees no CUDA GPU here; use 'cpu'")
        if resolved.index is not None and resolved.index >= count:
            raise SpecError(f"device {device!r} does not exist: torch sees {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return resolved


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "FAMILIES",
    "GROUP_ATTRIBUTE",
    "CriticalPoint",
    "Families",
    "Known",
    "Landscape",
    "family",
    "family_group",
    "make",
    "registered",
    "resolve_device",
    "resolve_dtype",
]
