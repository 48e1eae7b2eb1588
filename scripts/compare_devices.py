"""Compare the records of one suite run on two devices (``landbench run SUITE --device ...`` twice).

Runs are matched by what defines them except the device (problem, instance, optimizer, seed,
steps, noise, dtype, phase). Discrete outcomes (diverged, escaped) must agree; numbers (final loss,
escape step, held times) are compared with a relative tolerance that the dtype allows, since the
devices sum in different orders. Prints one line per disagreement and a summary; exit status 1 if
any discrete outcome disagrees or a number differs beyond the tolerance.

    python scripts/compare_devices.py RESULTS_A RESULTS_B [--rtol 1e-3]
"""

from __future__ import annotations

import argparse
import math
import sys

from landbench.outcomes import is_failed
from landbench.store import load_results

IDENTITY = ("problem", "instance", "optimizer", "seed", "steps", "noise", "dtype", "phase")
DISCRETE = ("diverged", "escaped")
NUMBERS = ("final_loss", "loss_gap", "escape_step")


def _run(record: dict) -> tuple:
    return tuple(record.get(name) for name in IDENTITY)


def _close(a: float | None, b: float | None, rtol: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=rtol)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rtol", type=float, default=1e-3)
    args = parser.parse_args()
    a = {_run(r): r for r in load_results([args.a]) if not is_failed(r)}
    b = {_run(r): r for r in load_results([args.b]) if not is_failed(r)}
    shared = sorted(set(a) & set(b), key=str)
    bad = 0
    worst = 0.0
    for run in shared:
        ra, rb = a[run], b[run]
        for name in DISCRETE:
            if ra.get(name) != rb.get(name):
                bad += 1
                print(f"{name} differs: {run}: {ra.get(name)} vs {rb.get(name)}")
        for name in NUMBERS:
            va, vb = ra.get(name), rb.get(name)
            if va is not None and vb is not None:
                worst = max(worst, abs(va - vb) / max(abs(va), abs(vb), 1e-12))
            if not _close(va, vb, args.rtol):
                bad += 1
                print(f"{name} differs: {run}: {va} vs {vb}")
    only = len(set(a) ^ set(b))
    print(
        f"{len(shared)} runs on both devices ({only} on one only); {bad} disagreements beyond rtol {args.rtol}; "
        f"largest relative difference of a number: {worst:.3g}"
    )
    return 1 if bad or not shared else 0


if __name__ == "__main__":
    sys.exit(main())
