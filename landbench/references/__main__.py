"""Regenerate a shipped reference set: ``python -m landbench.references baselines [--device cpu] [--work DIR]``.

Runs the suite of the same name (tuning, then scoring) into ``--work`` (resumable: an interrupted
run continues), then writes its scored records, without loss curves, to
``landbench/references/NAME.jsonl.gz``.
"""

from __future__ import annotations

import gzip
import json

import click

from landbench.references import reference_path, slim
from landbench.runner import run_suite
from landbench.suite import load_suite


@click.command()
@click.argument("name")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--work", default="reference_runs", show_default=True, help="Results folder of the full runs.")
def main(name: str, device: str, work: str) -> None:
    """Run the suite NAME and store its scored records as the reference set NAME."""
    result = run_suite(load_suite(name), f"{work}/{name}", device=device, progress=True)
    path = reference_path(name)
    with gzip.GzipFile(path, "wb", mtime=0) as raw:
        raw.write("".join(json.dumps(slim(r), allow_nan=False) + "\n" for r in result.records).encode())
    click.echo(f"{len(result.records)} scored records written to {path}")


if __name__ == "__main__":
    main()
