"""Draw the throughput of ``landbench bench`` against the dimension: docs/figures/bench_throughput.png.

Usage (from the repository root)::

    landbench bench --json > bench_cpu.json
    landbench bench --device cuda --json > bench_cuda.json      # on a GPU machine, optional
    python scripts/bench_figure.py bench_cpu.json [bench_cuda.json] [-o docs/figures/bench_throughput.png]

Each input is what ``landbench bench --json`` prints: ``{"device": ..., "rows": [...]}`` (a bare list
of rows is read too), one row per size and optimizer with ``runs``, ``dim``, ``steps``,
``optimizer`` and the seconds of each way (``hand_s``, ``no_metrics_s``, ``metrics_s``,
``naive_s``, the naive loop's already scaled to the row's runs x steps). The figure has one panel
per optimizer; in each, the throughput (run-steps x d per second, log scale) of the hand-written
batched loop, ``landbench.run`` without and with its default metrics and the naive per-run loop
against d (log scale), one colour family per input file (device), and the bound the measured copy
bandwidth sets on the step (grey, dotted). Bad input is refused in one line, exit status 2.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "bench_throughput.png"
#: The ways of the table: the row's field of seconds, the label, the marker.
WAYS = (
    ("hand_s", "hand-written batched loop", "o"),
    ("no_metrics_s", "landbench.run, no metrics", "s"),
    ("metrics_s", "landbench.run, default metrics", "^"),
    ("naive_s", "naive per-run loop", "v"),
)
REQUIRED = ("runs", "dim", "steps", "optimizer", *(field for field, _, _ in WAYS))
#: One colour family per input (device): a colour per way, in the order of WAYS.
FAMILIES = (
    ("#08306b", "#2171b5", "#41ab5d", "#6a51a3"),  # blues, green, purple
    ("#a50f15", "#ef3b2c", "#fd8d3c", "#8c510a"),  # reds, orange, brown
    ("#252525", "#737373", "#bdbdbd", "#525252"),  # greys
)
#: Passes over the (B, d) float32 state that one step must make (``landbench.bench.PASSES``).
PASSES = {"sgd": 5, "adam": 11}
TITLES = {"sgd": "SGD (lr = 0.01)", "adam": "Adam (lr = 0.001)"}


class BadInput(click.ClickException):
    """A one-line error with exit status 2, like the ``landbench`` command's."""

    exit_code = 2


