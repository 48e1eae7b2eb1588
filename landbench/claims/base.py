"""What every claim experiment shares: its experiment file, the context it runs in, and its verdict.

A claim is an experiment file ``problems/claims/NAME.toml`` (the claim as the texts state it, its
source, the theory drawn next to the data, the stated test, and one table of sizes per tier) and a
module ``landbench.claims.NAME`` with one function::

    def measure(ctx: ClaimContext) -> Measured: ...

that runs (or reloads) the experiment's units of work through the context, draws its figures into
``ctx.folder`` and computes its verdict from the data through :func:`verdict_of` and the helpers
here. Units of work are resumable: a sweep through :meth:`ClaimContext.sweep` is stored like every
sweep (``landbench run --out``, in ``out/NAME/<store>/``), any other computation through
:meth:`ClaimContext.cached`; the figures and the verdict are always recomputed from what is stored,
never read from a previous run.

Tiers: ``"test"`` (seconds; what the test suite runs), ``"quick"`` (``landbench claims --quick``:
every claim together in under 10 minutes on 2 CPU cores) and ``"full"`` (sized for a GPU).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landbench.errors import LandbenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The verdicts a claim can get, in the order of the report's table.
SUPPORTED = "supported"
CAVEAT = "supported with a caveat"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
VERDICTS = (SUPPORTED, CAVEAT, NOT_SUPPORTED, INCONCLUSIVE)
TIERS = ("test", "quick", "full")
#: Keys every experiment file must have (besides the tier tables). The stated test is ``stated_test``:
#: a top-level key ``test`` would collide with the ``[test]`` tier table in TOML.
REQUIRED = ("number", "title", "sentence", "source", "theory", "stated_test")


class ClaimError(LandbenchError):
    """A bad claim name, tier or experiment file."""


@dataclass(frozen=True)
class Finding:
    """One part of a claim's verdict, computed from the data by a stated test.

    ``verdict``: one of :data:`VERDICTS`; ``statistic``: what was computed, in words (``"max |measured
    - semicircle| over value bins with >= 30 points"``); ``value``: its value (NaN when it could not
    be computed); ``interval``: its 95 % interval where it has one; ``why``: one or two sentences
    with the numbers that decided (for "inconclusive": what data were too thin, and what would
    settle it; for a caveat: the caveat).
    """

    verdict: str
    statistic: str
    value: float
    why: str
    interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ClaimError(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "statistic": self.statistic,
            "value": _json_float(self.value),
            "interval": None if self.interval is None else [_json_float(v) for v in self.interval],
            "why": self.why,
        }


@dataclass
class Measured:
    """What a claim's ``measure`` returns: its findings (one per part of the claim), the figures it
    drew (paths inside ``ctx.folder``, the first is the claim's main figure), a caption per figure,
    a small JSON-ready table of the plotted numbers, and optionally the overall verdict (default:
    :func:`verdict_of` the findings) with a sentence that says it."""

    findings: list[Finding]
    figures: list[Path] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    summary: str = ""

    def overall(self) -> str:
        return self.verdict if self.verdict is not None else verdict_of(self.findings)


def verdict_of(findings: list[Finding]) -> str:
    """The overall verdict of a claim's parts: "inconclusive" if any part is (or there is none);
    else "supported" if every part is; "not supported" if every part is not supported; otherwise
    "supported with a caveat" (the parts that are not supported, or supported with a caveat, are
    the caveat). A claim whose parts do not all bear on it alike (a reference check) sets its own
    verdict in :class:`Measured`."""
    verdicts = [f.verdict for f in findings]
    if not verdicts or INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if all(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    return CAVEAT


def deciding(findings: list[dict[str, Any]], verdict: str) -> dict[str, Any] | None:
    """The part (as :meth:`Finding.as_dict`) that decided a claim's overall ``verdict``, the one
    its summary table shows: for "supported with a caveat", the first part that is not supported
    outright (the caveat, :func:`verdict_of`); otherwise the first part with that verdict; the
    first part where none has it (a verdict the claim set itself)."""
    if not findings:
        return None
    if verdict == CAVEAT:
        return next((f for f in findings if f["verdict"] != SUPPORTED), findings[0])
    return next((f for f in findings if f["verdict"] == verdict), findings[0])


@dataclass(frozen=True)
class Experiment:
    """An experiment file ``problems/claims/NAME.toml``: the claim's text and its sizes per tier."""

    name: str
    number: int
    title: str
    sentence: str
    source: str
    theory: str
    stated_test: str
    tiers: Mapping[str, Mapping[str, Any]]
    path: Path

    def params(self, tier: str) -> dict[str, Any]:
        if tier not in TIERS:
            raise ClaimError(f"tier {tier!r} is not one of {', '.join(TIERS)}")
        if tier not in self.tiers:
            raise ClaimError(f"{self.path.name} has no [{tier}] table")
        return dict(self.tiers[tier])


def read_experiment(path: Path) -> Experiment:
    """Parse one experiment file; a missing key is a :class:`ClaimError` naming it."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        hint = " (the stated test is the key stated_test: a key test collides with the [test] table)"
        raise ClaimError(f"{path}: {exc}{hint if 'overwrite' in str(exc) else ''}") from None
    missing = [key for key in REQUIRED if key not in table]
    if missing:
        raise ClaimError(f"{path.name}: missing {', '.join(missing)}")
    tiers = {tier: table[tier] for tier in TIERS if isinstance(table.get(tier), dict)}
    return Experiment(
        name=path.stem,
        number=int(table["number"]),
        title=str(table["title"]),
        sentence=" ".join(str(table["sentence"]).split()),
        source=" ".join(str(table["source"]).split()),
        theory=" ".join(str(table["theory"]).split()),
        stated_test=" ".join(str(table["stated_test"]).split()),
        tiers=tiers,
        path=path,
    )


@dataclass
class ClaimContext:
    """Where and how one claim runs: its tier and the tier's parameters, its own folder
    ``out/NAME/`` (created), the device, whether to show progress bars, and a log for one-line
    messages (stderr in the CLI)."""

    experiment: Experiment
    tier: str
    folder: Path
    device: str = "cpu"
    progress: bool | None = None
    log: Callable[[str], None] = field(default=lambda line: None)

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def params(self) -> dict[str, Any]:
        return self.experiment.params(self.tier)

    @property
    def quick(self) -> bool:
        return self.tier != "full"

    def figure(self, stem: str) -> Path:
        """The path of a figure ``stem.png`` in the claim's folder."""
        return self.folder / f"{stem}.png"

    def bar(self, total: int, unit: str, what: str) -> Any:
        """A progress bar on stderr over ``total`` units of this claim's own work (sweeps show
        ``run_suite``'s bar): on a terminal, or as ``progress`` says; use as a context manager and
        ``update(1)`` per unit."""
        from tqdm import tqdm

        return tqdm(
            total=total,
            unit=unit,
            desc=f"{self.name}: {what}",
            disable=None if self.progress is None else not self.progress,
            delay=0.5,
            leave=False,
            file=sys.stderr,
        )

    def sweep(self, suite_text: str, store: str = "records") -> list[dict[str, Any]]:
        """Run a suite (TOML text, as in ``problems/``) into the results folder ``out/NAME/<store>/``
        (``results.jsonl`` there, as ``landbench run --out`` writes it), resuming what it holds, and
        return its scored records in scenario order."""
        from landbench.runner import run_suite
        from landbench.suite import parse_suite

        suite = parse_suite(suite_text, self.folder / f"{store}.toml")
        result = run_suite(suite, self.folder / store, device=self.device, progress=self.progress)
        return result.records

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """The JSON value stored under ``key`` in ``out/NAME/cache.jsonl``; computed (and appended,
        one line, flushed) when absent. ``key`` must name everything the value depends on (spec,
        instance, seeds, sizes, settings); a digest of landbench's source is added to it, so that
        changed code computes again rather than reuse what older code stored."""
        path = self.folder / "cache.jsonl"
        key = f"{key} [landbench {source_digest()}]"
        for entry in _read_cache(path):
            if entry.get("key") == key:
                return entry["value"]
        value = compute()
        line = json.dumps({"key": key, "value": value}, allow_nan=True)
        with path.open("a+b") as handle:
            handle.seek(0, 2)
            if handle.tell():
                handle.seek(-1, 2)
                if handle.read(1) != b"\n":  # a line cut by a kill: end it, so that this one stays whole
                    handle.write(b"\n")
            handle.write(line.encode("utf-8") + b"\n")
            handle.flush()
        return value


@functools.cache
def source_digest() -> str:
    """The first 12 hex digits of the SHA-256 of landbench's Python source files (names and bytes)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _read_cache(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill: computed again
        if isinstance(entry, dict) and "key" in entry and "value" in entry:
            entries.append(entry)
    return entries


def _json_float(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
