"""Compare the records of one suite run on two devices (``landbench run SUITE --device ...`` twice).

    python scripts/compare_devices.py RESULTS_A RESULTS_B [--rtol 1e-3] [--twin-device cpu]

Runs are matched by :func:`landbench.records.key_on` (the one rule of what the same run is, less
where it ran). Each run present on both is then:

* **agreeing**: the same discrete outcomes (diverged, escaped) and numbers (final loss, loss gap,
  escape step) within ``rtol`` (relative, and absolute below 1), as the two devices' rounding allows;
* **drawn**: noise of a model that draws from a device generator (gaussian, student_t,
  alpha_stable, hessian: the CPU and CUDA generators are different algorithms, so each device draws
  its own equally valid noise) is not compared run by run; ``frozen`` noise and minibatches are
  functions of hashes, the same on every device, and are compared;
* **chaotic**: it differs, and so does one of three *twins* of run A, re-run on ``--twin-device``
  with every start coordinate ``x`` moved to ``x (1 +- s)`` (a sign pattern per twin) for ``s`` =
  2**-20, 2**-16 and 2**-13 (8, 128 and 1024 units in the last place of float32): a perturbation
  that small changes this run as much, so the devices' difference says nothing about the devices.
  One size is not enough: ``levy(dim=4)`` with SGD and momentum 0.9 (lr 0.05) ends at 10.6 from
  its start, at 31 or 17 from starts moved by 2**-20, at 10.6 from every one of 8 patterns of
  2**-16, and at 29 from 2**-12;
* **disagreeing**: it differs and no twin does, or its twin cannot run here, or it failed on one
  device only; and apart: runs that **failed on both** devices, ran on **one device only**, or
  whose records landbench cannot read (**not read**: another version's keys, no settings).

Noise drawn by a device's generator is compared run by run when both sets ran on one device type.
Prints a line per run that is not agreeing or drawn, and a summary; exit status 1 if a run
disagrees, failed on both or ran on one device only, or no run was compared; 2 if a folder cannot
be read.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

import landbench
from landbench.errors import LandbenchError
from landbench.landscapes.base import Landscape
from landbench.noise import parse_noise_model
from landbench.outcomes import escape_time, final_value, is_diverged, is_failed, noise_model_of
from landbench.records import key_on
from landbench.rng import generators
from landbench.store import load_results

#: The twins: each one's sign pattern and how far (relative) it moves each start coordinate.
TWINS = ((1, 2.0**-20), (2, 2.0**-16), (3, 2.0**-13))


def _outcomes(record: Mapping[str, Any]) -> tuple[dict[str, bool], dict[str, float | None]]:
    """A run's discrete outcomes and numbers, as :mod:`landbench.outcomes` reads them for every view."""
    escape = escape_time(record)
    discrete = {"diverged": is_diverged(record), "escaped": escape is not None}
    numbers = {name: final_value(record, name) for name in ("final_loss", "loss_gap")}
    return discrete, numbers | {"escape_step": None if escape is None else float(escape)}


def differences(a: Mapping[str, Any], b: Mapping[str, Any], rtol: float) -> list[str]:
    """What differs between two records of one run beyond ``rtol``: a failure on one of them, a
    discrete outcome, a number (relative difference above ``rtol``, and absolute above it below 1)."""
    if is_failed(a) or is_failed(b):
        return [] if is_failed(a) and is_failed(b) else [f"failed: {is_failed(a)} vs {is_failed(b)}"]
    (discrete_a, numbers_a), (discrete_b, numbers_b) = _outcomes(a), _outcomes(b)
    out = [
        f"{name}: {discrete_a[name]} vs {discrete_b[name]}"
        for name in discrete_a
        if discrete_a[name] != discrete_b[name]
    ]
    for name, va in numbers_a.items():
        vb = numbers_b[name]
        if (va is None) != (vb is None) or (va is not None and not math.isclose(va, vb, rel_tol=rtol, abs_tol=rtol)):
            out.append(f"{name}: {va} vs {vb}")
    return out


