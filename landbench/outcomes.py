"""What a run achieved: the one place where landbench decides what escaped, reached and diverged mean.

Every view reads records through this module: the CLI's summary table, :mod:`landbench.testing`,
the ranking (and so tuning, which ranks its rates), the report and the asv metrics. A rule written
anywhere else is a second copy, and a defect.

The policy
----------
* **Diverged**: the loss became NaN or inf within the budget. A diverged run is a failure for every
  outcome, whatever happened before it diverged: it escaped nothing, reached no target, and has no
  final loss, gap, curvature or final-point field (basin, mode, ...). It is counted, and shown, as
  diverged. In the time to target (ERT) it is charged its whole budget: landbench does not restart
  runs, so blowing up early saves the user nothing.
* **Escaped**: a run escaped the saddle at step t when ``f(x_t)`` is first at most halfway from the
  saddle's value down to f* (t >= 1), and it did not diverge. A run that never got there within its
  budget is censored: never a number, ranked after every escape.
* **Reached target t** (on the loss gap ``f - f*``): the run *holds* it: the gap is at most t at the
  end of the budget, and its time is the first step (gradient evaluation) from which the gap stays
  at most t until the end. A run that touches the target and leaves it has not reached it. COCO's
  first-hitting time is kept as a second, named field (``first_hit_*``) for comparison with COCO
  data; no view of landbench counts it as a success.
* **Cost of a failure**: a run that does not reach a target (censored or diverged) is charged its
  whole budget, ``grad_evals`` (or ``steps``), in the expected running time.
* **Failed**: the job that should have produced the run raised (an optimizer that raises at step
  30, a worker that kept dying): its record holds the run's identity (``key``, ``problem``,
  ``optimizer``, ``seed``, ...) and ``failed``, the exception's last line, and no outcome. A failed
  run is not an outcome of the optimizer on the landscape: every view leaves it out and says how
  many it left out (:func:`is_failed`, :func:`split_failed`); ``landbench status`` lists them, and
  ``landbench run --retry-failed`` runs them again.
* **Medians** of final values (loss, gap, sharpness) rank diverged runs as worse than any value and
  are ``None`` when they fall on one (as censored escape times are); a value that was not measured
  (f* unknown, curvature off) makes the median ``None`` too.

:data:`FIELDS` describes each outcome field of a record (unit, which direction is better, what a
diverged or censored run holds). The accessors (:func:`escape_time`, :func:`reach_time`, ...) apply
the policy to any record, including hand-written ones or ones that predate it, and
:func:`summarize` is the summary that every view shows. Families add fields of their own
(``basin``, ``mode``, ``chain_escapes``, ...) and say how to summarise them
(:attr:`landbench.landscapes.base.Landscape.outcome_fields`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from landbench.ranking.stats import censored_quantile, expected_running_time

#: Version of what a record means; bumped whenever the definition of an outcome changes, so that a
#: re-run into an old results folder recomputes instead of reusing records of another meaning, and
#: so that views leave out records they would misread. 3: targets count when held to the end, a
#: diverged run is a failure for every outcome, ``grad_evals`` is the whole budget.
RECORD_SCHEMA = 3

Record = dict[str, Any]
Unit = Literal["evals", "steps"]
#: Time units: ``evals`` (gradient evaluations, what rankings use) and ``steps`` (optimizer steps).
UNITS: dict[str, str] = {"evals": "gradient evaluations", "steps": "optimizer steps"}


@dataclass(frozen=True)
class Field:
    """An outcome field of a run record: what it is, in which unit, which way is better, and what a
    diverged or censored run holds in it. ``if_diverged`` is the rule :func:`settle` applies:
    ``"null"``, ``"false"``, ``"null per target"`` or ``"kept"`` (observed up to the divergence)."""

    name: str
    unit: str
    better: Literal["lower", "higher"] | None
    if_diverged: Literal["null", "false", "null per target", "kept"]
    censored: str
    doc: str


#: The outcome fields of a record (provenance and scenario fields are described in the README).
FIELDS: tuple[Field, ...] = (
    Field("diverged", "bool", "lower", "kept", "-", "whether the loss became NaN or inf within the budget"),
    Field("diverged_step", "steps", None, "kept", "null", "the first step with a NaN or inf loss"),
    Field(
        "escaped",
        "bool",
        "higher",
        "false",
        "false",
        "escaped the designated saddle and did not diverge (null without a saddle)",
    ),
    Field(
        "escape_step",
        "steps",
        "lower",
        "null",
        "null",
        "first step t >= 1 with f(x_t) at most halfway from the saddle's value down to f*",
    ),
    Field(
        "reach_evals",
        "gradient evaluations",
        "lower",
        "null per target",
        "null",
        "per target: the evaluations spent by the step from which the gap stays <= target to the end",
    ),
    Field(
        "reach_steps",
        "steps",
        "lower",
        "null per target",
        "null",
        "per target: the first step from which the gap stays <= target to the end of the budget",
    ),
    Field(
        "first_hit_evals",
        "gradient evaluations",
        "lower",
        "kept",
        "null",
        "COCO's first-hitting time per target, in evaluations (for comparison only: not a success)",
    ),
    Field(
        "first_hit_steps",
        "steps",
        "lower",
        "kept",
        "null",
        "COCO's first-hitting time per target, in steps (for comparison only: not a success)",
    ),
    Field("final_loss", "loss", "lower", "null", "-", "f at the last iterate, noise-free"),
    Field("loss_gap", "loss", "lower", "null", "-", "final_loss - f* (null when f* is unknown)"),
    Field(
        "test_loss",
        "loss",
        "lower",
        "null",
        "-",
        "on a finite sum: the population loss at the last iterate (closed form or a held-out sample)",
    ),
    Field("generalization_gap", "loss", "lower", "null", "-", "on a finite sum: test_loss - final_loss"),
    Field("sharpness", "curvature", "lower", "null", "-", "largest Hessian eigenvalue at the last iterate"),
    Field("hessian_trace", "curvature", "lower", "null", "-", "Hutchinson estimate of tr H at the last iterate"),
    Field(
        "basin_width",
        "distance",
        "higher",
        "null",
        "null (wider than the scan)",
        "radius where the mean loss rise along random directions reaches tau",
    ),
    Field(
        "grad_evals",
        "gradient evaluations",
        "lower",
        "kept",
        "the whole budget",
        "gradient evaluations over the whole budget: what a run that reaches no target is charged",
    ),
)


class RunRecord(TypedDict, total=False):
    """The fields of a run record (schema 3), with their JSON types; :data:`FIELDS` says what each
    outcome means. Families add fields of their own (``basin``, ``mode``, ...), and runs of a tuned
    suite ``phase``, ``label`` and ``tuning``."""

    problem: str
    optimizer: str
    family: str
    dim: int
    instance: int
    seed: int
    steps: int
    noise: float
    dtype: str
    device: str
    final_loss: float | None
    f_star: float | None
    loss_gap: float | None
    escape_step: int | None
    escaped: bool | None
    targets: list[float]
    reach_steps: list[int | None] | None
    reach_evals: list[int | None] | None
    first_hit_steps: list[int | None] | None
    first_hit_evals: list[int | None] | None
    sharpness: float | None
    hessian_trace: float | None
    basin_width: float | None
    tau: float
    diverged: bool
    diverged_step: int | None
    grad_evals: int
    batch_mode: str
    independence: dict[str, Any] | None
    wall_s: float
    batch_runs: int
    batch_size: int
    examples: int
    epochs: float
    test_loss: float | None
    generalization_gap: float | None
    threads: int
    curve: dict[str, list[Any]]
    metrics_s: float
    landbench_version: str
    schema: int
    torch_version: str
    settings: dict[str, Any]
    key: str
    phase: str
    label: str
    tuning: dict[str, Any]


def settle(record: Record) -> Record:
    """Apply the policy to a record as observed, in place, and return it: a diverged run holds in each
    outcome field what :data:`FIELDS` says (``if_diverged``); a run that did not escape has no escape
    step. :mod:`landbench.records` writes every record through this function."""
    if is_diverged(record):
        for spec in FIELDS:
            if spec.name not in record:
                continue
            if spec.if_diverged == "null":
                record[spec.name] = None
            elif spec.if_diverged == "false" and record[spec.name] is not None:
                record[spec.name] = False
            elif spec.if_diverged == "null per target" and record[spec.name] is not None:
                record[spec.name] = [None] * len(record[spec.name])
    if not record.get("escaped") and "escape_step" in record:
        record["escape_step"] = None
    return record


# --- one run --------------------------------------------------------------------------------------


#: The fields every record has, a failed one included: what identifies the run.
IDENTITY_FIELDS: tuple[str, ...] = ("key", "problem", "optimizer", "seed")


_STR = (str,)
_INT = (int,)
_NUMBER = (int, float)
#: What each field of a record holds, where it is present: JSON kinds (``None`` allowed where a
#: field can be null; lists of per-target values hold numbers or nulls). A record that breaks this is
#: not read (:func:`malformed`), so that no view meets a value it would misread.
FIELD_KINDS: dict[str, tuple[tuple[type, ...], bool]] = {
    **{name: (_STR, False) for name in ("problem", "optimizer", "family", "dtype", "device", "failed")},
    "noise_model": (_STR, False),
    **{name: (_STR, True) for name in ("label", "phase", "batch_mode", "landbench_version", "torch_version")},
    "key": ((str, int), False),
    **{name: (_INT, False) for name in ("seed", "instance", "steps", "dim", "schema", "grad_evals")},
    **{name: (_INT, True) for name in ("batch_size", "batch_runs", "examples", "threads", "escape_step")},
    "diverged_step": (_INT, True),
    "noise": (_NUMBER, False),
    **{
        name: (_NUMBER, True)
        for name in ("final_loss", "f_star", "loss_gap", "sharpness", "hessian_trace", "basin_width", "tau")
        + ("wall_s", "metrics_s", "epochs", "test_loss", "generalization_gap")
    },
    "diverged": ((bool,), False),
    "escaped": ((bool,), True),
    **{name: ((dict,), True) for name in ("settings", "tuning", "curve", "independence")},
}
#: Fields that hold a list: the targets (numbers), and one value per target (an integer or null).
PER_TARGET = ("reach_steps", "reach_evals", "first_hit_steps", "first_hit_evals")


def malformed(record: Record) -> str | None:
    """What is wrong with the kinds of a record's fields (``"final_loss is a string, not a number"``),
    or None. Booleans are not numbers here."""
    for name, (kinds, nullable) in FIELD_KINDS.items():
        if name not in record:
            continue
        value = record[name]
        if value is None and nullable:
            continue
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            expected = "a number" if kinds == _NUMBER else " or ".join(_KIND_NAMES[k] for k in kinds)
            return f"{name} is {_kind(value)}, not {expected}"
    targets = record.get("targets")
    if targets is not None and (
        not isinstance(targets, list) or not all(_is_number(t) for t in targets) or not targets
    ):
        return "targets is not a non-empty list of numbers"
    for name in PER_TARGET:
        values = record.get(name)
        if values is None:
            continue
        if not isinstance(values, list) or not all(v is None or _is_int(v) for v in values):
            return f"{name} is not a list of integers or nulls"
        if isinstance(targets, list) and len(values) != len(targets):
            return f"{name} has {len(values)} values for {len(targets)} targets"
    return None


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "an object"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for kind in (bool, str, int, float, dict):
        if isinstance(value, kind):
            return _KIND_NAMES[kind]
    return "a list" if isinstance(value, list) else "a value"


def noise_model_of(record: Record) -> str:
    """The law of the run's gradient noise (:mod:`landbench.noise`): its record's ``noise_model``,
    written only where it is not the default, ``"gaussian"``. Part of what makes two runs the same
    scenario, in every view."""
    return str(record.get("noise_model") or "gaussian")


def noise_text(noise: float, noise_model: str = "gaussian", batch_size: int | None = None) -> str:
    """How every view names a scenario's stochasticity: ``"0.1"``, ``"0.1 student_t(nu=3.0)"``,
    ``"0 batch 32"`` (the law only where it is not gaussian, the batch size only for a minibatch)."""
    law = "" if noise_model == "gaussian" else f" {noise_model}"
    batch = "" if batch_size is None else f" batch {batch_size}"
    return f"{noise:g}{law}{batch}"


def is_finite_sum_record(record: Record) -> bool:
    """Whether the run is on a finite-sum landscape (:mod:`landbench.landscapes.finite_sum`): its
    record has a ``test_loss`` (null if it diverged)."""
    return "test_loss" in record


def batch_size_of(record: Record) -> int | None:
    """The minibatch size of the run, on a finite-sum landscape with a batch size below its n (the
    ``batch_size`` of its ``settings``, which its key holds); None for the full batch and on other
    landscapes. Part of what makes two runs the same scenario, in every view (a failed run's record
    holds its settings too)."""
    settings = record.get("settings")
    size = settings.get("batch_size") if isinstance(settings, dict) else None
    return int(size) if isinstance(size, int) and not isinstance(size, bool) else None


def runs_in_batch(record: Record) -> int | None:
    """How many runs shared the engine's batch with this one (``batch_runs``; older records held it
    in ``batch_size``, before that name meant a minibatch)."""
    if "batch_runs" in record:
        return record["batch_runs"]
    return None if is_finite_sum_record(record) else record.get("batch_size")


def is_failed(record: Record) -> bool:
    """Whether the record is of a run whose job failed (it raised): no outcome, left out of every view."""
    return bool(record.get("failed"))


def split_failed(records: Iterable[Record]) -> tuple[list[Record], list[Record]]:
    """The records of runs that ran, and those of failed runs (:func:`is_failed`), each in order."""
    ran: list[Record] = []
    failed: list[Record] = []
    for record in records:
        (failed if is_failed(record) else ran).append(record)
    return ran, failed


def is_diverged(record: Record) -> bool:
    """Whether the run diverged: a failure for every outcome."""
    return bool(record["diverged"])


def has_saddle(record: Record) -> bool:
    """Whether the run's problem has a designated saddle to escape (``escaped`` is not null)."""
    return record.get("escaped") is not None


