"""Assertions about runs, for test suites: "escapes the saddle within N steps", "ends in the wide
basin in at least X% of runs", "reaches the target on the loss gap".

Each takes the records of :func:`landbench.run` (or of the pytest fixture ``landbench_run``),
returns the share of runs that met the claim, and raises :class:`AssertionError` with a message
that says what was claimed and what the runs did when fewer than ``at_least`` of them met it::

    records = landbench.run("saddle(dim=100, index=3)", "sgd(lr=0.1)", seeds=8, steps=500)
    assert_escapes(records, within=200)                 # every run escaped by step 200
    assert_reaches(records, target=1e-6, at_least=0.75)  # 6 of 8 runs reached f* + 1e-6

What counts as escaped, reached and diverged is :mod:`landbench.outcomes`' rule, the same as in
every other view: a diverged run never meets a claim (even one it met before diverging), a target
counts as reached only when the run holds it to the end of its budget, and a run that was censored
(never escaped, never reached the target) is reported as such, never as a number.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from landbench import outcomes

__all__ = ["assert_escapes", "assert_in_basin", "assert_no_divergence", "assert_reaches", "summary"]

Records = Sequence[dict[str, Any]]


def assert_escapes(records: Records, within: int | None = None, at_least: float = 1.0) -> float:
    """Claim: at least a share ``at_least`` of the runs escaped the saddle, by step ``within`` if given.

    A run escapes at its ``escape_step``: the first step t >= 1 with ``f(x_t)`` at most halfway from
    the saddle's value down to f* (see the record fields in the README), if it did not diverge
    (:func:`landbench.outcomes.escape_time`). Only problems with a designated saddle (``saddle``,
    ``saddle_chain``) have one.
    """
    __tracebackhide__ = True  # pytest shows the failing claim, not these lines
    _check_records(records, "assert_escapes")
    within = _check_budget(within, "within")
    share = _check_share(at_least)
    if not all(outcomes.has_saddle(r) for r in records):
        raise ValueError(
            f"assert_escapes: {_problems(r for r in records if not outcomes.has_saddle(r))} has no designated "
            "saddle; escape times exist for the families saddle and saddle_chain"
        )

    def met(record: dict[str, Any]) -> bool:
        step = outcomes.escape_time(record)
        return step is not None and (within is None or step <= within)

    claim = "escaped the saddle" + (f" within {within} steps" if within is not None else "")
    healthy = [r for r in records if not outcomes.is_diverged(r)]
    details = [f"escape steps: {_times([outcomes.escape_time(r) for r in healthy], 'never escaped')}"]
    return _judge(records, met, share, claim, details)


def assert_reaches(
    records: Records,
    target: float,
    within: int | None = None,
    at_least: float = 1.0,
    unit: str = "steps",
) -> float:
    """Claim: at least a share ``at_least`` of the runs reached ``f(x) - f* <= target`` and held it to
    the end of their budget, from ``within`` on (in ``unit``: optimizer ``"steps"`` or gradient
    ``"evals"``) if given (:func:`landbench.outcomes.reach_time`).

    ``target`` must be one of the records' ``targets`` (by default 10, 1, 0.1, ..., 1e-8; pass
    ``targets=[...]`` to :func:`landbench.run` for others), and the problem must have a known f*.
    """
    __tracebackhide__ = True  # pytest shows the failing claim, not these lines
    _check_records(records, "assert_reaches")
    within = _check_budget(within, "within")
    share = _check_share(at_least)
    if unit not in ("steps", "evals"):
        raise ValueError(f"assert_reaches: unit must be 'steps' or 'evals', got {unit!r}")
    unknown = [r for r in records if not outcomes.has_targets(r)]
    if unknown:
        raise ValueError(
            f"assert_reaches: {_problems(unknown)} has no known optimum f*, so no target on the loss gap "
            "can be checked; claim something about final_loss instead"
        )
    for record in records:  # every record first, so that a wrong target is named before any claim
        _target_position(record["targets"], target)

    def reached(record: dict[str, Any]) -> int | None:
        return outcomes.reach_time(record, target, unit)  # type: ignore[arg-type]

    def met(record: dict[str, Any]) -> bool:
        time = reached(record)
        return time is not None and (within is None or time <= within)

    claim = f"reached loss gap {target:g} and held it" + (f" from {within} {unit} on" if within is not None else "")
    healthy = [r for r in records if not outcomes.is_diverged(r)]
    gaps = [gap for r in healthy if (gap := outcomes.final_value(r, "loss_gap")) is not None]
    left = sum(
        reached(r) is None and outcomes.first_hit_time(r, target, unit) is not None  # type: ignore[arg-type]
        for r in healthy
    )
    details = [
        f"{unit} from which the target was held: {_times([reached(r) for r in healthy], 'did not hold it')}",
        f"final loss gaps: {_values(gaps)}",
    ]
    if left:
        details.append(f"{left} run(s) reached the target and left it again before the end of the budget")
    return _judge(records, met, share, claim, details)


def assert_in_basin(records: Records, basin: int | str = "wide", at_least: float = 0.5) -> float:
    """Claim: at least a share ``at_least`` of the runs ended in ``basin`` of a ``basins`` problem.

    ``basin`` is a well's index (the record field ``basin``), or ``"wide"`` / ``"narrow"``: the
    well of largest / smallest width in the problem's ``wells``
    (:func:`landbench.landscapes.basins.in_basin`; a diverged run ended in no basin).
    """
    __tracebackhide__ = True  # pytest shows the failing claim, not these lines
    from landbench.landscapes.basins import in_basin, summarize_basins, well_index

    _check_records(records, "assert_in_basin")
    share = _check_share(at_least)
    others = [r for r in records if r.get("family") != "basins"]
    if others:
        raise ValueError(f"assert_in_basin: {_problems(others)} is not a basins problem (no basin field)")
    try:
        wanted = sorted({well_index(str(r["problem"]), basin) for r in records})
    except ValueError as exc:
        raise ValueError(f"assert_in_basin: {exc}") from None
    name = f"basin {basin}" if isinstance(basin, int) else f"the {basin} basin (well {', '.join(map(str, wanted))})"
    ended = summarize_basins(records)
    counts = ", ".join(f"{'no basin' if b == 'none' else f'basin {b}'}: {n}" for b, n in ended["ended_in"].items())
    details = [f"where the runs ended: {counts or '-'}"]
    return _judge(records, lambda r: in_basin(r, basin), share, f"ended in {name}", details)


def assert_no_divergence(records: Records) -> None:
    """Claim: no run's loss became NaN or inf."""
    __tracebackhide__ = True  # pytest shows the failing claim, not these lines
    _check_records(records, "assert_no_divergence")
    _judge(records, lambda r: not outcomes.is_diverged(r), 1.0, "stayed finite", [])