def relative_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """The largest difference of a number between two records of one run, relative to the larger
    magnitude or to 1 below 1 (the measure ``rtol`` bounds); 0 if none."""
    pairs = zip(_outcomes(a)[1].values(), _outcomes(b)[1].values())
    return max(
        (abs(va - vb) / max(abs(va), abs(vb), 1.0) for va, vb in pairs if va is not None and vb is not None),
        default=0.0,
    )


def is_drawn(record: Mapping[str, Any]) -> bool:
    """Whether the run's gradient noise comes from a device's generator (different on each device)."""
    same = parse_noise_model(noise_model_of(record)).same_on_every_device
    return float(record.get("noise") or 0.0) > 0 and not same


@contextlib.contextmanager
def jittered_starts(pattern: int, scale: float) -> Iterator[None]:
    """Within the block, every start point of every landscape has each coordinate ``x`` moved to
    ``x (1 +- scale)``: a sign pattern drawn per run from
    ``(pattern, run seed)``, so that a run's twin does not depend on its batch (then retracted onto
    the landscape's feasible set, as the engine's own twins are)."""
    original = Landscape.sample_start

    def sample_start(self: Landscape, seeds: Sequence[int]) -> torch.Tensor:
        start = original(self, seeds)
        signs = torch.stack(
            [torch.randint(0, 2, start.shape[1:], generator=g) * 2 - 1 for g in generators((pattern,), list(seeds))]
        ).to(start)
        return self.retract(start * (1 + scale * signs))

    Landscape.sample_start = sample_start  # type: ignore[method-assign]
    try:
        yield
    finally:
        Landscape.sample_start = original  # type: ignore[method-assign]


def twin(record: Mapping[str, Any], pattern: int, scale: float, device: str) -> dict[str, Any]:
    """The run of ``record`` made again on ``device``, alone, from a start moved by ``scale`` (relative)."""
    settings = dict(record["settings"])
    with jittered_starts(pattern, scale):
        (made,) = landbench.run(
            record["problem"],
            record["optimizer"],
            seeds=[record["seed"]],
            steps=record["steps"],
            device=device,
            noise=record["noise"],
            instance=record["instance"],
            noise_model=settings.pop("noise_model", "gaussian"),
            batch_size=settings.pop("batch_size", None),
            **settings,
        )
    return made


def device_of(records: Sequence[Mapping[str, Any]], where: str) -> str:
    """The one device type the runs of a result set ran on."""
    devices = {str(r["device"]) for r in records if r.get("device")}  # old failed records name none
    if len(devices) != 1:
        raise LandbenchError(f"{where}: expected the runs of one device, found {sorted(devices) or 'none'}")
    return devices.pop()


def by_run(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Mapping[str, Any]], list[str]]:
    """The records by their run's key on any device (:func:`landbench.records.key_on`), and a line
    for each record that has none here (written by another version of landbench, or without settings)."""
    runs: dict[str, Mapping[str, Any]] = {}
    unread = []
    for record in records:
        try:
            runs[key_on(record, "any")] = record
        except (LandbenchError, KeyError, TypeError) as exc:
            unread.append(f"{record.get('key')} ({record.get('problem')}, {record.get('optimizer')}): {exc}")
    return runs, unread


KINDS = ("agreeing", "drawn", "chaotic", "disagreeing", "failed on both", "one device only", "not read")


