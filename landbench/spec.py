"""Spec strings and dicts: parsing, parameter validation and the canonical form.

A spec names a landscape family or an optimizer with keyword arguments, either as a string,
``"saddle(dim=100, index=3)"``, or as a dict, ``{"name": "saddle", "dim": 100, "index": 3}``.
Argument values are Python literals, parsed with :func:`ast.literal_eval` (never ``eval``).
Every spec has one canonical string: the name, then the arguments that differ from their
defaults, in declaration order, written with ``repr``. Records and rankings carry that string.
"""

from __future__ import annotations

import ast
import difflib
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from landbench.errors import SpecError

_NAME = re.compile(r"^\s*(?P<name>[A-Za-z_][\w.]*(?::[A-Za-z_][\w.]*)?)\s*(?:\((?P<args>.*)\))?\s*$", re.S)


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Spec:
    """A parsed spec: a name and its keyword arguments (not yet validated)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_spec(self.name, self.kwargs)


def parse_spec(spec: str | Mapping[str, Any] | Spec, *, what: str = "") -> Spec:
    """Parse ``"name(key=value, ...)"`` or ``{"name": ..., key: value}`` into a :class:`Spec`.

    ``what`` ("problem", "optimizer") only shapes the error messages.
    """
    label = f"{what} spec" if what else "spec"
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
        kwargs = {key: plain(value) for key, value in spec.items()}
        name = kwargs.pop("name", None)
        if name is None:
            name = kwargs.pop("family", None)
        if not isinstance(name, str) or not name:
            raise SpecError(f"{label} {clip(dict(spec))} has no name: give it as {{'name': 'saddle', 'dim': 10, ...}}")
        return Spec(name.strip(), kwargs)
    if not isinstance(spec, str):
        raise SpecError(f"{label} must be a string like 'name(key=value)' or a dict, got {type(spec).__name__}")
    shown = clip(spec)
    try:
        match = _NAME.match(spec)
    except RecursionError:  # pragma: no cover - the pattern does not recurse
        match = None
    if match is None:
        raise SpecError(
            f"cannot parse {label} {shown}: expected name(key=value, ...) with Python literal values, "
            f"for example 'saddle(dim=100, index=3)' or 'adam(lr=1e-3)'"
        )
    name, args = match.group("name"), match.group("args")
    if args is None or not args.strip():
        return Spec(name, {})
    try:
        call = ast.parse(f"_f({args})", mode="eval").body
    except (SyntaxError, ValueError, UnicodeError, RecursionError, MemoryError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else (str(exc).splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, (RecursionError, MemoryError)):
            reason = "nested too deeply"
        raise SpecError(
            f"cannot parse the arguments of {label} {shown}: {clip(reason, quote=False)}; "
            f"expected key=value pairs with Python literal values"
        ) from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_f"):
        raise SpecError(
            f"cannot parse {label} {shown}: expected one name(key=value, ...) and nothing after it, "
            f"for example 'saddle(dim=100, index=3)'"
        )
    if call.args:
        raise SpecError(f"{label} {shown} has a positional argument; write every argument as key=value")
    kwargs: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise SpecError(f"{label} {shown}: '**' is not allowed; write every argument as key=value")
        if keyword.arg in kwargs:
            raise SpecError(f"{label} {shown} gives {keyword.arg!r} twice")
        try:
            kwargs[keyword.arg] = ast.literal_eval(_NonFinite().visit(keyword.value))
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            source = clip(ast.get_source_segment(f"_f({args})", keyword.value), quote=False)
            if _non_finite(keyword.value):
                raise SpecError(
                    f"{label} {shown}: the value of {keyword.arg!r} ({source}) is not a finite number; "
                    f"landbench takes finite numbers only"
                ) from None
            raise SpecError(
                f"{label} {shown}: the value of {keyword.arg!r} ({source}) is not a Python literal "
                f"(numbers, strings, True/False/None, tuples, lists and dicts of them)"
            ) from None
    return Spec(name, kwargs)


class _NonFinite(ast.NodeTransformer):
    """``inf`` and ``nan`` as the floats they name (``-inf`` too), so that a non-finite number reaches
    the same check, with the same message, whether it comes from a spec string or from the API."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in ("inf", "nan"):
            return ast.copy_location(ast.Constant(float(node.id)), node)
        return node


def _non_finite(node: ast.AST) -> bool:
    """Whether an expression that is no literal names infinity or NaN: ``inf``, ``-nan``, ``float('inf')``."""
    names = {"inf", "nan", "infinity", "Infinity", "NaN", "Inf"}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in names:
            return True
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.strip().lstrip("+-") in names:
            return True
    return False