def summary(records: Records) -> dict[str, Any]:
    """The headline numbers of a set of runs, as JSON-ready values: the problem, optimizer, device
    and budget, then :meth:`landbench.outcomes.Summary.as_dict` of
    :func:`landbench.outcomes.summarize` (the summary every view shows): runs, diverged, the runs
    that escaped, their share and the median escape step (null when half or more never escaped or
    diverged), the share of (run, target) pairs held and each target's successes and ERT, the median
    final loss, loss gap and sharpness (null when the median falls on a diverged run, or the value
    was not measured), and the family's own summaries (``basin``, ``mode``, ...)."""
    _check_records(records, "summary")
    return {
        "problem": _one_or_many(r["problem"] for r in records),
        "optimizer": _one_or_many(r["optimizer"] for r in records),
        "device": _one_or_many(r["device"] for r in records),
        "steps": max(r["steps"] for r in records),
        **outcomes.summarize(records).as_dict(),
    }


def censored_median(times: Sequence[int | float | None]) -> float | None:
    """The median of times where ``None`` means "never" (later than any time): None when it falls on
    a never, since the median is then not a number (:func:`landbench.ranking.stats.censored_quantile`)."""
    from landbench.ranking.stats import censored_quantile

    return censored_quantile(times, 0.5)


# -- helpers ----------------------------------------------------------------------------------------