def escape_time(record: Record) -> int | None:
    """The step at which the run escaped its saddle; None when it did not (censored), when it diverged
    (even after escaping), or when the problem has no saddle (see :func:`has_saddle`)."""
    if is_diverged(record) or not record.get("escaped"):
        return None
    step = record.get("escape_step")
    return None if step is None else int(step)


def has_targets(record: Record) -> bool:
    """Whether the run tracked targets on the loss gap (its problem has a known f*)."""
    return record.get("reach_steps") is not None and bool(record.get("targets"))


def target_position(targets: Sequence[float], target: float) -> int | None:
    """The index of ``target`` among a record's ``targets`` (to relative rounding), or None."""
    return next((k for k, t in enumerate(targets) if math.isclose(float(t), float(target), rel_tol=1e-9)), None)


def _times(record: Record, prefix: str, target: float, unit: Unit) -> int | None:
    times = record.get(f"{prefix}_{unit}")
    if times is None:
        return None
    position = target_position(record["targets"], target)
    if position is None:
        raise ValueError(f"target {target:g} is not among the record's targets {record['targets']}")
    value = times[position]
    return None if value is None else int(value)


def reach_time(record: Record, target: float, unit: Unit = "evals") -> int | None:
    """When the run reached ``target`` on the loss gap and held it to the end of its budget, in
    ``unit``; None when it did not hold it at the end, diverged, or has no f*."""
    if is_diverged(record):
        return None
    return _times(record, "reach", target, unit)