def clip(value: Any, limit: int = 80, quote: bool = True) -> str:
    """``repr`` of a value (its text when ``quote`` is False), cut to ``limit`` characters: error
    messages stay one readable line however long the input."""
    text = repr(value) if quote else str(value)
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plain(value: Any) -> Any:
    """numpy scalars and vectors (``np.float32(0.1)``) as the Python numbers and lists they hold,
    inside lists, tuples and dicts too, so that a spec given through the API has one canonical form
    and is checked as one."""
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if type(value).__module__ == "numpy" and hasattr(value, "tolist") and getattr(value, "ndim", 2) <= 1:
        return plain(value.tolist())  # a scalar's tolist is the Python number; a vector's a list
    return value


def format_value(value: Any) -> str:
    """The canonical text of one argument value: its ``repr`` (shortest round-trip for floats)."""
    return repr(value)


def format_spec(name: str, kwargs: Mapping[str, Any]) -> str:
    """``name(k1=v1, k2=v2)``, or just ``name`` without arguments."""
    if not kwargs:
        return name
    return f"{name}(" + ", ".join(f"{k}={format_value(v)}" for k, v in kwargs.items()) + ")"


def suggest(name: str, valid: Sequence[str]) -> str:
    """' (did you mean X?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Param:
    """One declared parameter of a landscape family.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``str``, ``dict`` or ``tuple`` (a list or tuple,
    nested lists made tuples; the family checks its contents); ``low``/``high`` bound numbers
    (``low_open`` makes the lower bound strict); ``choices`` restricts strings.
    """

    name: str
    kind: type
    default: Any = REQUIRED
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe_range(self) -> str:
        """What values are valid, in words, for error messages and ``landbench list``."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kinds = {int: "an integer", float: "a number", bool: "True or False", str: "a string", dict: "a dict"}
        kind = {**kinds, tuple: "a tuple"}[self.kind]
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {format_value(self.low)}")
        if self.high is not None:
            parts.append(f"<= {format_value(self.high)}")
        return kind + (" " + " and ".join(parts) if parts else "")

    def coerce(self, value: Any, owner: str) -> Any:
        """Check one value and convert it to the declared kind (ints are accepted as floats)."""
        value = plain(value)
        bad = SpecError(f"{owner}: {self.name} must be {self.describe_range()}, got {clip(value)}")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise bad
            value = int(value)
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise bad
            try:
                value = float(value)
            except OverflowError:
                raise bad from None
            if not math.isfinite(value):
                raise bad
        elif self.kind is str:
            if not isinstance(value, str):
                raise bad
            if self.choices is not None and value not in self.choices:
                raise SpecError(
                    f"{owner}: {self.name} must be {self.describe_range()}, "
                    f"got {clip(value)}{suggest(value, self.choices)}"
                )
            return value
        elif self.kind is dict:
            if not isinstance(value, dict):
                raise bad
            return dict(value)
        elif self.kind is tuple:
            if not isinstance(value, (list, tuple)):
                raise bad
            return _as_tuple(value)
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise bad
        if self.high is not None and value > self.high:
            raise bad
        return value


def _as_tuple(value: Any) -> Any:
    """Lists and tuples, nested, as tuples (hashable, one canonical form)."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def bind_params(
    owner: str,
    params: Sequence[Param],
    kwargs: Mapping[str, Any],
    noun: str = "parameter",
    also_valid: Sequence[str] = (),
) -> dict[str, Any]:
    """Validate ``kwargs`` against ``params``: every value checked, defaults filled in, in order.

    Unknown names and missing required ones raise :class:`SpecError` listing the valid names.
    """
    names = [p.name for p in params]
    for key in kwargs:
        if key not in names:
            valid = list(also_valid) + names
            raise SpecError(f"{owner}: unknown {noun} {key!r}{suggest(key, valid)}; valid {noun}s: {', '.join(valid)}")
    values: dict[str, Any] = {}
    for p in params:
        if p.name in kwargs:
            values[p.name] = p.coerce(kwargs[p.name], owner)
        elif p.required:
            raise SpecError(f"{owner}: the {noun} {p.name!r} is required ({p.doc or p.describe_range()})")
        else:
            values[p.name] = p.default
    return values


def non_defaults(params: Sequence[Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that differ from their defaults (required ones always), in declaration order."""
    return {p.name: values[p.name] for p in params if p.required or values[p.name] != p.default}
