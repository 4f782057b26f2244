"""The wheel holds every package: pyproject's explicit package list matches the source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("regionsearch", "api", "indexer")
             for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    found.add("regionsearch.configs")  # configs/, mapped by tool.setuptools.package-dir
    assert (ROOT / "configs" / "__init__.py").is_file()
    assert sorted(found - listed) == [], "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert sorted(listed - found) == [], "these listed packages do not exist"