def first_hit_time(record: Record, target: float, unit: Unit = "evals") -> int | None:
    """COCO's first-hitting time of ``target`` (kept for comparison with COCO data: a run that hits a
    target and then leaves it, or diverges, still has one). Not a success in any landbench view."""
    return _times(record, "first_hit", target, unit)


def budget(record: Record, unit: Unit = "evals") -> float:
    """What a run that reaches no target is charged: its whole budget (``grad_evals`` or ``steps``),
    diverged or not."""
    return float(record["grad_evals"] if unit == "evals" else record["steps"])


def final_value(record: Record, name: str) -> float | None:
    """A value at the final iterate (``final_loss``, ``loss_gap``, ``sharpness``, ...); None for a
    diverged run, which has none, and where it was not measured."""
    if is_diverged(record):
        return None
    value = record.get(name)
    return None if value is None else float(value)


def common_targets(records: Iterable[Record]) -> tuple[float, ...]:
    """The targets every run with targets tracked (none when f* is unknown), hardest last."""
    tracked = [set(map(float, r["targets"])) for r in records if has_targets(r)]
    return tuple(sorted(set.intersection(*tracked), reverse=True)) if tracked else ()


def median_of(records: Sequence[Record], name: str) -> float | None:
    """The median of a final value over runs (:func:`final_value`): diverged runs rank as worse than
    any value, and the median is None when it falls on one, or when a run that did not diverge has
    no value (f* unknown, curvature off)."""
    if not records:
        return None
    values = [final_value(r, name) for r in records]
    if any(v is None and not is_diverged(r) for v, r in zip(values, records)):
        return None
    return censored_quantile(values, 0.5)


