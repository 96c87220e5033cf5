"""Packaging: the wheel ships every package (pyproject lists each directory under costtrack/), and `python -m costtrack` runs the CLI."""

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


def test_python_dash_m_costtrack_runs_the_cli(tmp_path) -> None:
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "costtrack", "prices", "cost", "gpt-4o-mini", "--input-tokens",
                         "1000000", "--output-tokens", "0", "--json"], capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert '"cost_usd": 0.15' in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "costtrack", "stats", "--since", "7x"], capture_output=True, text=True,
                         cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("costtrack: error: --since '7x'") and "Traceback" not in bad.stderr
