"""The wheel ships every package: pyproject's explicit package list names each directory under costtrack/."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "costtrack").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found, "no packages found under costtrack/"
    assert found <= listed, f"missing from [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