# --- many runs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Escapes:
    """Escape times of the runs of a problem with a saddle: one per run, None when censored or diverged."""

    times: tuple[int | None, ...]

    @property
    def escaped(self) -> int:
        return sum(t is not None for t in self.times)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, censored and diverged runs ranked last; None when it falls on one of them."""
        return censored_quantile(self.times, q)

    @property
    def median(self) -> float | None:
        return self.quantile(0.5)


@dataclass(frozen=True)
class Reached:
    """One target over the runs: when each run reached (and held) it, in the summary's unit (None: it
    did not), the cost of each run, and COCO's first hits for comparison."""

    target: float
    times: tuple[int | None, ...]
    charged: tuple[float, ...]
    first_hits: int

    @property
    def successes(self) -> int:
        return sum(t is not None for t in self.times)

    @property
    def ert(self) -> float:
        """COCO's expected running time with every failure charged its whole budget
        (:func:`landbench.ranking.stats.expected_running_time`); inf when no run succeeded."""
        return expected_running_time(list(self.times), list(self.charged))


@dataclass(frozen=True)
class Summary:
    """What a set of runs achieved, under the policy of this module; see :func:`summarize`."""

    runs: int
    diverged: int
    unit: Unit
    escapes: Escapes | None
    targets: tuple[Reached, ...]
    median_final_loss: float | None
    median_loss_gap: float | None
    median_sharpness: float | None
    family: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per family field, a short text for tables ("basin 0:50% 1:50%")
    family_text: dict[str, str] = field(default_factory=dict)
    #: on a finite sum: the median population loss and generalization gap at the last iterate
    median_test_loss: float | None = None
    median_generalization_gap: float | None = None

    def reached(self, target: float) -> Reached:
        """The :class:`Reached` of one of the summary's targets."""
        for reached in self.targets:
            if math.isclose(reached.target, target, rel_tol=1e-9):
                return reached
        listed = ", ".join(f"{r.target:g}" for r in self.targets) or "none (f* unknown)"
        raise ValueError(f"target {target:g} is not among the summary's targets: {listed}")

    @property
    def reached_share(self) -> float | None:
        """The share of (run, target) pairs in which the run reached the target and held it: COCO's
        runtime ECDF at the budget, over the summary's targets (None without targets). A diverged run
        counts as missing every target."""
        if not self.targets or not self.runs:
            return None
        return sum(r.successes for r in self.targets) / (self.runs * len(self.targets))

    #: whether the runs are of a finite sum (they have a test loss)
    finite_sum: bool = False

    @property
    def escaped_share(self) -> float | None:
        return None if self.escapes is None or not self.runs else self.escapes.escaped / self.runs

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: counts, escape share and median, per target the successes and ERT, the medians."""
        out: dict[str, Any] = {"runs": self.runs, "diverged": self.diverged, "time_unit": self.unit}
        if self.escapes is not None:
            out["escaped"] = self.escapes.escaped
            out["escaped_share"] = self.escaped_share
            out["median_escape_step"] = self.escapes.median
        out["reached_share"] = self.reached_share
        out["targets"] = [
            {
                "target": r.target,
                "successes": r.successes,
                "ert": None if math.isinf(r.ert) else r.ert,
                "first_hits": r.first_hits,
            }
            for r in self.targets
        ]
        out["median_final_loss"] = self.median_final_loss
        out["median_loss_gap"] = self.median_loss_gap
        out["median_sharpness"] = self.median_sharpness
        if self.finite_sum:
            out["median_test_loss"] = self.median_test_loss
            out["median_generalization_gap"] = self.median_generalization_gap
        out.update(self.family)
        return out


def summarize(records: Sequence[Record], targets: Sequence[float] | None = None, unit: Unit = "evals") -> Summary:
    """The summary of ``records`` that every view shows (see the module docstring for the policy).

    ``targets``: the targets to report (by default those every run tracked, :func:`common_targets`);
    ``unit``: the time unit of the targets' times and costs, ``"evals"`` or ``"steps"``. Family fields
    are summarised by their family (:attr:`~landbench.landscapes.base.Landscape.outcome_fields`)
    when all runs are of one family.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    records = list(records)
    chosen = tuple(float(t) for t in targets) if targets is not None else common_targets(records)
    saddles = [has_saddle(r) for r in records]
    escapes = Escapes(tuple(escape_time(r) for r in records)) if records and all(saddles) else None
    reached = tuple(
        Reached(
            target=t,
            times=tuple(reach_time(r, t, unit) for r in records),
            charged=tuple(budget(r, unit) for r in records),
            first_hits=sum(first_hit_time(r, t, unit) is not None for r in records),
        )
        for t in chosen
    )
    family, family_text = _family_summaries(records)
    finite = bool(records) and all(is_finite_sum_record(r) for r in records)
    return Summary(
        runs=len(records),
        diverged=sum(is_diverged(r) for r in records),
        unit=unit,
        escapes=escapes,
        targets=reached,
        median_final_loss=median_of(records, "final_loss"),
        median_loss_gap=median_of(records, "loss_gap"),
        median_sharpness=median_of(records, "sharpness"),
        family=family,
        family_text=family_text,
        median_test_loss=median_of(records, "test_loss") if finite else None,
        median_generalization_gap=median_of(records, "generalization_gap") if finite else None,
        finite_sum=finite,
    )


