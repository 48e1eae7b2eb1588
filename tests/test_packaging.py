"""The wheel ships every subpackage and the suite catalogue."""

from __future__ import annotations

import sys
from pathlib import Path

from landbench.suite import available_suites

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "landbench").rglob("__init__.py")}
    assert on_disk | {"landbench.problems"} == listed


def test_the_catalogue_is_found_at_run_time() -> None:
    assert set(available_suites()) == {p.stem for p in (ROOT / "problems").glob("*.toml")}


def test_every_image_the_readme_shows_exists_and_is_a_png() -> None:
    import re

    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert images, "the README shows figures"
    for image in images:
        path = ROOT / image
        assert path.is_file(), f"README shows {image}, which does not exist"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{image} is not a PNG"
        assert path.stat().st_size < 200_000, f"{image} is over 200 kB"


def test_the_claims_experiments_are_found_and_shipped() -> None:
    from landbench.claims import experiments

    assert set(experiments()) == {p.stem for p in (ROOT / "problems" / "claims").glob("*.toml")}
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "claims/*.toml" in package_data["landbench.problems"]
