"""The claims framework: experiment files, resumable work, verdicts from findings, the report, the CLI.

Each claim's own experiment is tested in tests/test_claims_<name>.py (this file: the framework); here a small fake claim
(registered as a module and an experiment file in a temporary folder) drives the machinery, and the
shipped experiment files are checked for what every claim must state.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

import landbench.claims as claims
from landbench.claims import (
    CAVEAT,
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    TIERS,
    ClaimError,
    Finding,
    Measured,
    read_experiment,
    verdict_of,
)
from landbench.cli import main

FAKE = """
number = {number}
title = "{title}"
sentence = "A claim that the fake experiment {what}."
source = "nobody, 2026"
theory = "y = x"
stated_test = "supported when the mean of the draws is within 0.1 of 1"
[test]
draws = 3
[quick]
draws = 5
"""


def _fake_module(name: str, calls: list[str], *, fail: bool = False) -> types.ModuleType:
    module = types.ModuleType(f"landbench.claims.{name}")

    def measure(ctx: claims.ClaimContext) -> Measured:
        if fail:
            raise RuntimeError("the fake experiment broke\non two lines")

        def compute() -> list[float]:
            calls.append(ctx.tier)
            return [1.0] * ctx.params["draws"]

        draws = ctx.cached(f"draws n={ctx.params['draws']}", compute)
        mean = sum(draws) / len(draws)
        from landbench.report import mpl

        with mpl.style():
            figure = mpl.new_figure()
            ax = figure.add_subplot()
            ax.plot(range(len(draws)), draws, "o", label="measured")
            ax.legend()
            path = mpl.save(figure, ctx.figure("draws"))
        verdict = SUPPORTED if abs(mean - 1) <= 0.1 else NOT_SUPPORTED
        finding = Finding(verdict, "mean of the draws", mean, f"the mean is {mean:.3g}", (mean - 0.01, mean + 0.01))
        data = {"draws": draws, "nan": float("nan")}
        return Measured([finding], [path], ["The draws | with a bar."], data, None, "ok")

    module.measure = measure  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fake_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "fake_good.toml").write_text(FAKE.format(number=1, title="Good claim", what="supports"))
    (folder / "fake_bad.toml").write_text(FAKE.format(number=2, title="Broken claim", what="breaks"))
    calls: list[str] = []
    monkeypatch.setattr(claims, "claims_directory", lambda: folder)
    monkeypatch.setitem(sys.modules, "landbench.claims.fake_good", _fake_module("fake_good", calls))
    monkeypatch.setitem(sys.modules, "landbench.claims.fake_bad", _fake_module("fake_bad", calls, fail=True))
    return calls


def test_verdict_of_combines_parts() -> None:
    def f(v: str) -> Finding:
        return Finding(v, "s", 0.0, "w")

    assert verdict_of([f(SUPPORTED), f(SUPPORTED)]) == SUPPORTED
    assert verdict_of([f(SUPPORTED), f(NOT_SUPPORTED)]) == CAVEAT
    assert verdict_of([f(SUPPORTED), f(CAVEAT)]) == CAVEAT
    assert verdict_of([f(NOT_SUPPORTED), f(NOT_SUPPORTED)]) == NOT_SUPPORTED
    assert verdict_of([f(SUPPORTED), f(INCONCLUSIVE)]) == INCONCLUSIVE
    assert verdict_of([]) == INCONCLUSIVE
    with pytest.raises(ClaimError, match="not one of"):
        f("probably")


def test_the_summary_shows_the_part_that_decided_the_verdict() -> None:
    """The claims' summary table shows the statistic of the part that decided the verdict (it had
    always shown the first part's: the escape claim's caveat came from its third)."""
    from landbench.claims.base import deciding
    from landbench.claims.report import _table

    def f(verdict: str, name: str) -> dict:
        return Finding(verdict, name, 1.0, "w").as_dict()

    parts = [f(SUPPORTED, "first"), f(SUPPORTED, "second"), f(NOT_SUPPORTED, "third")]
    assert deciding(parts, verdict_of([Finding(p["verdict"], "s", 0.0, "w") for p in parts]))["statistic"] == "third"
    assert deciding([f(SUPPORTED, "a"), f(INCONCLUSIVE, "b")], INCONCLUSIVE)["statistic"] == "b"
    assert deciding([f(NOT_SUPPORTED, "a"), f(SUPPORTED, "b")], SUPPORTED)["statistic"] == "b"  # a claim's own verdict
    assert deciding([f(SUPPORTED, "a")], NOT_SUPPORTED)["statistic"] == "a" and deciding([], SUPPORTED) is None
    entry = {"number": 3, "title": "T", "verdict": CAVEAT, "findings": parts, "tier": "test", "seconds": 1.0}
    row = _table([entry]).splitlines()[-1]
    assert "third" in row and "first" not in row


def test_report_keeps_the_claims_that_ran_when_one_fails(tmp_path: Path, fake_claims: list[str]) -> None:
    outcomes, pages = claims.run_claims([], "test", tmp_path / "out", log=lambda line: None)
    assert [type(o).__name__ for o in outcomes] == ["ClaimOutcome", "Failed"]
    assert outcomes[0].verdict == SUPPORTED
    assert "the fake experiment broke on two lines" in outcomes[1].error
    markdown = pages.markdown.read_text()
    assert "**supported**" in markdown and "**failed**" in markdown
    assert "![The draws \\| with a bar.](fake_good/draws.png)" not in markdown  # alt text is not a table cell
    assert "](fake_good/draws.png)" in markdown and (tmp_path / "out" / "fake_good" / "draws.png").exists()
    assert f"landbench claims fake_good --tier test --out {tmp_path / 'out'}" in markdown
    html = pages.html.read_text()
    assert "<img" in html and "fake_good/draws.png" in html
    document = json.loads(pages.json.read_text(), parse_constant=_refuse)  # strict JSON: NaN written as null
    assert document["claims"][0]["data"]["nan"] is None
    assert document["claims"][0]["findings"][0]["interval"] == [0.99, 1.01]
    assert document["claims"][1]["verdict"] is None


def _refuse(constant: str) -> None:
    raise AssertionError(f"{constant} in strict JSON")


def test_a_run_of_some_claims_keeps_the_others_in_the_report(tmp_path: Path, fake_claims: list[str]) -> None:
    out = tmp_path / "out"
    claims.run_claims([], "test", out, log=lambda line: None)
    claims.run_claims(["fake_good"], "quick", out, log=lambda line: None)
    document = json.loads((out / "claims.json").read_text())
    assert [(c["name"], c["tier"]) for c in document["claims"]] == [("fake_good", "quick"), ("fake_bad", "test")]
    markdown = (out / "claims.md").read_text()
    assert "## 1. Good claim" in markdown and "## 2. Broken claim" in markdown
    assert "the quick sizes (--quick)" in markdown and "the test sizes" in markdown
    (out / "claims.json").write_text("{not json")  # an unreadable earlier report is replaced, not an error
    _, pages = claims.run_claims(["fake_good"], "test", out, log=lambda line: None)
    assert [e["name"] for e in pages.entries] == ["fake_good"]


def test_an_unwritable_folder_is_refused_before_anything_runs(tmp_path: Path, fake_claims: list[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ClaimError, match="cannot write the claims' folder"):
        claims.run_claims(["fake_good"], "test", blocker / "out", log=lambda line: None)
    assert fake_claims == []


def test_work_is_stored_and_reused(tmp_path: Path, fake_claims: list[str]) -> None:
    out = tmp_path / "out"
    claims.run_claim("fake_good", "test", out, log=lambda line: None)
    claims.run_claim("fake_good", "test", out, log=lambda line: None)
    assert fake_claims == ["test"]  # the second run read the cache
    claims.run_claim("fake_good", "quick", out, log=lambda line: None)
    assert fake_claims == ["test", "quick"]  # other sizes, another key
    # a line cut by a kill is computed again, not an error
    cache = out / "fake_good" / "cache.jsonl"
    cache.write_text(cache.read_text().replace('"key": "draws n=3', '"key": "cut draws n=3')[:-20])
    assert claims.run_claim("fake_good", "test", out, log=lambda line: None).verdict == SUPPORTED
    assert fake_claims == ["test", "quick", "test"]
    lines = cache.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["key"].startswith("draws n=3 [landbench ")  # whole, on its own line
    claims.run_claim("fake_good", "test", out, log=lambda line: None)
    assert fake_claims == ["test", "quick", "test"]


def test_cli_runs_lists_and_refuses_bad_input(tmp_path: Path, fake_claims: list[str]) -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["claims", "--list"])
    assert listed.exit_code == 0 and "1. fake_good" in listed.output and "2. fake_bad" in listed.output
    ran = runner.invoke(main, ["claims", "fake_good", "--tier", "test", "--out", str(tmp_path / "o")])
    assert ran.exit_code == 0, ran.output
    assert "Good claim  supported" in ran.output
    broken = runner.invoke(main, ["claims", "--tier", "test", "--out", str(tmp_path / "o")])
    assert broken.exit_code == 1 and "FAILED: RuntimeError" in broken.output
    for args, message in [
        (["claims", "nope"], "no claim named 'nope'; the claims are: fake_good, fake_bad"),
        (["claims", "--quick", "--tier", "test"], "--quick and --tier test disagree"),
        (["claims", "--device", "tpu"], "unknown device 'tpu'"),
        (["claims", "fake_good", "--tier", "full"], "fake_good.toml has no [full] table"),
    ]:
        result = runner.invoke(main, [*args, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert not (tmp_path / "x").exists()  # refused before anything ran


def test_experiment_file_must_state_the_claim(tmp_path: Path) -> None:
    path = tmp_path / "thin.toml"
    path.write_text('number = 1\ntitle = "t"\n[quick]\n')
    with pytest.raises(ClaimError, match="missing sentence, source, theory, stated_test"):
        read_experiment(path)


def test_shipped_claims_state_everything() -> None:
    shipped = claims.experiments()
    for experiment in shipped.values():
        assert set(experiment.tiers) == set(TIERS), experiment.name
        assert len(experiment.sentence) > 20 and len(experiment.stated_test) > 20, experiment.name
        module = __import__(f"landbench.claims.{experiment.name}", fromlist=["measure"])
        assert callable(module.measure)
    assert sorted(e.number for e in shipped.values()) == list(range(1, len(shipped) + 1))


@pytest.mark.slow
def test_quick_runs_every_claim_from_the_console_script(tmp_path: Path) -> None:
    """The issue's done-when: `landbench claims --quick` writes the report with every claim's verdict
    (about 3 minutes on 2 quiet cores)."""
    import subprocess

    out = tmp_path / "claims"
    done = subprocess.run(
        ["landbench", "claims", "--quick", "--out", str(out), "--no-progress"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads((out / "claims.json").read_text())
    assert [c["number"] for c in document["claims"]] == list(range(1, len(claims.experiments()) + 1))
    for claim in document["claims"]:
        assert claim["verdict"] in claims.VERDICTS and claim["tier"] == "quick", claim["name"]
        assert claim["findings"] and all((out / f).is_file() for f in claim["figures"]), claim["name"]
    assert (out / "claims.html").read_text().count("<img") >= len(document["claims"])
