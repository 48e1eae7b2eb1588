"""Landscape families that other packages register (entry-point group ``landbench.landscapes``).

The example package of examples/landscape_plugin is installed as pip leaves it (its module and a
dist-info directory whose entry points are read from the example's own pyproject.toml) into a folder
put on sys.path; nothing in landbench is touched.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import landbench
from landbench.cli import main
from landbench.errors import SpecError
from landbench.landscapes import BUILTIN, ENTRY_POINT_GROUP, FAMILIES, Landscape, family, registered
from landbench.landscapes.classical import Quadratic
from landbench.outcomes import summarize
from landbench.ranking import group_of, rank
from landbench.report import data
from landbench.runner import run_suite
from landbench.store import ResultStore
from landbench.suite import parse_suite

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "landscape_plugin"
MODULE = "landbench_double_well"


def _install(root: Path, name: str, entry_points: dict[str, str], module: bool = True) -> None:
    """A distribution ``name`` installed into ``root``: the example's module and a dist-info directory."""
    if module:
        shutil.copy(EXAMPLE / f"{MODULE}.py", root / f"{MODULE}.py")
    # named as pip names it: a '-' in the name would end it there (importlib.metadata would take the
    # distribution 'landbench-double-well-1.0' for a second 'landbench' and keep only the first of the two)
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


