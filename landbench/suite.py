"""TOML suites: the declarative catalogue of scenarios in ``problems/``.

A suite file lists problems (with the dimensions to run them at), optimizers, run seeds,
instances, the step budget, gradient-noise levels and metric settings::

    name = "smoke"                       # optional, defaults to the file name
    description = "a minute on a laptop"
    seeds = 4                            # a count (seeds 0..3) or a list of run seeds
    instances = 1                        # a count or a list of instance seeds
    steps = 300
    noise = 0.0                          # one level or a list of levels
    noise_model = "gaussian"             # optional: one model or a list (landbench.noise): gaussian,
                                         # "student_t(nu=3)", "alpha_stable(alpha=1.5)", "frozen"
    batch_size = 32                      # optional: one minibatch size or a list (landbench.minibatch),
                                         # for the finite sums (the others run their full batch);
                                         # absent: the full batch
    dtype = "float32"
    optimizers = ["sgd(lr=0.1)", "adam(lr=0.01)"]

    [metrics]                            # optional: targets, curvature, tau, ... (see Settings)
    tau = 0.1

    [[problems]]
    spec = "saddle(index=2)"             # without dim ...
    dims = [10, 100]                     # ... which comes from here
    steps = 500                          # optional per-problem overrides: steps, noise, seeds, instances,
    optimizers = ["sgd(lr=10.0)"]        # optimizers (when this problem needs other step sizes), dtype

A scenario is one problem at one dimension, instance, noise level, noise model, batch size and optimizer;
its run seeds are one batch of the engine. Every error names the file, the line (where it can be found)
and key, and what was expected.
"""

from __future__ import annotations

import importlib.resources
import itertools
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from landbench.errors import SpecError, SuiteError
from landbench.landscapes import family
from landbench.landscapes.finite_sum import (
    applicable_batch_size,
    effective_batch_size,
    finite_sum_families,
    is_finite_sum_problem,
)
from landbench.noise import check_noise_model, effective_noise_model
from landbench.optimizers import resolve
from landbench.outcomes import noise_text
from landbench.records import run_key, run_role
from landbench.settings import (
    MAX_SEED,
    MAX_SEEDS,
    MAX_STEPS,
    Settings,
    check_batch_size,
    check_noise,
    check_steps,
    normalize_seeds,
)
from landbench.spec import Spec, bind_params, clip, parse_spec
from landbench.tuning import Tuning, check_disjoint, check_optimizers, check_tuning, label_of, parse_grid

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_KEYS = (
    "name",
    "description",
    "seeds",
    "instances",
    "steps",
    "noise",
    "noise_model",
    "batch_size",
    "dtype",
    "optimizers",
    "metrics",
    "tuning",
    "problems",
)
TUNING_KEYS = ("instances", "seeds", "grid", "grids")
PROBLEM_KEYS = (
    "spec",
    "dims",
    "steps",
    "noise",
    "noise_model",
    "batch_size",
    "seeds",
    "instances",
    "optimizers",
    "dtype",
)


@dataclass(frozen=True)
class Scenario:
    """One batch: a problem (canonical, with dim) on one instance, one optimizer, one noise level and
    model (the model is in ``settings``, and so in every run key when it is not gaussian)."""

    problem: str
    instance: int
    optimizer: str
    seeds: tuple[int, ...]
    steps: int
    noise: float
    settings: Settings
    phase: str | None = None  # in a tuned suite: "tune" or "score"
    label: str | None = None  # in a tuned suite: the optimizer's spec without lr, its name in rankings
    tuning: str | None = None  # in a tuned suite's scored scenarios: the records' tuning field, as JSON

    @property
    def noise_model(self) -> str:
        """The gradient-noise model (:mod:`landbench.noise`), canonical."""
        return self.settings.noise_model

    @property
    def noise_label(self) -> str:
        """The noise as views name it (:func:`landbench.outcomes.noise_text`): ``"0.1"``,
        ``"0.1 student_t(nu=3.0)"`` for another model, ``"0.1 batch 32"`` with a minibatch."""
        return noise_text(self.noise, self.noise_model, self.settings.batch_size)

    def key(self, seed: int, device: str, optimizer: str | None = None) -> str:
        """The key of this scenario's run with the given seed (see :func:`landbench.records.run_key`);
        ``optimizer`` replaces the scenario's (a rate of a tuning grid)."""
        return run_key(
            self.problem,
            self.instance,
            optimizer or self.optimizer,
            seed,
            self.steps,
            self.noise,
            device,
            self.settings,
            run_role(self.phase, self.label, self.tuning),
        )


