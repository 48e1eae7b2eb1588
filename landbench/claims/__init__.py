"""The textbook claims about optimising deep networks, each an experiment with a figure, its theory
curve and a verdict computed from the data (``landbench claims``).

Each claim is an experiment file ``problems/claims/NAME.toml`` and a module
``landbench.claims.NAME`` with ``measure(ctx) -> Measured`` (see :mod:`landbench.claims.base`).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from landbench.claims.base import (
    CAVEAT,
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    TIERS,
    VERDICTS,
    ClaimContext,
    ClaimError,
    Experiment,
    Finding,
    Measured,
    read_experiment,
    verdict_of,
)
from landbench.claims.report import ClaimsReport, Failed, write_claims_report
from landbench.threads import choose_threads, using_threads

__all__ = [
    "CAVEAT",
    "INCONCLUSIVE",
    "NOT_SUPPORTED",
    "SUPPORTED",
    "TIERS",
    "VERDICTS",
    "ClaimContext",
    "ClaimError",
    "ClaimOutcome",
    "ClaimsReport",
    "Experiment",
    "Failed",
    "Finding",
    "Measured",
    "experiments",
    "run_claim",
    "run_claims",
    "check_writable",
    "verdict_of",
]


def claims_directory() -> Path:
    """The folder of the shipped experiment files (``problems/claims/``)."""
    from landbench.suite import suite_directory

    return suite_directory() / "claims"


def experiments() -> dict[str, Experiment]:
    """Every shipped claim's experiment, by name, in the order of their numbers."""
    found = [read_experiment(path) for path in sorted(claims_directory().glob("*.toml"))]
    return {e.name: e for e in sorted(found, key=lambda e: (e.number, e.name))}


def select(names: Sequence[str]) -> list[Experiment]:
    """The experiments named (all when none is), in the order of their numbers; an unknown name is
    a :class:`ClaimError` that lists the valid ones."""
    known = experiments()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ClaimError(f"no claim named {', '.join(map(repr, unknown))}; the claims are: {', '.join(known)}")
    wanted = set(names) or set(known)
    return [e for e in known.values() if e.name in wanted]


@dataclass
class ClaimOutcome:
    """One claim's experiment, what it measured, its verdict and how long it took (seconds)."""

    experiment: Experiment
    tier: str
    measured: Measured
    seconds: float

    @property
    def verdict(self) -> str:
        return self.measured.overall()


def run_claim(
    experiment: Experiment | str,
    tier: str,
    out: str | Path,
    *,
    device: str = "cpu",
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> ClaimOutcome:
    """Run (or resume) one claim's experiment at ``tier`` into ``out/NAME/`` and compute its verdict."""
    if isinstance(experiment, str):
        (experiment,) = select([experiment])
    if tier not in TIERS:
        raise ClaimError(f"tier {tier!r} is not one of {', '.join(TIERS)}")
    folder = Path(out) / experiment.name
    folder.mkdir(parents=True, exist_ok=True)
    ctx = ClaimContext(
        experiment=experiment,
        tier=tier,
        folder=folder,
        device=device,
        progress=progress,
        log=log or (lambda line: print(f"landbench claims: {line}", file=sys.stderr)),
    )
    module = importlib.import_module(f"landbench.claims.{experiment.name}")
    started = time.perf_counter()
    # a claim's work on one intra-op thread unless $LANDBENCH_THREADS says otherwise (a second
    # thread costs 5-70 times the work on a busy machine): one thread is then the process's budget,
    # so the engine's batches, the critical-point finder and connectivity run on one too
    # (landbench.threads.large_batch_threads never exceeds the budget)
    with using_threads(choose_threads(0)):
        measured = module.measure(ctx)
    return ClaimOutcome(experiment, tier, measured, time.perf_counter() - started)


def run_claims(
    names: Sequence[str],
    tier: str,
    out: str | Path,
    *,
    device: str = "cpu",
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[list[ClaimOutcome | Failed], ClaimsReport]:
    """Run (or resume) the claims named (all when none is) at ``tier`` into ``out`` and write the
    report (``out/claims.md``, ``claims.html``, ``claims.json``; the entries of claims not named are
    kept from an earlier report there). A claim whose experiment raises is reported as failed with
    its error, and the others still run; what it stored is kept for a rerun. Everything is checked
    (names, tier, the folder can be written) before the first claim runs."""
    chosen = select(names)
    if tier not in TIERS:
        raise ClaimError(f"tier {tier!r} is not one of {', '.join(TIERS)}")
    for experiment in chosen:
        experiment.params(tier)  # every experiment has the tier's table, before anything runs
    check_writable(Path(out))
    say = log or (lambda line: print(f"landbench claims: {line}", file=sys.stderr))
    outcomes: list[ClaimOutcome | Failed] = []
    for experiment in chosen:
        say(f"{experiment.number}. {experiment.title} ...")
        began = time.perf_counter()
        try:
            outcome: ClaimOutcome | Failed = run_claim(experiment, tier, out, device=device, progress=progress, log=say)
            say(f"{experiment.number}. {outcome.verdict} ({outcome.seconds:.0f} s)")
        except Exception as exc:  # one claim's failure must not lose the others' results
            error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            outcome = Failed(experiment.name, experiment.number, experiment.title, error, time.perf_counter() - began)
            say(f"{experiment.number}. failed: {error}")
        outcomes.append(outcome)
    pages = write_claims_report(outcomes, out, tier=tier, device=device, known=list(experiments()))
    return outcomes, pages


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and check that a file can be written in it; a :class:`ClaimError`
    naming the folder otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".landbench-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ClaimError(f"cannot write the claims' folder {folder}: {exc.strerror or exc}") from None
