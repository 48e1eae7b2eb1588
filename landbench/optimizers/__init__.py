"""Optimizer specs: ``"adam(lr=1e-3)"`` to a validated factory of torch optimizers.

Names map to :mod:`torch.optim` classes (``sgd``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad``,
``nadam``, ``radam``, ``adamax``, ``asgd``, ``rprop``, ``adadelta``); ``"pkg.module:Class(...)"``
imports any other class. Arguments are checked against the class's signature, so a typo or a bad
value fails before anything runs, with a message that names what is valid.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from landbench.errors import SpecError
from landbench.optimizers.batching import choose_mode
from landbench.spec import Spec, format_spec, parse_spec, suggest

BUILTIN: dict[str, type[torch.optim.Optimizer]] = {
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
    "lbfgs": torch.optim.LBFGS,
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


def _import_class(path: str) -> type:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"optimizer {path!r}: cannot import module {module_name!r} ({exc})") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise SpecError(f"optimizer {path!r}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not isinstance(target, type):
        raise SpecError(f"optimizer {path!r}: {attribute!r} is not a class")
    return target


def optimizer_class(name: str) -> type:
    """The class of a built-in name or of a ``"pkg.module:Class"`` path."""
    if ":" in name:
        return _import_class(name)
    try:
        return BUILTIN[name]
    except KeyError:
        raise SpecError(
            f"unknown optimizer {name!r}{suggest(name, list(BUILTIN))}; valid names: {', '.join(BUILTIN)}, "
            f"or an import path such as 'pkg.module:Class(lr=1e-3)'"
        ) from None


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


def _coerce(owner: str, key: str, value: Any, parameter: inspect.Parameter | None) -> Any:
    """Match a value to its declared kind, so the canonical string is unique: ints become floats
    where the signature says float, lists become tuples where the default is a tuple."""
    if _is_float(parameter) and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise SpecError(f"{owner}: {key} is too large for a float: {value}") from None
    if parameter is not None and isinstance(parameter.default, tuple) and isinstance(value, list):
        value = tuple(value)
    if key == "lr":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise SpecError(f"{owner}: lr must be a positive finite number, got {value!r}")
    return value


def resolve(spec: str | Mapping[str, Any] | Spec | OptimizerSpec) -> OptimizerSpec:
    """Validate an optimizer spec; raise :class:`SpecError` naming what is valid."""
    if isinstance(spec, OptimizerSpec):
        return spec
    parsed = parse_spec(spec, what="optimizer")
    cls = optimizer_class(parsed.name)
    defaults = _signature(cls)
    owner = f"optimizer {parsed.name}"
    kwargs: dict[str, Any] = {}
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
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
    _try_build(resolved)
    return resolved


def _try_build(spec: OptimizerSpec) -> None:
    """Build once on a dummy tensor, so that the class's own value checks fail now, with the spec named."""
    try:
        spec.build([torch.zeros(1, 2, requires_grad=True)])
    except (ValueError, TypeError, RuntimeError) as exc:
        raise SpecError(f"optimizer {spec.canonical}: {exc}") from None


__all__ = ["BUILTIN", "OptimizerSpec", "choose_mode", "optimizer_class", "resolve"]