class Table:
    """One ``landbench bench --json`` output: its device, date and rows."""

    def __init__(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: cannot be read ({exc.strerror if isinstance(exc, OSError) else exc})") from exc
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc
        meta = data if isinstance(data, dict) else {}
        rows = data.get("rows") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not rows:
            raise BadInput(f"{path}: no rows (expected the output of landbench bench --json)")
        for number, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise BadInput(f"{path}: row {number} is not an object")
            missing = [field for field in REQUIRED if field not in row]
            if missing:
                raise BadInput(f"{path}: row {number} lacks {', '.join(missing)}")
            for field in REQUIRED:
                value = row[field]
                if field == "optimizer":
                    if not isinstance(value, str):
                        raise BadInput(f"{path}: row {number}: optimizer must be a name, got {value!r}")
                elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                    raise BadInput(f"{path}: row {number}: {field} must be a positive number, got {value!r}")
        self.path = path
        self.rows: list[dict[str, Any]] = rows
        self.device = str(meta.get("device") or rows[0].get("device") or path.stem)
        self.date = str(meta.get("date") or datetime.date.fromtimestamp(os.path.getmtime(path)).isoformat())[:10]
        threads = sorted({row["threads"] for row in rows if isinstance(row.get("threads"), int)})
        self.threads = "?" if not threads else f"{threads[0]}" if len(threads) == 1 else f"{threads[0]}-{threads[-1]}"

    def describe(self) -> str:
        """Device, host threads (not on a GPU) and date, for the title."""
        if self.device.startswith("cuda"):
            return f"{self.device}, {self.date}"
        plural = "" if self.threads == "1" else "s"
        return f"{self.device}, {self.threads} thread{plural}, {self.date}"


def _power(number: int) -> str:
    """``10^k`` in mathtext for a power of ten from 10 on, else the number."""
    exponent = len(str(number)) - 1
    return f"$10^{{{exponent}}}$" if number >= 10 and number == 10**exponent else f"{number:g}"


def throughput(row: dict[str, Any], field: str) -> float:
    """Run-steps x d per second of one way of a row."""
    return row["runs"] * row["steps"] * row["dim"] / row[field]


def draw(tables: Sequence[Table], out: Path) -> Path:
    """The figure of ``tables`` (see the module docstring) written to ``out`` as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullLocator

    optimizers = list(dict.fromkeys(row["optimizer"] for table in tables for row in table.rows))
    columns = 3 if len(tables) == 1 else 2  # of the legend, below the panels
    legend_rows = -(-(len(WAYS) + 1) * len(tables) // columns)
    legend_inches = 0.2 * legend_rows + 0.15
    height = 5.0 + legend_inches
    fig, axes = plt.subplots(
        1, len(optimizers), figsize=(5.2 * len(optimizers) + 0.4, height), sharey=True, squeeze=False
    )
    legend: dict[str, Line2D] = {}
    for ax, optimizer in zip(axes[0], optimizers):
        sizes: dict[int, set[str]] = {}
        for index, table in enumerate(tables):
            colours = FAMILIES[index % len(FAMILIES)]
            rows = sorted((r for r in table.rows if r["optimizer"] == optimizer), key=lambda r: r["dim"])
            if not rows:
                continue
            dims = [r["dim"] for r in rows]
            for r in rows:
                sizes.setdefault(r["dim"], set()).add(f"B={r['runs']}, T={r['steps']}")
            suffix = f" ({table.device})" if len(tables) > 1 else ""
            for (field, label, marker), colour in zip(WAYS, colours):
                (line,) = ax.plot(dims, [throughput(r, field) for r in rows], color=colour, marker=marker, lw=1.8, ms=6)
                legend.setdefault(label + suffix, line)
            bound_rows = [r for r in rows if isinstance(r.get("copy_bandwidth"), (int, float))]
            if bound_rows and optimizer in PASSES:
                (line,) = ax.plot(
                    [r["dim"] for r in bound_rows],
                    [r["copy_bandwidth"] / (4 * PASSES[optimizer]) for r in bound_rows],
                    color=colours[0], ls=":", lw=1.2, alpha=0.6,
                )  # fmt: skip
                legend.setdefault("copy-bandwidth bound on the step" + suffix, line)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted(sizes)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{_power(d)}\n" + "\n".join(sorted(sizes[d])) for d in ticks], fontsize=8)
        ax.set_xlim(ticks[0] / 2.5, ticks[-1] * 2.5)
        ax.set_title(TITLES.get(optimizer, optimizer), fontsize=11)
        ax.set_xlabel("dimension d (B runs, T steps)")
        ax.grid(True, which="major", alpha=0.3)
        ax.grid(True, which="minor", axis="y", alpha=0.1)
    axes[0][0].set_ylabel("throughput (run-steps x d per second)")
    fig.suptitle("landbench bench, saddle family, float32: " + "; ".join(t.describe() for t in tables), fontsize=11)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=columns, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, legend_inches / height, 1, 1 - 0.3 / height))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=DEFAULT_OUT, show_default=True,
              help="The PNG to write.")  # fmt: skip
def main(inputs: tuple[Path, ...], out: Path) -> None:
    """Draw throughput against d from INPUTS (outputs of ``landbench bench --json``; CPU first, then GPU)."""
    if len(inputs) > len(FAMILIES):
        raise BadInput(f"at most {len(FAMILIES)} inputs, got {len(inputs)}")
    written = draw([Table(path) for path in inputs], out)
    click.echo(f"wrote {written}")


if __name__ == "__main__":
    main()