def _family_summaries(records: Sequence[Record]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each family field's summary (and its short text), when all runs are of one known family."""
    names = {r.get("family") for r in records}
    if len(names) != 1 or None in names:
        return {}, {}
    from landbench.errors import SpecError
    from landbench.landscapes import family

    try:
        cls = family(str(names.pop()))
    except SpecError:
        return {}, {}
    summaries, texts = {}, {}
    for spec in cls.outcome_fields:
        if all(spec.name in r for r in records):
            summaries[spec.name] = spec.summarize(records)
            texts[spec.name] = spec.describe(summaries[spec.name])
    return summaries, texts


def schema_of(record: Record) -> int:
    """The schema a record was written under; a hand-written record without one is taken as current
    unless it has the fields of schema 2 (``hit_steps``), whose successes counted first hits."""
    schema = record.get("schema")
    if isinstance(schema, int) and not isinstance(schema, bool):
        return schema
    return RECORD_SCHEMA - 1 if "hit_steps" in record or "hit_evals" in record else RECORD_SCHEMA


__all__ = [
    "FIELDS",
    "FIELD_KINDS",
    "IDENTITY_FIELDS",
    "RECORD_SCHEMA",
    "UNITS",
    "Escapes",
    "Field",
    "Reached",
    "RunRecord",
    "Summary",
    "budget",
    "common_targets",
    "escape_time",
    "final_value",
    "first_hit_time",
    "has_saddle",
    "has_targets",
    "is_diverged",
    "is_failed",
    "malformed",
    "median_of",
    "reach_time",
    "schema_of",
    "settle",
    "split_failed",
    "summarize",
    "target_position",
]