def compare(
    a_records: Sequence[Mapping[str, Any]],
    b_records: Sequence[Mapping[str, Any]],
    rtol: float = 1e-3,
    twin_device: str = "cpu",
    say: Any = print,
) -> dict[str, int]:
    """Classify every run of two result sets (see the module docstring); returns the counts of
    :data:`KINDS`. Noise drawn on each device is compared too when both sets ran on one device type."""
    devices = device_of(a_records, "A"), device_of(b_records, "B")
    counts = dict.fromkeys(KINDS, 0)
    (a, unread_a), (b, unread_b) = by_run(a_records), by_run(b_records)
    for side, lines in (("A", unread_a), ("B", unread_b)):
        for line in lines:
            counts["not read"] += 1
            say(f"not read ({side}): {line}")
    worst = 0.0
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra is None or rb is None:
            counts["one device only"] += 1
            unread_there = unread_b if rb is None else unread_a
            maybe = " (or its record there was not read)" if unread_there else ""
            say(f"on one device only ({devices[0] if rb is None else devices[1]}){maybe}: {_name(ra or rb)}")
            continue
        if is_failed(ra) and is_failed(rb):
            counts["failed on both"] += 1
            say(f"failed on both: {_name(ra)}: {ra['failed']}")
            continue
        if devices[0] != devices[1] and not is_failed(ra) and not is_failed(rb) and is_drawn(ra):
            counts["drawn"] += 1
            continue
        differ = differences(ra, rb, rtol)
        if not differ:
            counts["agreeing"] += 1
            worst = max(worst, relative_difference(ra, rb))
            continue
        kind, detail = "disagreeing", ""
        if not is_failed(ra) and not is_failed(rb):
            try:
                moved = [d for p, s in TWINS for d in differences(ra, twin(ra, p, s, twin_device), rtol)]
            except Exception as exc:  # noqa: BLE001 - a twin that cannot run here leaves the run unjudged
                detail = f" (its twin cannot run on {twin_device} here: {type(exc).__name__}: {exc})"
            else:
                kind = "chaotic" if moved else kind
                detail = f" (a twin on {twin_device}: {moved[0]})" if moved else ""
        counts[kind] += 1
        say(f"{kind}: {_name(ra)}: {'; '.join(differ)}{detail}")
    compared = counts["agreeing"] + counts["chaotic"] + counts["disagreeing"]
    say(
        f"{compared} runs compared ({devices[0]} vs {devices[1]}): {counts['agreeing']} agree within rtol {rtol} "
        f"(largest relative difference {worst:.3g}), {counts['chaotic']} chaotic (a twin moved as far), "
        f"{counts['disagreeing']} disagree; {counts['drawn']} with noise drawn on each device, "
        f"{counts['failed on both']} failed on both, {counts['one device only']} on one device only, "
        f"{counts['not read']} records not read"
    )
    return counts


def _name(record: Mapping[str, Any]) -> str:
    state = " (failed)" if is_failed(record) else " (diverged)" if is_diverged(record) else ""
    phase = f" [{record['phase']}]" if record.get("phase") else ""
    return f"{record['problem']} {record['optimizer']} seed {record['seed']} noise {record.get('noise')}{phase}{state}"


def _tolerance(text: str) -> float:
    """``--rtol``: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when every run compared agrees or is chaotic or drawn, 1 when one disagrees, failed
    on both, ran on one device only or nothing was compared, 2 when the folders cannot be read."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="a results folder (or .jsonl) of the suite on one device")
    parser.add_argument("b", help="the same suite's results on the other device")
    parser.add_argument("--rtol", type=_tolerance, default=1e-3, help="relative tolerance of numbers (default 1e-3)")
    parser.add_argument("--twin-device", default="cpu", help="where A's twins are re-run (default cpu)")
    args = parser.parse_args(argv)
    try:
        counts = compare(load_results([args.a]), load_results([args.b]), args.rtol, args.twin_device)
    except (LandbenchError, OSError) as exc:
        print(f"compare_devices: error: {exc}", file=sys.stderr)
        return 2
    compared = counts["agreeing"] + counts["chaotic"] + counts["disagreeing"]
    failing = counts["disagreeing"] + counts["failed on both"] + counts["one device only"]
    return 1 if failing or not compared else 0


if __name__ == "__main__":
    sys.exit(main())
