"""``landbench bench``: the loops it compares compute the same runs, and the command prints its table.

No wall time is asserted: the numbers are measurements (see BENCHMARKS in the README)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import landbench
from landbench.bench import OPTIMIZERS, hand_loop, measure, naive_loop, table
from landbench.cli import main


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_hand_written_loop_makes_the_runs_landbench_makes(optimizer: str) -> None:
    """The floor landbench is compared with must do the same work: the same final losses."""
    landscape = landbench.make("saddle(dim=50)", dtype="float64")
    x = hand_loop(landscape, optimizer, runs=6, steps=40)
    records = landbench.run(landscape, OPTIMIZERS[optimizer], seeds=6, steps=40, curvature=False)
    torch.testing.assert_close(
        landscape.loss(x), torch.tensor([r["final_loss"] for r in records], dtype=torch.float64), rtol=1e-9, atol=1e-12
    )


def test_the_naive_loop_runs_every_run_of_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    landscape = landbench.make("saddle(dim=5)")
    calls = {"backward": 0}
    real = torch.Tensor.backward

    def counted(self, *args, **kwargs):  # noqa: ANN001, ANN202
        calls["backward"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", counted)
    finals = naive_loop(landscape, "adam(lr=0.001)", seeds=range(3), steps=7)
    assert calls["backward"] == 21
    records = landbench.run(landscape, "adam(lr=0.001)", seeds=3, steps=7, curvature=False)
    torch.testing.assert_close(
        torch.tensor(finals), torch.tensor([r["final_loss"] for r in records]), rtol=1e-5, atol=1e-7
    )


def test_measure_and_the_command_give_every_size_and_optimizer() -> None:
    rows = measure(sizes=[(4, 10, 5)], repeats=1, naive_budget=(2, 3))
    assert [(r.runs, r.dim, r.steps, r.optimizer) for r in rows] == [(4, 10, 5, "sgd"), (4, 10, 5, "adam")]
    assert all(r.hand_s > 0 and r.naive_s > 0 and r.copy_bandwidth > 0 for r in rows)
    text = table(rows)
    assert "4 x 10, 5" in text and "copy bw share" in text
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0 and "--quick" in result.output
    bad = CliRunner().invoke(main, ["bench", "--device", "tpu"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert json.dumps([r.as_dict() for r in rows], allow_nan=False)
