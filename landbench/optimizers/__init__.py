"""Optimizer specs: ``"adam(lr=1e-3)"`` to a validated factory of torch optimizers.

A name is looked up in three places, in order:

1. landbench's own: ``gd`` (plain gradient descent), ``sam`` (Foret et al. 2021, around any base),
   ``pgd`` (perturbed gradient descent, Jin et al. 2017);
2. every :mod:`torch.optim` class, by its lower-case name: ``sgd``, ``adam``, ``adamw``,
   ``rmsprop``, ``adagrad``, ``nadam``, ``radam``, ``adamax``, ``asgd``, ``rprop``, ``adadelta``,
   ``adafactor``, ``muon``, ``lbfgs``, ``sparseadam``;
3. the ``landbench.optimizers`` entry-point group, through which an installed package registers
   names (``[project.entry-points."landbench.optimizers"] mine = "pkg.module:Class"``).

``"pkg.module:Class(...)"`` imports any other class, such as one written for ordinary torch models.
Arguments are checked against the class's signature, so a typo or a bad value fails before anything
runs, with a message that names what is valid; for a class that takes ``**kwargs``, an argument
outside its signature is refused too when a trial instance keeps it nowhere (no attribute, no
param-group default) or keeps it only in its param groups and never reads it in a step. How the
runs of a batch are stepped (one tensor, one tensor per run, or one optimizer per run) is chosen per
spec by :func:`choose_mode`.

A *learning-rate-free* optimizer (D-Adaptation, Prodigy, DoG, ...) estimates its own step size;
its ``lr`` is a multiplier meant to stay near its default of 1. A class declares itself so with the
class attribute ``landbench_learning_rate_free = True`` (``False`` opts a subclass out), and
:data:`LEARNING_RATE_FREE` names the well-known ones (:func:`learning_rate_free`); tuning then
searches a multiplier grid around the default ``lr`` instead of an absolute grid
(:mod:`landbench.tuning`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import math
import numbers
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.optimizers.batching import choose_mode
from landbench.optimizers.gd import GradientDescent
from landbench.optimizers.perturbed import PerturbedGD
from landbench.optimizers.sam import SAM
from landbench.rng import global_state_kept
from landbench.spec import Spec, format_spec, parse_spec, plain, suggest

#: The entry-point group through which other packages register optimizer names.
ENTRY_POINT_GROUP = "landbench.optimizers"
#: The class attribute through which an optimizer declares itself learning-rate-free (True or False).
LEARNING_RATE_FREE_ATTRIBUTE = "landbench_learning_rate_free"
#: Well-known learning-rate-free classes, as ``"top_level_package:ClassName"`` (the class itself,
#: not its subclasses): pytorch-optimizer 4.1.0's D-Adaptation variants, Prodigy and AdamG ("parameter
#: free"); the reference packages ``dadaptation`` (Defazio and Mishchenko 2023), ``prodigyopt``
#: (Mishchenko and Defazio 2023) and ``dog`` (DoG and LDoG, Ivgi, Hinder and Carmon 2023).
LEARNING_RATE_FREE: frozenset[str] = frozenset(
    {
        *(f"pytorch_optimizer:{n}" for n in ("DAdaptAdaGrad", "DAdaptAdam", "DAdaptAdan", "DAdaptLion", "DAdaptSGD")),
        "pytorch_optimizer:Prodigy",
        "pytorch_optimizer:AdamG",
        *(f"dadaptation:{n}" for n in ("DAdaptAdaGrad", "DAdaptAdam", "DAdaptAdan", "DAdaptLion", "DAdaptSGD")),
        "prodigyopt:Prodigy",
        "dog:DoG",
        "dog:LDoG",
    }
)

BUILTIN: dict[str, type[torch.optim.Optimizer]] = {
    "gd": GradientDescent,
    "sam": SAM,
    "pgd": PerturbedGD,
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "adamax": torch.optim.Adamax,
    "asgd": torch.optim.ASGD,
    "rprop": torch.optim.Rprop,
    "adadelta": torch.optim.Adadelta,
    "adafactor": torch.optim.Adafactor,
    "muon": torch.optim.Muon,
    "lbfgs": torch.optim.LBFGS,
    "sparseadam": torch.optim.SparseAdam,
}


@dataclass(frozen=True)
class OptimizerSpec:
    """A validated optimizer spec: the class, its keyword arguments and the canonical string."""

    name: str
    cls: type
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def canonical(self) -> str:
        return format_spec(self.name, self.kwargs)

    def __str__(self) -> str:
        return self.canonical

    def build(self, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        """A fresh optimizer over ``params``."""
        return self.cls(params, **self.kwargs)

    @property
    def learning_rate_free(self) -> bool:
        """Whether the class estimates its own step size (see :func:`learning_rate_free`)."""
        return learning_rate_free(self.cls)


def learning_rate_free(cls: type) -> bool:
    """Whether ``cls`` is learning-rate-free: its ``landbench_learning_rate_free`` attribute where it
    sets one (a bool), else whether :data:`LEARNING_RATE_FREE` lists it."""
    declared = getattr(cls, LEARNING_RATE_FREE_ATTRIBUTE, None)
    if isinstance(declared, bool):
        return declared
    return f"{cls.__module__.partition('.')[0]}:{cls.__qualname__}" in LEARNING_RATE_FREE


def last_line(exc: BaseException) -> str:
    """``Type: the last line of its message`` (a message of many lines ends with what went wrong)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def _import_class(path: str) -> type:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        hint = f": install the package that provides {missing!r} in this environment ({sys.executable})"
        if missing and module_name.split(".")[0] == missing.split(".")[0]:  # the optimizer's own package
            hint += ", e.g. `python -m pip install -e .` in its folder, or put the folder that holds it on PYTHONPATH"
        hint = hint if missing else ""
        raise SpecError(f"optimizer {path!r}: cannot import module {module_name!r} ({last_line(exc)}){hint}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - whatever a module's import runs; SystemExit must not end landbench
        raise SpecError(f"optimizer {path!r}: importing module {module_name!r} raised {last_line(exc)}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            found = hasattr(target, part)
            target = getattr(target, part) if found else None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a module __getattr__ that raises
            raise SpecError(
                f"optimizer {path!r}: reading {attribute!r} of {module_name!r} raised {last_line(exc)}"
            ) from None
        if not found:
            raise SpecError(f"optimizer {path!r}: module {module_name!r} has no attribute {attribute!r}")
    return _optimizer_type(target, f"optimizer {path!r}: {attribute!r}")


def _optimizer_type(target: Any, what: str) -> type:
    """``target`` if it is a subclass of :class:`torch.optim.Optimizer`, else a SpecError saying what it is."""
    if not isinstance(target, type):
        raise SpecError(f"{what} is not a class but {_describe(target)}; give a torch.optim.Optimizer subclass")
    if not issubclass(target, torch.optim.Optimizer):
        raise SpecError(
            f"{what} is the class {target.__module__}.{target.__qualname__}, not a torch.optim.Optimizer subclass; "
            f"give an optimizer class such as 'torch.optim:SGD'"
        )
    return target


def _describe(value: Any) -> str:
    kind = type(value).__name__
    return f"a {kind}" if not callable(value) else f"a {kind} ({getattr(value, '__qualname__', kind)})"


def registered() -> dict[str, importlib.metadata.EntryPoint]:
    """Names that installed packages register in the ``landbench.optimizers`` entry-point group
    (built-in names win over them)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN}


def optimizer_names() -> list[str]:
    """Every name a spec may use: the built-in ones, then the registered ones."""
    return [*BUILTIN, *sorted(registered())]


def optimizer_class(name: str) -> type:
    """The class of a built-in or registered name, or of a ``"pkg.module:Class"`` path."""
    if ":" in name:
        return _import_class(name)
    if name in BUILTIN:
        return BUILTIN[name]
    plugins = registered()
    if name in plugins:
        try:
            target = plugins[name].load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a broken plug-in is reported with its name
            raise SpecError(
                f"optimizer {name!r} is registered by the package {_distribution(plugins[name])} as "
                f"{plugins[name].value!r}, which cannot be loaded: {last_line(exc)}"
            ) from None
        return _optimizer_type(target, f"optimizer {name!r}: the entry point {plugins[name].value!r}")
    names = optimizer_names()
    raise SpecError(
        f"unknown optimizer {name!r}{suggest(name, names)}; valid names: {', '.join(names)}, "
        f"or an import path such as 'pkg.module:Class(lr=1e-3)'"
    )


def _distribution(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return repr(dist.name) if dist is not None else "(unknown)"


def _signature(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword parameters of ``cls.__init__`` after ``params``."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    return {p.name: p for p in parameters if p.name != "params" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _is_float(parameter: inspect.Parameter | None) -> bool:
    if parameter is None:
        return False
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return isinstance(parameter.default, float) or (text.startswith("float") and "tuple" not in text)


def _is_default(value: Any, parameter: inspect.Parameter) -> bool:
    default = parameter.default
    if default is inspect.Parameter.empty or isinstance(default, torch.Tensor):
        return False
    try:
        return bool(value == default) and isinstance(value, bool) == isinstance(default, bool)
    except (TypeError, ValueError):
        return False


def _annotation_text(parameter: inspect.Parameter | None) -> str:
    """The annotation as text without module prefixes, ``Optional[X]`` written ``X | None``."""
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return ""
    annotation = parameter.annotation
    if isinstance(annotation, type):
        text = annotation.__name__
    else:
        text = annotation if isinstance(annotation, str) else str(annotation)
    text = text.replace("typing.", "").replace("torch.", "").replace(" ", "")
    if text.startswith("Optional[") and text.endswith("]"):
        text = text[len("Optional[") : -1] + "|None"
    if text.startswith("Union[") and text.endswith("]"):
        text = text[len("Union[") : -1].replace(",", "|")
    return text


def _expected(parameter: inspect.Parameter | None) -> tuple[str, bool]:
    """What a parameter takes, from its annotation and default: ``("bool" | "int" | "number" | "str" |
    "tuple" | "", None allowed)``; ``""`` for anything (not checked here)."""
    if parameter is None:
        return "", True
    text, default = _annotation_text(parameter), parameter.default
    kinds = set(text.split("|")) if text else set()
    optional = "None" in kinds or default is None
    kinds.discard("None")
    kinds.discard("Tensor")
    if kinds == {"bool"} or (not kinds and isinstance(default, bool)):
        return "bool", optional
    if kinds == {"int"}:
        return "int", optional
    if kinds and kinds <= {"float", "int"} or (not kinds and isinstance(default, (int, float))):
        return "number", optional
    if kinds == {"str"}:
        return "str", optional
    if isinstance(default, tuple) and default and all(v is None or _is_number(v) for v in default):
        return "tuple", optional
    return "", True


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_numbers(owner: str, key: str, value: Any, depth: int = 0) -> None:
    """Every number in ``value`` (nested too) finite and within a 64-bit range; no complex numbers."""
    if depth > 20:
        raise SpecError(f"{owner}: {key} is nested too deeply")
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _check_numbers(owner, key, item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _check_numbers(owner, key, item, depth + 1)
    elif isinstance(value, complex):
        raise SpecError(f"{owner}: {key} must be a real number, got the complex number {value!r}")
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if abs(int(value)) >= 2**63:
            raise SpecError(f"{owner}: {key} is too large for a float or a 64-bit integer: {_short(value)}")
    elif isinstance(value, numbers.Real) and not math.isfinite(float(value)):
        raise SpecError(f"{owner}: {key} must be a finite number, got {value!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _coerce(owner: str, key: str, value: Any, parameter: inspect.Parameter | None) -> Any:
    """Check a value against what its parameter takes (its annotation and default: a bool, an
    integer, a finite number, a string, a tuple of as many numbers as the default), and match it to
    the declared kind, so the canonical string is unique: ints become floats where the signature says
    float, lists become tuples where the default is a tuple."""
    value = plain(value)
    if isinstance(value, torch.Tensor):  # a spec is text: the number it holds, or refused
        if value.numel() != 1 or value.is_complex():
            raise SpecError(f"{owner}: {key} must be a number, not a tensor of shape {tuple(value.shape)}")
        value = value.item()
    _check_numbers(owner, key, value)
    kind, optional = _expected(parameter)
    if value is None and optional:
        return value
    default = parameter.default if parameter is not None else None
    if kind == "bool" and not isinstance(value, bool):
        raise SpecError(f"{owner}: {key} must be True or False{' or None' if optional else ''}, got {_short(value)}")
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(f"{owner}: {key} must be an integer, got {_short(value)}")
    if kind == "number" and not _is_number(value):
        raise SpecError(f"{owner}: {key} must be a number, got {_short(value)}")
    if kind == "str" and not isinstance(value, str):
        raise SpecError(f"{owner}: {key} must be a string{' or None' if optional else ''}, got {_short(value)}")
    if kind == "tuple":
        if (
            not isinstance(value, (list, tuple))
            or len(value) != len(default)
            or not all(_is_number(v) or (v is None and d is None) for v, d in zip(value, default))
        ):
            what = "numbers" if all(d is not None for d in default) else "values"
            raise SpecError(
                f"{owner}: {key} must be a tuple of {len(default)} {what} such as {default!r}, got {_short(value)}"
            )
        value = tuple(value)
    if _is_float(parameter) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if parameter is not None and isinstance(parameter.default, tuple) and isinstance(value, list):
        value = tuple(value)
    if key == "lr":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise SpecError(f"{owner}: lr must be a positive finite number, got {_short(value)}")
    return value


def _effective_rules(owner: str, optimizer: torch.optim.Optimizer) -> None:
    """Refuse settings that torch accepts but that make a run do nothing, climb, or fail later, read
    from the built optimizer's first param group (the class's defaults filled in)."""
    group = optimizer.param_groups[0] if optimizer.param_groups else {}

    def number(key: str) -> float | None:
        value = group.get(key)
        return float(value) if _is_number(value) else None

    if group.get("maximize") is True:
        raise SpecError(f"{owner}: maximize=True climbs the loss instead of descending it; leave maximize False")
    if isinstance(optimizer, torch.optim.LBFGS):
        for key in ("max_iter", "max_eval", "history_size"):
            value = number(key)
            if value is not None and value < 1:
                raise SpecError(f"{owner}: {key} must be at least 1 (with {key}={value:g} a step does nothing)")
        for key in ("tolerance_grad", "tolerance_change"):
            value = number(key)
            if value is not None and value < 0:
                raise SpecError(f"{owner}: {key} must be >= 0, got {value:g}")
        if group.get("line_search_fn") not in (None, "strong_wolfe"):
            raise SpecError(f"{owner}: line_search_fn must be None or 'strong_wolfe', got {group['line_search_fn']!r}")
    if isinstance(optimizer, torch.optim.SGD):
        momentum, dampening = number("momentum") or 0.0, number("dampening") or 0.0
        if momentum > 0 and not 0 <= dampening < 1:
            raise SpecError(
                f"{owner}: dampening must be >= 0 and < 1 with momentum (with dampening={dampening:g} the "
                f"gradient {'never enters the step' if dampening == 1 else 'is added with the wrong sign'})"
            )
    if isinstance(optimizer, torch.optim.Rprop):
        sizes = group.get("step_sizes")
        if isinstance(sizes, tuple) and len(sizes) == 2 and all(_is_number(v) for v in sizes):
            if not 0 <= sizes[0] <= sizes[1] or sizes[1] <= 0:
                raise SpecError(
                    f"{owner}: step_sizes must be (smallest, largest) with 0 <= smallest <= largest and largest > 0, "
                    f"got {sizes!r}"
                )
    if isinstance(optimizer, torch.optim.ASGD):
        for key in ("lambd", "alpha", "t0"):
            value = number(key)
            if value is not None and value < 0:
                raise SpecError(f"{owner}: {key} must be >= 0, got {value:g}")


def resolve(spec: str | Mapping[str, Any] | Spec | OptimizerSpec) -> OptimizerSpec:
    """Validate an optimizer spec; raise :class:`SpecError` naming what is valid."""
    if isinstance(spec, OptimizerSpec):
        return spec
    parsed = parse_spec(spec, what="optimizer")
    cls = optimizer_class(parsed.name)
    owner = f"optimizer {parsed.name}"
    try:
        defaults = _signature(cls)
        accepts_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    except (ValueError, TypeError) as exc:
        raise SpecError(f"{owner}: its arguments cannot be read ({last_line(exc)})") from None
    kwargs: dict[str, Any] = {}
    for key, value in parsed.kwargs.items():
        if key not in defaults and not accepts_any:
            raise SpecError(
                f"{owner}: unknown argument {key!r}{suggest(key, list(defaults))}; "
                f"valid arguments: {', '.join(defaults)}"
            )
        kwargs[key] = _coerce(owner, key, value, defaults.get(key))
    if "lr" in defaults and "lr" not in kwargs and isinstance(defaults["lr"].default, (int, float)):
        kwargs["lr"] = float(defaults["lr"].default)
    # Canonical form: arguments equal to their defaults are dropped, except lr, always written.
    kwargs = {k: v for k, v in kwargs.items() if k == "lr" or k not in defaults or not _is_default(v, defaults[k])}
    ordered = {k: kwargs[k] for k in defaults if k in kwargs} | {k: v for k, v in kwargs.items() if k not in defaults}
    missing = [k for k, p in defaults.items() if p.default is inspect.Parameter.empty and k not in ordered]
    if missing:
        raise SpecError(f"{owner}: the argument(s) {', '.join(missing)} are required")
    resolved = OptimizerSpec(parsed.name, cls, ordered)
    with global_state_kept():  # building and trial steps never move the user's own random stream
        trial = _try_build(resolved)
        if accepts_any:
            _check_swallowed(owner, trial, [k for k in ordered if k not in defaults], list(defaults))
    return resolved


def _try_build(spec: OptimizerSpec) -> torch.optim.Optimizer:
    """Build once on a dummy tensor, so that the class's own value checks fail now, with the spec named
    (any exception, SystemExit included, becomes a SpecError with its last line); then refuse
    settings torch accepts but that make a run do nothing (:func:`_effective_rules`)."""
    try:
        built = spec.build([torch.zeros(1, 2, requires_grad=True)])
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - whatever a class's checks raise (betas=(0.9,): IndexError)
        kind = "" if isinstance(exc, (ValueError, TypeError, RuntimeError)) else f"{type(exc).__name__}: "
        message = last_line(exc).removeprefix(f"{type(exc).__name__}: ") if str(exc).strip() else ""
        raise SpecError(f"optimizer {spec.canonical}: {kind}{message}".rstrip(": ")) from None
    _effective_rules(f"optimizer {spec.canonical}", built)
    return built


def _check_swallowed(owner: str, optimizer: Any, extra: list[str], valid: list[str]) -> None:
    """Refuse an argument outside the signature that a ``**kwargs`` class does nothing with: one that
    ends up nowhere (no param-group default, no attribute, no mapping or wrapped optimizer among the
    attributes), or only in the param groups (as pytorch-optimizer's classes put every ``**kwargs``)
    but is never read by a trial step (:func:`_keys_read_by_a_step`). A typo such as ``betaz`` is one."""
    read: set[str] | None = None
    for key in extra:
        if _kept(optimizer, key, depth=2, groups=False):
            continue
        if _kept(optimizer, key, depth=2, groups=True):
            read = _keys_read_by_a_step(optimizer) if read is None else read
            if "*" in read or key in read:
                continue
            what = "stored it in its param groups, but a step never reads it"
        else:
            what = "ignored it"
        raise SpecError(
            f"{owner}: unknown argument {key!r}{suggest(key, valid)}: the class takes **kwargs and {what}; "
            f"valid arguments: {', '.join(valid)}"
        )


def _kept(holder: Any, key: str, depth: int, groups: bool) -> bool:
    """Whether ``key`` ended up in ``holder``: an attribute, or (``groups``) its defaults or first
    param group, or (``depth`` levels down) a mapping or optimizer held in one of its attributes."""
    if isinstance(holder, Mapping):
        return key in holder
    if key in getattr(holder, "__dict__", {}):  # the instance's own: not a method such as zero_grad
        return True
    if groups:
        param_groups = getattr(holder, "param_groups", None) or [{}]
        if key in (getattr(holder, "defaults", None) or {}) or key in param_groups[0]:
            return True
    if depth == 0:
        return False
    return any(
        _kept(value, key, depth - 1, groups)
        for name, value in getattr(holder, "__dict__", {}).items()
        if name not in ("state", "param_groups", "defaults") and isinstance(value, (Mapping, torch.optim.Optimizer))
    )


class _ReadLog(dict):  # type: ignore[type-arg]
    """A param group that notes the keys read from it by name."""

    def __init__(self, data: Mapping[str, Any], read: set[str]) -> None:
        super().__init__(data)
        self.read = read

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self.read.add(key)
        return super().__contains__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().setdefault(key, default)


#: Trial steps after which an argument the steps never read is taken as swallowed: options read only
#: once a warm-up or a buffer has filled (AvaGrad's adam_debias after step 1, AdaShift's cautious once
#: its queue of 10 gradients is full) are read by then.
TRIAL_STEPS = 24


def _keys_read_by_a_step(optimizer: Any) -> set[str]:
    """The keys that :data:`TRIAL_STEPS` steps of the trial optimizer (on ``f(x) = |x|^2/2 + sum x``,
    with a closure where ``step`` takes one) read by name from a param group or from the defaults of
    the optimizer or of an optimizer it wraps. A step that fails proves nothing: then ``{"*"}``."""
    read: set[str] = set()
    wrapped = [v for v in vars(optimizer).values() if isinstance(v, torch.optim.Optimizer)]
    for holder in (optimizer, *wrapped):
        groups = holder.param_groups  # replaced in place: a wrapper and its base may share the list
        groups[:] = [g if isinstance(g, _ReadLog) else _ReadLog(g, read) for g in groups]
        holder.defaults = _ReadLog(holder.defaults, read)
    params = list(dict.fromkeys(p for group in optimizer.param_groups for p in group["params"]))

    def closure() -> torch.Tensor:
        for p in params:
            p.grad = p.detach() + 1.0
        return sum((0.5 * p.detach() * p.detach() + p.detach()).sum() for p in params)  # type: ignore[return-value]

    takes_closure = "closure" in inspect.signature(optimizer.step).parameters
    try:
        for _ in range(TRIAL_STEPS):
            closure()
            optimizer.step(closure) if takes_closure else optimizer.step()
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - a third-party step that cannot run here proves nothing
        return {"*"}
    return read


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "LEARNING_RATE_FREE",
    "LEARNING_RATE_FREE_ATTRIBUTE",
    "OptimizerSpec",
    "choose_mode",
    "learning_rate_free",
    "optimizer_class",
    "optimizer_names",
    "registered",
    "resolve",
]
