"""``landbench plot``: trajectories are the benchmark's own iterates, the slice is the one named,
constrained families stay on their sphere, and bad input fails with a clear message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import landbench
from landbench.cli import main
from landbench.errors import LandbenchError, SpecError
from landbench.report.landscape import plot_landscape
from landbench.report.trajectories import choose_plane, grid_losses, record

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_command_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "rosenbrock.png"
    args = ["plot", "rosenbrock(dim=2)", "--optimizer", "sgd(lr=0.0002)", "--optimizer", "adam(lr=0.01)"]
    result = CliRunner().invoke(main, [*args, "--steps", "30", "--seeds", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert raw[:8] == PNG and int.from_bytes(raw[16:20], "big") > 300 and int.from_bytes(raw[20:24], "big") > 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plot", "sadle(dim=2)", "--optimizer", "sgd(lr=0.1)"], "unknown"),
        (["plot", "saddle(dim=2)", "--optimizer", "sgdd(lr=0.1)"], "valid names"),
        (["plot", "saddle(dim=1)", "--optimizer", "sgd(lr=0.1)"], "use dim >= 2"),
        (["plot", "saddle(dim=2)", "--optimizer", "sgd(lr=0.1)", "--out", "x.pdf"], ".png"),
        (["plot", "saddle(dim=2)"], "--optimizer"),
    ],
)
def test_plot_command_refuses_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, args if "--out" in args else [*args, "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_trajectories_end_where_the_benchmark_runs_end(noise: float) -> None:
    problem, optimizer = "saddle(dim=5, index=2, init_radius=0.01)", "sgd(lr=0.05, momentum=0.9)"
    runs = record(landbench.make(problem, dtype="float64"), optimizer, [0, 3], steps=40, noise=noise)
    records = landbench.run(problem, optimizer, seeds=[0, 3], steps=40, noise=noise, dtype="float64", curvature=False)
    assert runs.losses[-1].tolist() == pytest.approx([r["final_loss"] for r in records], rel=1e-12, abs=1e-15)
    assert runs.points.shape == (41, 2, 5) and runs.diverged == [None, None]


@pytest.mark.parametrize(("model", "batch"), [("student_t(nu=3)", None), ("gaussian", 4), ("frozen", 8)])
def test_trajectories_follow_the_runs_noise_law_and_minibatches(model: str, batch: int | None) -> None:
    problem, optimizer = "least_squares(dim=3, samples=16)", "sam(lr=0.05, rho=0.05)"
    runs = record(landbench.make(problem, dtype="float64"), optimizer, [0, 3], 30, 0.01, model, batch)
    records = landbench.run(
        problem, optimizer, seeds=[0, 3], steps=30, noise=0.01, noise_model=model, batch_size=batch, dtype="float64"
    )
    assert runs.losses[-1].tolist() == pytest.approx([r["final_loss"] for r in records], rel=1e-12, abs=1e-15)


def test_spin_glass_iterates_stay_on_the_sphere_and_the_slice_is_drawn_on_it() -> None:
    landscape = landbench.make("pspin(dim=12, p=3)", dtype="float64")
    runs = record(landscape, "sgd(lr=1.2)", [0, 1], steps=15)
    assert (runs.points.square().sum(-1) - 12).abs().max() < 1e-9
    plane = choose_plane(landscape, [runs])
    a, b = torch.meshgrid(
        torch.linspace(-1, 1, 3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), indexing="xy"
    )
    on_sphere = plane.points(a, b)
    on_sphere = on_sphere * (12**0.5 / on_sphere.norm(dim=1, keepdim=True))
    assert grid_losses(landscape, plane, a, b).reshape(-1).tolist() == pytest.approx(landscape.loss(on_sphere).tolist())


def test_a_saddle_is_sliced_along_its_unstable_direction() -> None:
    landscape = landbench.make("saddle(dim=6)", dtype="float64")
    runs = record(landscape, "adam(lr=0.05)", [0, 1, 2], steps=20)
    plane = choose_plane(landscape, [runs])
    assert plane.centre.tolist() == [0.0] * 6  # the saddle
    assert plane.directions[0].tolist() == pytest.approx([1.0, 0, 0, 0, 0, 0])  # e_1 is the unstable direction
    assert plane.directions @ plane.directions.T == pytest.approx(torch.eye(2, dtype=torch.float64))
    assert "slice through the saddle" in plane.description


def test_closure_optimizers_and_divergence_are_handled() -> None:
    landscape = landbench.make("quadratic(dim=2, condition=10.0)", dtype="float64")
    lbfgs = record(landscape, "lbfgs(lr=0.5)", [0], steps=5)
    assert float(lbfgs.losses[-1, 0]) < 1e-6 * float(lbfgs.losses[0, 0])
    blown = record(landscape, "sgd(lr=1.0)", [0], steps=400)  # 1 - lr * 10 = -9 per step: overflows
    (step,) = blown.diverged
    assert step is not None and torch.isnan(blown.points[step:]).all() and torch.isfinite(blown.points[:step]).all()


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(LandbenchError, match=r"pip install 'landbench\[plot\]'"):
        plot_landscape("saddle(dim=2)", ["sgd(lr=0.1)"], steps=2)
    args = ["plot", "saddle(dim=2)", "--optimizer", "sgd(lr=0.1)", "--out", str(tmp_path / "p.png")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "pip install 'landbench[plot]'" in result.output


def test_too_many_iterates_are_refused() -> None:
    with pytest.raises(SpecError, match="fewer --steps"):
        record(landbench.make("quadratic(dim=100000)"), "sgd(lr=0.1)", [0, 1], steps=1000)
