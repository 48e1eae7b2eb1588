"""scripts/bench_figure.py: the throughput-against-d figure of BENCHMARKS.md from ``landbench bench --json``."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from runs import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_figure.py"


@pytest.fixture(scope="module")
def figure() -> ModuleType:
    return load_script(SCRIPT)


def rows(scale: float = 1.0) -> list[dict[str, Any]]:
    """Two sizes x both optimizers, shaped like ``landbench bench --json``'s rows."""
    out = []
    for runs, dim, steps in ((256, 10, 100), (2, 1_000_000, 5)):
        for optimizer, slower in (("sgd", 1.0), ("adam", 1.5)):
            hand = scale * slower * runs * dim * steps / 2e8
            out.append(
                {
                    "runs": runs, "dim": dim, "steps": steps, "optimizer": optimizer,
                    "hand_s": hand, "no_metrics_s": 1.4 * hand, "metrics_s": 3 * hand, "naive_s": 40 * hand,
                    "copy_bandwidth": 2e10 / scale, "threads": 1 if runs * dim < 2**20 else 2,
                }
            )  # fmt: skip
    return out


def test_draws_a_png_of_one_or_two_devices(figure: ModuleType, tmp_path: Path) -> None:
    cpu, gpu = tmp_path / "cpu.json", tmp_path / "gpu.json"
    cpu.write_text(json.dumps({"device": "cpu", "rows": rows()}))
    gpu.write_text(json.dumps(rows(scale=0.01)))  # a bare list of rows is read too
    for inputs in ([cpu], [cpu, gpu]):
        out = tmp_path / f"figure_{len(inputs)}.png"
        result = CliRunner().invoke(figure.main, [*map(str, inputs), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    table = figure.Table(cpu)
    assert table.device == "cpu" and table.threads == "1-2"
    assert figure.throughput(rows()[0], "hand_s") == pytest.approx(2e8)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "no rows"),
        (json.dumps({"device": "cpu", "rows": []}), "no rows"),
        (json.dumps([{k: v for k, v in rows()[0].items() if k != "metrics_s"}]), "row 1 lacks metrics_s"),
        (json.dumps([rows()[0] | {"hand_s": 0}]), "hand_s must be a positive number"),
        ("{not json", "not JSON"),
    ],
)
def test_bad_input_is_one_line_with_status_2(figure: ModuleType, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bench.json"
    path.write_text(content)
    result = CliRunner().invoke(figure.main, [str(path), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out.png").exists()