@dataclass(frozen=True)
class ProblemEntry:
    """One ``[[problems]]`` table, validated: canonical specs (one per dimension) and their budget."""

    problems: tuple[str, ...]
    steps: int = 1000
    noise: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = tuple(range(8))
    instances: tuple[int, ...] = (0,)
    optimizers: tuple[str, ...] = ()  # empty: the suite's optimizers
    dtype: str | None = None  # None: the suite's dtype
    noise_models: tuple[str, ...] = ("gaussian",)  # canonical (landbench.noise)
    batch_sizes: tuple[int | None, ...] = (None,)  # minibatch sizes of a finite sum; None: the full batch


@dataclass(frozen=True)
class Suite:
    """A validated suite: problems x optimizers x instances x noise x seeds."""

    name: str
    description: str
    path: Path | None
    problems: tuple[ProblemEntry, ...]
    optimizers: tuple[str, ...]
    settings: Settings = field(default_factory=Settings)
    defaults: ProblemEntry = field(default_factory=lambda: ProblemEntry(()))  # the file's top-level budget
    tuning: Tuning | None = None  # [tuning]: learning rates are tuned per family before scoring

    def scenarios(self) -> list[Scenario]:
        """Every scenario, problems in file order, then instance, noise, noise model, batch size and
        optimizer; a scenario listed twice (the same problem twice, say) runs once."""
        out: dict[Scenario, None] = {}
        for entry in self.problems:
            base = self.settings if entry.dtype is None else replace(self.settings, dtype=entry.dtype)
            for problem, instance, noise, model, batch, optimizer in itertools.product(
                entry.problems,
                entry.instances,
                entry.noise,
                entry.noise_models,
                entry.batch_sizes,
                entry.optimizers or self.optimizers,
            ):
                model = effective_noise_model(noise, model)  # without noise every law is one scenario
                batch = applicable_batch_size(problem, batch)  # all n examples: the full batch; not a sum: None
                settings = base if model == base.noise_model else replace(base, noise_model=model)
                settings = settings if batch == settings.batch_size else replace(settings, batch_size=batch)
                out[Scenario(problem, instance, optimizer, entry.seeds, entry.steps, noise, settings)] = None
        return list(out)

    def with_overrides(
        self,
        *,
        problems: Sequence[str] = (),
        optimizers: Sequence[str] = (),
        seeds: Sequence[int] | None = None,
        steps: int | None = None,
        noise: Sequence[float] = (),
        dtype: str | None = None,
        tune: bool | None = None,
        noise_model: Sequence[str] = (),
        batch_size: Sequence[int | None] = (),
    ) -> Suite:
        """The suite with its problems, optimizers, seeds, steps, noise, noise models, batch sizes or
        dtype replaced (the CLI's flags).

        A replacement problem must name its dimension (``"saddle(dim=100)"``) and takes the
        file's top-level budget; the other replacements apply to every problem (replacement
        optimizers and dtype replace the per-problem ones too). ``tune=False`` keeps every
        optimizer's spec as given, its lr included (a tuned suite's records then say that nothing
        was tuned); ``tune=True`` tunes a suite without ``[tuning]`` with the default table
        (:class:`landbench.tuning.Tuning`); None leaves the suite's tuning as it is.
        """
        entries = self.problems
        if problems:
            entries = tuple(
                replace(self.defaults, problems=(canonical_problem(p, None, "--problem"),)) for p in problems
            )
        changes: dict[str, Any] = {}
        if optimizers:
            changes["optimizers"] = ()
        if dtype is not None:
            changes["dtype"] = None
        if steps is not None:
            changes["steps"] = check_steps(steps)
        if seeds is not None:
            changes["seeds"] = tuple(normalize_seeds(seeds))
        if noise:
            changes["noise"] = tuple(dict.fromkeys(check_noise(n) for n in noise))
        if noise_model:
            changes["noise_models"] = tuple(dict.fromkeys(check_noise_model(m) for m in noise_model))
        if batch_size:
            changes["batch_sizes"] = tuple(dict.fromkeys(check_batch_size(b, "--batch-size") for b in batch_size))
        entries = tuple(replace(e, **changes) for e in entries)
        for entry in entries:
            check_batch_sizes(entry, strict=False)
        if batch_size and not any(_finite(e) for e in entries):
            raise SpecError(f"--batch-size: no problem is a finite sum; batch sizes apply to {finite_sum_families()}")
        settings = self.settings if dtype is None else replace(self.settings, dtype=dtype)
        opts = tuple(resolve(o).canonical for o in optimizers) if optimizers else self.optimizers
        tuning = self.tuning
        if tune is True:
            tuning = replace(tuning or Tuning(), enabled=True)
        elif tune is False and tuning is not None:
            tuning = replace(tuning, enabled=False)
        suite = replace(self, problems=entries, optimizers=opts, settings=settings, tuning=tuning)
        problem = check_tuning(suite.tuning, suite.scenarios())
        if problem:
            raise SuiteError(f"{self.name}: [tuning]{'' if self.tuning else ' (the default, for --tune)'}: {problem}")
        return suite


