"""Reference results shipped with landbench, to rank a new optimizer against without re-running the classics.

``baselines``: the ``baselines`` suite (``problems/baselines.toml``) run with its tuning protocol
for gd, momentum, Nesterov, Adam, AdamW, RMSprop, Adagrad, SAM and perturbed GD, on a CPU in
float64; only the scored records are kept, without their loss curves, gzipped. Regenerate with
``python -m landbench.references baselines`` (see the README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landbench.errors import LandbenchError
from landbench.store import load_results

FOLDER = Path(__file__).resolve().parent


def available_references() -> list[str]:
    """Names of the shipped reference sets."""
    return sorted(p.name.removesuffix(".jsonl.gz") for p in FOLDER.glob("*.jsonl.gz"))


def reference_path(name: str) -> Path:
    return FOLDER / f"{name}.jsonl.gz"


def load_reference(name_or_path: str) -> list[dict[str, Any]]:
    """A shipped reference set by name, or results from a folder or ``.jsonl`` / ``.jsonl.gz`` file."""
    path = Path(name_or_path)
    if name_or_path in available_references():
        path = reference_path(name_or_path)
    elif not path.exists():
        raise LandbenchError(
            f"unknown reference {name_or_path!r}; shipped references: {', '.join(available_references()) or '(none)'}, "
            f"or give a results folder or .jsonl file"
        )
    return load_results([path])


def slim(record: dict[str, Any]) -> dict[str, Any]:
    """A record as shipped: everything but its loss curve."""
    return {k: v for k, v in record.items() if k != "curve"}