def _forget_module() -> None:
    sys.modules.pop(MODULE, None)


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example package installed, with the entry points its pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    entry_points = project["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert entry_points == {"double_well": f"{MODULE}:DoubleWell"}
    _install(tmp_path, project["project"]["name"], entry_points)
    _forget_module()
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    _forget_module()


def test_the_example_is_listed_after_the_built_in_families_and_is_imported_only_when_looked_up(
    installed: Path,
) -> None:
    assert "double_well" in registered()
    assert family("saddle") is BUILTIN["saddle"] and group_of("saddle") == "saddles"
    assert MODULE not in sys.modules  # reading the registry, built-in look-ups and groups import no plug-in
    assert list(FAMILIES) == [*BUILTIN, "double_well"]
    assert MODULE in sys.modules
    result = CliRunner().invoke(main, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["families"]
    assert list(listed)[-1] == "double_well"
    assert listed["double_well"]["formula"] == "f(x) = h (x_1^2 - 1)^2 - t x_1 + c/2 |x_{2..d}|^2"
    assert [p["name"] for p in listed["double_well"]["parameters"]] == [
        "dim",
        "barrier",
        "tilt",
        "confinement",
        "init_radius",
    ]
    described = CliRunner().invoke(main, ["describe", "double_well(dim=3)", "--json"])
    assert described.exit_code == 0, described.output
    assert json.loads(described.stdout)["saddle"]["index"] == 1


def test_importing_landbench_imports_no_plug_in(installed: Path) -> None:
    """In a fresh interpreter: ``import landbench`` imports neither torch nor the plug-in, importing the
    catalogue's module does not import the plug-in, and looking the family up does."""
    script = (
        "import sys, landbench; assert 'torch' not in sys.modules and 'M' not in sys.modules; "
        "import landbench.landscapes; assert 'M' not in sys.modules; "
        "landbench.make('double_well(dim=2)'); assert 'M' in sys.modules"
    ).replace("M", MODULE)
    path = os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_example_is_built_by_make_with_the_known_points_of_its_formula(installed: Path) -> None:
    landscape = landbench.make("double_well(dim=3)", dtype="float64")
    assert landscape.spec == "double_well(dim=3)" and isinstance(landscape, Landscape)
    # the known points against a brute-force scan of f along x_1 (x_2 = x_3 = 0 is the bowl's bottom)
    u = torch.linspace(-2.0, 2.0, 400_001, dtype=torch.float64)
    line = torch.zeros(u.numel(), 3, dtype=torch.float64)
    line[:, 0] = u
    values = landscape.loss(line)
    assert landscape.f_star == pytest.approx(float(values.min()), abs=1e-9)
    assert float(landscape.minima[0].point[0]) == pytest.approx(float(u[values.argmin()]), abs=2e-5)
    left = values[u < 0]
    assert landscape.minima[1].value == pytest.approx(float(left.min()), abs=1e-9)
    middle = values[(u > landscape.minima[1].point[0]) & (u < landscape.minima[0].point[0])]
    assert landscape.saddle.value == pytest.approx(float(middle.max()), abs=1e-9)
    # each is a critical point whose Hessian (by autograd) has the stated eigenvalues and index
    for point in [*landscape.minima, landscape.saddle]:
        _, grad = landscape.loss_and_grad(point.point[None])
        assert float(grad.abs().max()) < 1e-12
        hessian = torch.autograd.functional.hessian(lambda x: landscape.loss(x[None])[0], point.point)
        eigenvalues = torch.linalg.eigvalsh(hessian)
        assert float(eigenvalues.max()) == pytest.approx(point.lambda_max, rel=1e-12)
        assert float(eigenvalues.min()) == pytest.approx(point.lambda_min, rel=1e-12)
        assert int((eigenvalues < 0).sum()) == point.index
    with pytest.raises(SpecError, match="tilt must be below 8 barrier"):
        landbench.make("double_well(dim=3, tilt=2)")


def test_the_closed_form_gradient_and_hessian_products_match_autograd(installed: Path) -> None:
    landscape = landbench.make("double_well(dim=5, barrier=0.7, tilt=0.3, confinement=2.5)", dtype="float64")
    generator = torch.Generator().manual_seed(3)
    x = 1.5 * torch.randn(64, 5, generator=generator, dtype=torch.float64)
    v = torch.randn(64, 5, generator=generator, dtype=torch.float64)
    value, grad = landscape.loss_and_grad(x)
    reference_value, reference_grad = Landscape.loss_and_grad(landscape, x)  # the base class's autograd
    torch.testing.assert_close(value, reference_value, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(landscape.hvp(x, v), Landscape.hvp(landscape, x, v), rtol=1e-13, atol=1e-13)


SUITE = """
name = "wells"
seeds = 8
steps = 300
dtype = "float64"
optimizers = ["gd(lr=0.05)", "adam(lr=0.05)"]

[[problems]]
spec = "double_well(tilt=0.25)"
dims = [3]

[[problems]]
spec = "quadratic"
dims = [3]
"""


def test_a_suite_with_the_example_runs_and_its_runs_carry_its_field_summary_and_group(
    installed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_suite(parse_suite(SUITE), out, progress=False)
    records = ResultStore(out).records()
    wells = [r for r in records if r["family"] == "double_well"]
    assert len(wells) == 16 and all(r["problem"] == "double_well(dim=3)" for r in wells)
    # every run ends in a well (+1 past the saddle, -1 before it), at that well's minimum
    landscape = landbench.make("double_well(dim=3)", dtype="float64")
    for record in wells:
        assert not record["diverged"] and record["well"] in (1, -1)
        assert record["final_loss"] < landscape.saddle.value
        # the deep well's runs get down to f*, the shallow well's stop at its minimum
        end = landscape.minima[0] if record["well"] == 1 else landscape.minima[1]
        assert record["final_loss"] == pytest.approx(end.value, abs=1e-6)
    assert {r["well"] for r in wells} == {1, -1}  # starts on a sphere about the saddle: both wells are reached
    # the family's own summary, as the CLI's table, the report and the asv metrics read it
    gd = [r for r in wells if r["optimizer"] == "gd(lr=0.05)"]
    summary = summarize(gd)
    deep = sum(r["well"] == 1 for r in gd)
    assert summary.family["well"] == {"runs": 8, "deep": deep, "shallow": 8 - deep, "neither": 0, "diverged": 0}
    assert summary.family_text["well"] == f"deep {100 * deep / 8:.0f}% shallow {100 * (8 - deep) / 8:.0f}%"
    # the ranking and the report put it in the group its class declares
    board = rank(records, bootstrap=200)
    assert {r.scenario.problem: r.group for r in board.scenarios} == {
        "double_well(dim=3)": "wells",
        "quadratic(dim=3)": "classical",
    }
    assert {g.group for g in board.groups} == {"wells", "classical"}
    grouped, _ = data.grouped_records(records)
    assert {data.by_group(s, r) for s, runs in grouped.items() for rs in runs.values() for r in rs} == {
        "wells",
        "classical",
    }
    # and the API runs it as any family
    (again,) = landbench.run("double_well(dim=3)", "gd(lr=0.05)", seeds=[gd[0]["seed"]], steps=300, dtype="float64")
    assert again["well"] == gd[0]["well"] and again["final_loss"] == pytest.approx(gd[0]["final_loss"], rel=1e-12)


def test_a_broken_or_shadowing_plug_in_is_one_line_and_leaves_the_other_families_alone(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    _install(
        broken,
        "lbbroken",
        {
            "no_module": "lbbroken_missing:Family",
            "not_a_class": f"{MODULE}:roots",
            "wrong_family": f"{MODULE}:DoubleWell",
            "quadratic": f"{MODULE}:DoubleWell",
        },
        module=False,
    )
    monkeypatch.syspath_prepend(str(broken))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        names = list(FAMILIES)
    assert names == [*BUILTIN, "double_well"]  # the broken ones are left out of the listing ...
    text = [str(w.message) for w in said]
    assert len(text) == 4 and all(w.category is UserWarning for w in said)
    assert sum("'quadratic' registered by the package 'lbbroken'" in t and "is ignored" in t for t in text) == 1
    for name in ("no_module", "not_a_class", "wrong_family"):
        assert sum(t.startswith(f"landscape family {name!r}") and t.endswith("it is left out") for t in text) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ... and said so once: reading the catalogue again is quiet
        assert list(FAMILIES) == names
        assert family("quadratic") is Quadratic is FAMILIES["quadratic"]  # a built-in name is never shadowed
    assert "no_module" not in FAMILIES and "double_well" in FAMILIES
    expected = {
        "no_module": r"landscape family 'no_module' \(entry point no_module = 'lbbroken_missing:Family' of the "
        r"package 'lbbroken'\) cannot be loaded: ModuleNotFoundError: No module named 'lbbroken_missing'",
        "not_a_class": r"'not_a_class' \(entry point .*\) is a function, not a subclass of landbench.Landscape",
        "wrong_family": r"its class declares family = 'double_well'; the class's family must be the entry point's name",
    }
    for name, message in expected.items():
        with pytest.raises(SpecError, match=message) as error:
            landbench.make(f"{name}(dim=2)")
        assert "\n" not in str(error.value)
        assert group_of(name) == "other"
        result = CliRunner().invoke(main, ["describe", f"{name}(dim=2)"])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
        assert result.stderr.startswith(f"Error: landscape family {name!r}")
    # the others work as before, the listing included
    assert landbench.make("double_well(dim=2)").f_star == pytest.approx(landbench.make("double_well(dim=2)").f_star)
    assert math.isclose(landbench.make("quadratic(dim=2)", dtype="float64").f_star, 0.0)
    result = CliRunner().invoke(main, ["list", "--json"])
    assert result.exit_code == 0 and list(json.loads(result.stdout)["families"]) == names
    with pytest.raises(SpecError, match="unknown landscape family 'duble_well' \\(did you mean 'double_well'\\?\\)"):
        landbench.make("duble_well(dim=2)")


def test_a_family_cannot_overwrite_landbench_fields_or_miscount_its_runs() -> None:
    """A family's record fields with a core field's name, or with one value too few, are one
    LandbenchError naming the family, not records that lie about their seed or noise law."""
    import torch

    from landbench.landscapes.classical import Quadratic

    class Liar(Quadratic):
        def record_fields(self, x, escape_steps, diverged):  # type: ignore[no-untyped-def]
            return {"seed": [99] * len(x)}

    class Short(Quadratic):
        def record_fields(self, x, escape_steps, diverged):  # type: ignore[no-untyped-def]
            return {"well": [1] * (len(x) - 1)}

    for cls, message in ((Liar, "'seed' would overwrite landbench's own"), (Short, "has 3 values for 4 runs")):
        landscape = cls(seed=0, device=torch.device("cpu"), dtype=torch.float32, dim=3)
        with pytest.raises(landbench.LandbenchError, match=message):
            landbench.run(landscape, "sgd(lr=0.1)", seeds=4, steps=5)


def test_a_plug_in_whose_constructor_exits_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a registered family's constructor raises, SystemExit included, `make` turns it into one
    SpecError line naming the spec: the caller's program goes on."""
    (tmp_path / "lbexit.py").write_text(
        "import sys\nfrom landbench.landscapes.classical import Quadratic\n\n"
        "class Exits(Quadratic):\n    family = 'exits'\n\n    def _build(self):\n        sys.exit(3)\n"
    )
    _install(tmp_path, "lbexit", {"exits": "lbexit:Exits"}, module=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    exits = r"^exits\(dim=3\): the registered family failed to build: SystemExit: 3$"
    with pytest.raises(landbench.SpecError, match=exits):
        landbench.make("exits(dim=3)")
    sys.modules.pop("lbexit", None)


def test_a_report_of_runs_whose_family_is_not_installed_here_is_drawn(tmp_path: Path) -> None:
    """A colleague's results of a plug-in family this environment lacks: ranked (group "other"), left
    out of the sweeps over a family's parameters, and the report is written."""
    from landbench.report import write_report

    records = [r for d in (4, 8) for r in landbench.run(f"saddle(dim={d})", "sgd(lr=0.1)", seeds=3, steps=30)]
    alien = [
        dict(r, problem=r["problem"].replace("saddle", "not_installed"), family="not_installed", key=r["key"] + "x")
        for r in records
    ]
    report = write_report(records + alien, tmp_path / "report")
    assert report.html.is_file() and "not_installed(dim=4)" in report.markdown.read_text()
