"""The public API: `__all__` lists exactly the public names, each documented."""

from __future__ import annotations

import types

import costtrack


def test_all_matches_the_public_names():
    public = {name for name, value in vars(costtrack).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"}  # fmt: skip
    assert set(costtrack.__all__) == public


def test_every_public_name_has_a_docstring():
    missing = [name for name in costtrack.__all__ if not (getattr(costtrack, name).__doc__ or "").strip()]
    assert missing == []