def _judge(
    records: Records, met: Callable[[dict[str, Any]], bool], at_least: float, claim: str, details: list[str]
) -> float:
    """The share of runs that ``met`` the claim; an AssertionError that explains it when too low."""
    __tracebackhide__ = True  # pytest shows the failing claim, not these lines
    count = sum(bool(met(r)) for r in records)
    share = count / len(records)
    if share + 1e-12 >= at_least:
        return share
    needed = math.ceil(at_least * len(records) - 1e-9)
    lines = [
        f"{_scenario(records)}: {count} of {len(records)} runs {claim} ({share:.0%}); "
        f"expected at least {needed} ({at_least:.0%})",
        *details,
    ]
    diverged = [r for r in records if outcomes.is_diverged(r)]
    if diverged:
        where = ", ".join(f"seed {r['seed']} at step {r['diverged_step']}" for r in diverged[:5])
        lines.append(f"diverged: {len(diverged)} run(s) ({where}{', ...' if len(diverged) > 5 else ''})")
    raise AssertionError("\n  ".join(lines))


def _scenario(records: Records) -> str:
    """``saddle(dim=100) with sgd(lr=0.1), 8 runs of 500 steps`` (or how many problems and optimizers)."""
    problems = sorted({r["problem"] for r in records})
    optimizers = sorted({r.get("label") or r["optimizer"] for r in records})
    budgets = sorted({r["steps"] for r in records})
    what = (problems[0] if len(problems) == 1 else f"{len(problems)} problems") + " with "
    what += optimizers[0] if len(optimizers) == 1 else f"{len(optimizers)} optimizers"
    noise = sorted({(r["noise"], outcomes.noise_model_of(r), outcomes.batch_size_of(r) or 0) for r in records})
    if noise != [(0.0, "gaussian", 0)]:
        levels = (outcomes.noise_text(n, law, batch or None) for n, law, batch in noise)
        what += f" (noise {', '.join(levels)})"
    budget = f"{budgets[0]} steps" if len(budgets) == 1 else f"{budgets[0]}-{budgets[-1]} steps"
    return f"{what}, {len(records)} runs of {budget}"


def _times(times: Sequence[int | None], never: str) -> str:
    """Sorted times, with the censored ones counted at the end."""
    done = sorted(t for t in times if t is not None)
    shown = ", ".join(str(t) for t in done[:12]) + (", ..." if len(done) > 12 else "")
    censored = len(times) - len(done)
    parts = [shown] if done else []
    if censored:
        parts.append(f"{censored} run(s) {never}")
    return "; ".join(parts) or "-"


def _values(values: Sequence[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"min {ordered[0]:.3g}, median {statistics.median(ordered):.3g}, max {ordered[-1]:.3g}"


def _problems(records: Any) -> str:
    names = sorted({r["problem"] for r in records})
    return names[0] if len(names) == 1 else ", ".join(names)


def _one_or_many(values: Any) -> str:
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else ", ".join(distinct)


def _check_records(records: Records, where: str) -> None:
    if isinstance(records, dict):
        raise TypeError(f"{where}: pass the list of records (one per run), not a single record")
    if not records:
        raise ValueError(f"{where}: no records (no runs to check)")
    schemas = sorted({outcomes.schema_of(r) for r in records} - {outcomes.RECORD_SCHEMA})
    if schemas:
        raise ValueError(
            f"{where}: records of schema {', '.join(map(str, schemas))}, and this landbench reads schema "
            f"{outcomes.RECORD_SCHEMA} (the meaning of their outcomes differs): run them again with this landbench"
        )


def _check_budget(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative whole number of steps (or None for any time), got {value!r}")
    return value


def _check_share(at_least: float) -> float:
    if isinstance(at_least, bool) or not isinstance(at_least, int | float) or not 0 <= at_least <= 1:
        percent = isinstance(at_least, int | float) and 1 < at_least <= 100
        hint = f" (did you mean {at_least / 100:g}?)" if percent else ""
        raise ValueError(f"at_least is a share of the runs between 0 and 1, got {at_least!r}{hint}")
    return float(at_least)


def _target_position(targets: Sequence[float], target: float) -> int:
    position = outcomes.target_position(targets, target)
    if position is not None:
        return position
    listed = ", ".join(f"{t:g}" for t in targets)
    raise ValueError(
        f"assert_reaches: target {target:g} is not among the records' targets ({listed}); "
        f"run with targets=[..., {target:g}] to record it"
    )