def suite_directory() -> Path:
    """The folder of the shipped suites (``problems/`` in the source tree, package data when installed)."""
    try:
        return Path(str(importlib.resources.files("landbench.problems")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "problems"


def available_suites() -> dict[str, Path]:
    """Shipped suites by name."""
    return {p.stem: p for p in sorted(suite_directory().glob("*.toml"))}


def load_suite(name_or_path: str | Path) -> Suite:
    """A TOML file by path, or else a shipped suite by name (``"smoke"``)."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise SuiteError(f"a suite is a shipped suite's name or the path of a .toml file, got {clip(name_or_path)}")
    path = Path(name_or_path)
    try:
        exists, is_file = path.exists(), path.is_file()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, ...
        raise SuiteError(
            f"suite {clip(str(name_or_path))}: not a usable path ({clip(str(exc), quote=False)})"
        ) from None
    if is_file:
        return parse_suite(read_suite_text(path), path)
    suites = available_suites()
    if str(name_or_path) in suites:
        return parse_suite(read_suite_text(suites[str(name_or_path)]), suites[str(name_or_path)])
    if path.suffix == ".toml" or exists:
        raise SuiteError(f"suite file {clip(str(path))} {'is not a file' if exists else 'does not exist'}")
    raise SuiteError(
        f"unknown suite {clip(str(name_or_path))}; shipped suites: {', '.join(suites) or '(none)'}, "
        f"or give the path of a .toml file"
    )


def read_suite_text(path: Path) -> str:
    """A suite file's text: UTF-8, with a UTF-8 byte-order mark accepted (and dropped); a file that
    cannot be read, UTF-16 or UTF-32, or bytes that are not UTF-8 are refused naming the file and line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read the suite file ({exc.strerror or type(exc).__name__})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for bom, encoding in (
        (b"\xff\xfe\x00\x00", "UTF-32"),
        (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"),
    ):
        if data.startswith(bom):
            raise SuiteError(f"{path}: the file is {encoding}; save it as UTF-8 (TOML files are UTF-8)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SuiteError(
            f"{path}:{line}: not valid UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}); "
            f"TOML files are UTF-8: save it as UTF-8"
        ) from None


class _Where:
    """Names a place in a suite file in error messages: ``file:line: key``."""

    def __init__(self, text: str, path: Path | str):
        self.lines = text.splitlines()
        self.path = str(path)

    def line(self, key: str, table: str | None = None, nth: int = 0) -> int | None:
        """1-based line of ``key = ...`` at top level, in ``[table]`` or in the nth ``[[table]]``."""
        headers = [i for i, line in enumerate(self.lines) if re.match(r"^\s*\[", line)]
        if table is None:
            start, stop = 0, headers[0] if headers else len(self.lines)
        else:
            pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?")
            matches = [i for i in headers if pattern.match(self.lines[i])]
            if nth >= len(matches):
                return None
            start = matches[nth] + 1
            stop = next((h for h in headers if h > matches[nth]), len(self.lines))
        for i in range(start, stop):
            if re.match(rf"^\s*{re.escape(key)}\s*=", self.lines[i]):
                return i + 1
        return None

    def error(self, key: str, message: str, table: str | None = None, nth: int = 0) -> SuiteError:
        line = self.line(key, table, nth)
        place = f"{self.path}:{line}" if line else self.path
        key = key if key.isidentifier() else clip(key)
        label = f"problems[{nth}].{key}" if table == "problems" else (f"{table}.{key}" if table else key)
        return SuiteError(f"{place}: {label}: {message}")


def _int_list(value: Any, *, count_ok: bool) -> tuple[int, ...] | None:
    if count_ok and isinstance(value, int) and not isinstance(value, bool):
        return tuple(range(value)) if 1 <= value <= MAX_SEEDS else None
    if (
        isinstance(value, list)
        and 0 < len(value) <= MAX_SEEDS
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED for v in value)
    ):
        return tuple(value) if len(set(value)) == len(value) else None
    return None


def _noise_list(value: Any) -> tuple[float, ...] | None:
    values = value if isinstance(value, list) else [value]
    try:
        return tuple(check_noise(v) for v in values) if values else None
    except SpecError:
        return None


def check_batch_sizes(entry: ProblemEntry, strict: bool = True) -> None:
    """Every batch size of ``entry`` fits its problems (a finite sum with at least that many
    examples): otherwise a :class:`SpecError` naming the problem and what is valid. Not ``strict``
    (batch sizes given to every problem at once: the file's top level, ``--batch-size``), a problem
    that is not a finite sum runs its full batch instead."""
    for problem in entry.problems:
        for batch in entry.batch_sizes:
            (effective_batch_size if strict else applicable_batch_size)(problem, batch)


def _finite(entry: ProblemEntry) -> bool:
    """Whether the entry's problems are finite sums (they are of one family)."""
    return bool(entry.problems) and is_finite_sum_problem(entry.problems[0])


def _batch_list(value: Any) -> tuple[int | None, ...] | str:
    """The minibatch sizes of a ``batch_size`` value (one size or a non-empty list), or the error's text."""
    values = value if isinstance(value, list) else [value]
    if not values:
        return "expected a batch size or a non-empty list of them"
    try:
        return tuple(dict.fromkeys(check_batch_size(v, "batch_size") for v in values))
    except SpecError as exc:
        return str(exc).removeprefix("batch_size: ")


def _model_list(value: Any) -> tuple[str, ...] | str:
    """The canonical noise models of a ``noise_model`` value (one spec or a non-empty list), or the
    error's text."""
    values = value if isinstance(value, list) else [value]
    if not values:
        return "expected a noise model or a non-empty list of them"
    try:
        return tuple(dict.fromkeys(check_noise_model(v) for v in values))
    except SpecError as exc:
        return str(exc)


def canonical_problem(spec: str | Mapping[str, Any] | Spec, dim: int | None, where: str) -> str:
    """The canonical spec of a problem at ``dim`` (None: the spec must name its dim); errors name ``where``."""
    parsed = parse_spec(spec, what="problem")
    kwargs = dict(parsed.kwargs)
    if dim is not None:
        if "dim" in kwargs:
            raise SpecError(f"{where}: the spec {clip(str(parsed))} names dim and dims are given too; use one")
        kwargs["dim"] = dim
    elif "dim" not in kwargs:
        cls = family(parsed.name)
        bind_params(cls.family, [p for p in cls.params if p.name != "dim"], kwargs, also_valid=["dim"])
        raise SpecError(f"{where}: the problem {clip(str(parsed))} needs a dimension: write dim=... in the spec")
    return family(parsed.name).canonical(**kwargs)


def _budget(table: Mapping[str, Any], where: _Where, defaults: dict[str, Any], nth: int | None) -> dict[str, Any]:
    """steps, noise, seeds, instances of a table, falling back on ``defaults``."""
    table_name = None if nth is None else "problems"
    out = dict(defaults)

    def fail(key: str, expected: str) -> SuiteError:
        return where.error(key, f"expected {expected}, got {clip(table[key])}", table_name, nth or 0)

    if "steps" in table:
        if not isinstance(table["steps"], int) or isinstance(table["steps"], bool) or table["steps"] < 1:
            raise fail("steps", "an integer >= 1")
        if table["steps"] > MAX_STEPS:
            raise fail("steps", f"at most {MAX_STEPS:.0e} steps (a billion steps take hours on any problem)")
        out["steps"] = table["steps"]
    if "noise" in table:
        out["noise"] = _noise_list(table["noise"])
        if out["noise"] is None:
            raise fail("noise", "a number >= 0 or a non-empty list of them")
    if "noise_model" in table:
        models = _model_list(table["noise_model"])
        if isinstance(models, str):
            raise where.error("noise_model", models, table_name, nth or 0)
        out["noise_models"] = models
    if "batch_size" in table:
        sizes = _batch_list(table["batch_size"])
        if isinstance(sizes, str):
            raise where.error("batch_size", sizes, table_name, nth or 0)
        out["batch_sizes"] = sizes
    for key, what in (("seeds", "run seeds"), ("instances", "instance seeds")):
        if key in table:
            out[key] = _int_list(table[key], count_ok=True)
            if out[key] is None:
                raise fail(
                    key,
                    f"a count >= 1 or a non-empty list of distinct non-negative {what} (at most {MAX_SEEDS} of them, "
                    f"each below 2**63)",
                )
    return out


def _optimizers(value: Any, where: _Where, table: str | None, nth: int) -> tuple[str, ...]:
    """A non-empty list of optimizer specs, each resolved to its canonical string."""
    if not isinstance(value, list) or not value or not all(isinstance(o, str) for o in value):
        raise where.error(
            "optimizers",
            f'expected a list of optimizer specs like ["adam(lr=1e-3)"] (not empty), got {clip(value)}',
            table,
            nth,
        )
    try:
        return tuple(resolve(spec).canonical for spec in value)
    except SpecError as exc:
        raise where.error("optimizers", str(exc), table, nth) from None


def parse_suite(text: str, path: Path | str = "<suite>") -> Suite:
    """Validate a suite's TOML text; every problem and optimizer spec is checked now."""
    where = _Where(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = found.group(1) if found else (len(text.splitlines()) if "end of document" in str(exc) else None)
        raise SuiteError(f"{path}{f':{line}' if line else ''}: not valid TOML: {exc}") from None
    for key in data:
        if key not in TOP_KEYS:
            raise where.error(key, f"unknown key; valid top-level keys: {', '.join(TOP_KEYS)}")
    for key in ("name", "description", "dtype"):
        if key in data and not isinstance(data[key], str):
            raise where.error(key, f"expected a string, got {clip(data[key])}")
    defaults = _budget(
        data,
        where,
        {
            "steps": 1000,
            "noise": (0.0,),
            "seeds": tuple(range(8)),
            "instances": (0,),
            "noise_models": ("gaussian",),
            "batch_sizes": (None,),
        },
        None,
    )

    canonical_optimizers = _optimizers(data["optimizers"], where, None, 0) if "optimizers" in data else ()

    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        raise where.error("metrics", "expected a table [metrics] of settings")
    if "dtype" in metrics:
        raise where.error("dtype", "dtype is set at the top level of the file, not in [metrics]", "metrics")
    for key in ("noise_model", "batch_size"):
        if key in metrics:
            message = f"{key} is set at the top level of the file or per problem, not in [metrics]"
            raise where.error(key, message, "metrics")
    metrics = {**metrics, **({"dtype": data["dtype"]} if "dtype" in data else {})}
    for key, value in metrics.items():
        try:
            Settings.from_mapping({key: value}, where="settings")
        except SpecError as exc:
            raise where.error(key, str(exc).removeprefix("settings: "), None if key == "dtype" else "metrics") from None
    settings = Settings.from_mapping(metrics)

    problems = data.get("problems", [])
    if not isinstance(problems, list) or not all(isinstance(p, dict) for p in problems):
        raise where.error("problems", 'expected [[problems]] tables, each with spec = "..." and dims = [...]')
    if not problems:
        raise SuiteError(
            f'{path}: problems: the suite has no [[problems]] table; add one with spec = "saddle(index=2)" '
            f"and dims = [10, 100]"
        )
    entries = []
    for nth, table in enumerate(problems):
        for key in table:
            if key not in PROBLEM_KEYS:
                raise where.error(
                    key, f"unknown key; valid keys of a problem: {', '.join(PROBLEM_KEYS)}", "problems", nth
                )
        if not isinstance(table.get("spec"), str):
            raise where.error("spec", 'expected spec = "family(param=value, ...)"', "problems", nth)
        dims: list[int | None] = [None]
        if "dims" in table:
            dims_value = table["dims"]
            if isinstance(dims_value, int) and not isinstance(dims_value, bool):
                dims_value = [dims_value]
            if (
                not isinstance(dims_value, list)
                or not dims_value
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims_value)
            ):
                raise where.error(
                    "dims", f"expected a list of positive integers, got {clip(table['dims'])}", "problems", nth
                )
            dims = list(dims_value)
        try:
            canonical = tuple(canonical_problem(table["spec"], d, "spec") for d in dims)
        except SpecError as exc:
            raise where.error("spec", str(exc).removeprefix("spec: "), "problems", nth) from None
        budget = _budget(table, where, defaults, nth)
        entry_optimizers = _optimizers(table["optimizers"], where, "problems", nth) if "optimizers" in table else ()
        entry_dtype = table.get("dtype")
        if entry_dtype is not None and entry_dtype not in ("float32", "float64"):
            raise where.error("dtype", f"expected 'float32' or 'float64', got {clip(entry_dtype)}", "problems", nth)
        entry = ProblemEntry(
            canonical,
            budget["steps"],
            budget["noise"],
            budget["seeds"],
            budget["instances"],
            entry_optimizers,
            entry_dtype,
            budget["noise_models"],
            budget["batch_sizes"],
        )
        try:
            check_batch_sizes(entry, strict="batch_size" in table)
        except SpecError as exc:
            if "batch_size" in table:
                raise where.error("batch_size", str(exc), "problems", nth) from None
            raise where.error("batch_size", f"problems[{nth}]: {exc}") from None  # the file's top-level batch_size
        entries.append(entry)
    if "batch_size" in data and not any(_finite(e) for e in entries):
        raise where.error("batch_size", f"no problem is a finite sum; batch sizes apply to {finite_sum_families()}")

    for nth, entry in enumerate(entries):
        if not entry.optimizers and not canonical_optimizers:
            line = where.line("spec", "problems", nth)
            raise SuiteError(
                f"{path}{f':{line}' if line else ''}: optimizers: "
                f"problems[{nth}] ({clip(problems[nth]['spec'], quote=False)}) "
                f'has no optimizers: give optimizers = ["adam(lr=1e-3)", ...] at the top of the file or in its '
                f"[[problems]] table"
            )

    name = data.get("name", Path(str(path)).stem)
    file = Path(path) if path != "<suite>" else None
    top = ProblemEntry(
        (),
        defaults["steps"],
        defaults["noise"],
        defaults["seeds"],
        defaults["instances"],
        (),
        None,
        defaults["noise_models"],
        defaults["batch_sizes"],
    )
    suite = Suite(name, data.get("description", ""), file, tuple(entries), canonical_optimizers, settings, top)
    if "tuning" not in data:
        return suite
    suite = replace(suite, tuning=_tuning(data["tuning"], where))
    overlap = check_disjoint(suite.tuning, suite.scenarios())
    if overlap:
        raise where.error("instances" if "instances" in overlap.split()[0] else "seeds", overlap, "tuning")
    clash = check_optimizers(suite.tuning, [sc.optimizer for sc in suite.scenarios()])
    if clash:
        raise where.error("grids" if "[tuning.grids]" in clash else "optimizers", clash, "tuning")
    return suite


def _tuning(table: Any, where: _Where) -> Tuning:
    """The ``[tuning]`` table: instances, seeds, grid, and [tuning.grids] per optimizer; a grid is a
    list of rates or ``{relative = [factors]}`` (:func:`landbench.tuning.parse_grid`)."""
    if not isinstance(table, dict):
        raise where.error("tuning", "expected a table [tuning] (instances, seeds, grid, [tuning.grids])")
    for key in table:
        if key not in TUNING_KEYS:
            raise where.error(key, f"unknown key; valid keys of [tuning]: {', '.join(TUNING_KEYS)}", "tuning")
    out = Tuning()
    for key, what in (("instances", "instance seeds"), ("seeds", "run seeds")):
        if key in table:
            values = _int_list(table[key], count_ok=False)
            if values is None:
                raise where.error(key, f"expected a non-empty list of distinct non-negative {what}", "tuning")
            out = replace(out, **{key: values})
    if "grid" in table:
        try:
            out = replace(out, grid=parse_grid(table["grid"]))
        except ValueError as exc:
            raise where.error("grid", str(exc), "tuning") from None
    grids = table.get("grids", {})
    if not isinstance(grids, dict):
        raise where.error(
            "grids", "expected a table [tuning.grids] of optimizer = [rates] or {relative = [factors]}", "tuning"
        )
    parsed = []
    for name, value in grids.items():
        try:
            grid = parse_grid(value)
            key = label_of(name) if "(" in name else name
        except (ValueError, SpecError) as exc:
            raise _grids_error(where, name, str(exc)) from None
        parsed.append((key, grid))
    return replace(out, grids=tuple(parsed))


def _grids_error(where: _Where, name: str, message: str) -> SuiteError:
    """An error in ``[tuning.grids]``, at the line of ``name = ...`` whether the key is bare or quoted."""
    line = next(
        (n for key in (name, f'"{name}"', f"'{name}'") if (n := where.line(key, "tuning.grids")) is not None), None
    )
    return SuiteError(f"{where.path}{f':{line}' if line else ''}: tuning.grids.{name}: {message}")


def adhoc_suite(
    problems: Sequence[str],
    optimizers: Sequence[str],
    seeds: Sequence[int] | None = None,
    steps: int | None = None,
    noise: Sequence[float] = (),
    noise_model: Sequence[str] = (),
    batch_size: Sequence[int | None] | Sequence[str] = (),
) -> Suite:
    """A suite built from command-line flags alone (no TOML file)."""
    if not problems:
        raise SpecError("give a suite (e.g. 'smoke') or at least one --problem SPEC")
    if not optimizers:
        raise SpecError("without a suite, give at least one --optimizer SPEC, e.g. --optimizer 'adam(lr=1e-3)'")
    empty = Suite("adhoc", "problems and optimizers from the command line", None, (), ())
    return empty.with_overrides(
        problems=problems,
        optimizers=optimizers,
        seeds=seeds,
        steps=steps,
        noise=noise,
        noise_model=noise_model,
        batch_size=batch_size,
    )
