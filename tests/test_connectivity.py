"""Mode connectivity against known barriers (DESIGN.md; Garipov et al. 2018)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import landbench
from landbench.cli import main
from landbench.errors import SpecError
from landbench.landscapes import Landscape
from landbench.mode_connectivity import bezier, connectivity


class RingWell(Landscape):
    """``f(x) = (|x|^2 - 1)^2``: minima on the unit sphere, a maximum of 1 at the origin."""

    family = "ring_well_for_tests"

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return (x.square().sum(1) - 1.0) ** 2

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.dim, generator=generator, dtype=torch.float64)


def _antipodes(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.zeros(dim, dtype=torch.float64)
    a[0] = 1.0
    return a, -a


@pytest.mark.parametrize("dim", [2, 5])
def test_antipodal_minima_of_the_ring_well_have_the_design_barriers(dim: int) -> None:
    """DESIGN.md: linear barrier 1 (the segment crosses the origin), curve barrier ~0 along the ring.
    A quadratic Bezier cannot follow the ring exactly; its best mean-loss fit stays below 0.06."""
    result = connectivity(RingWell(dim=dim, dtype=torch.float64), *_antipodes(dim))
    assert result.linear.barrier == pytest.approx(1.0, abs=1e-12)
    assert result.linear.peak_t == pytest.approx(0.5)
    assert 0 <= result.bezier.barrier < 0.06
    # The bend left the segment: at t = 1/2 the curve is near the unit sphere, not at the origin.
    middle = bezier(result.a, result.bend, result.b, torch.tensor([0.5], dtype=torch.float64))
    assert float(middle.norm()) == pytest.approx(1.0, abs=0.15)


def test_the_saddles_ring_of_minima_is_connected_by_a_low_curve() -> None:
    """saddle(index=2): minima on the circle |x|^2 = gamma/quartic; the segment between antipodes
    crosses the saddle at 0, so its barrier is exactly gamma^2/(4 quartic)."""
    landscape = landbench.make("saddle(dim=2, index=2, gamma=2.0, quartic=0.5)", dtype="float64")
    a = torch.tensor([2.0, 0.0], dtype=torch.float64)  # sqrt(gamma/quartic) = 2
    result = connectivity(landscape, a, -a)
    assert result.linear.barrier == pytest.approx(2.0**2 / (4 * 0.5), abs=1e-12)
    assert result.bezier.barrier < 0.1 * result.linear.barrier


def test_a_convex_landscape_has_no_barrier() -> None:
    landscape = landbench.make("quadratic(dim=4, condition=10.0)", dtype="float64")
    result = connectivity(landscape, torch.ones(4), -torch.ones(4), steps=50)
    assert result.linear.barrier == pytest.approx(0.0, abs=1e-12)  # the ends are the highest points


def test_the_report_is_json_ready_and_reproducible() -> None:
    landscape = RingWell(dim=3, dtype=torch.float64)
    first = connectivity(landscape, *_antipodes(3), points=11, steps=100).as_dict()
    second = connectivity(landscape, *_antipodes(3), points=11, steps=100).as_dict()
    assert json.loads(json.dumps(first)) == first == second
    assert len(first["linear"]["t"]) == 11 and first["distance"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"a": [1.0, 0.0]}, "has 2 coordinates, the landscape has dim=3"),
        ({"points": 2}, "points must be an integer >= 3"),
    ],
)
def test_bad_connectivity_input(kwargs: dict, message: str) -> None:
    a, b = _antipodes(3)
    with pytest.raises(SpecError, match=message):
        connectivity(RingWell(dim=3, dtype=torch.float64), kwargs.pop("a", a), b, **kwargs)


def test_connect_command(tmp_path) -> None:
    text = CliRunner().invoke(main, ["connect", "rosenbrock(dim=4)", "--steps", "100"])
    assert text.exit_code == 0 and "linear  barrier" in text.output and "bezier  barrier" in text.output
    data = json.loads(
        CliRunner()
        .invoke(main, ["connect", "saddle(dim=2, index=2)", "--a", "[1, 0]", "--b", "[-1, 0]", "--json"])
        .output
    )
    assert data["linear"]["barrier"] == pytest.approx(0.25)
    refused = CliRunner().invoke(main, ["connect", "saddle(dim=3)"])
    assert refused.exit_code != 0 and "known minima" in refused.output


def test_no_path_beats_the_saddle_between_two_basins() -> None:
    """basins: every path between the two minima crosses the saddle's hyperplane, where f is at least
    the saddle value, so both barriers are at least the documented one; the fitted curve, which can
    pass through the saddle, attains it (the maximum is refined between samples, not only sampled)."""
    landscape = landbench.make("basins(dim=2)", dtype="float64")
    wide, narrow = landscape.basins[0], landscape.basins[1]
    barrier = wide.right_barrier  # saddle value minus the higher (wide) minimum's value
    result = connectivity(landscape, wide.minimum.point, narrow.minimum.point)
    assert result.linear.barrier >= barrier - 1e-12 and result.bezier.barrier >= barrier - 1e-12
    assert result.bezier.barrier == pytest.approx(barrier, abs=1e-6)


def test_on_the_sphere_paths_are_retracted_and_antipodes_are_refused() -> None:
    landscape = landbench.make("pspin(dim=30)", dtype="float64")
    a, b = landscape.sample_start([0, 1])
    result = connectivity(landscape, a, b, steps=100)
    assert 0 <= result.bezier.barrier <= result.linear.barrier + 1e-9
    assert all(abs(value) < 3 for value in result.linear.loss)  # energies per spin, not off-sphere values
    with pytest.raises(SpecError, match="antipodal"):
        connectivity(landscape, a, -a)
