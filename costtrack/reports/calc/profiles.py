"""The hardware profiles: those shipped in costtrack/data/hardware.toml, or a TOML file of one's own."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .inputs import Hardware

__all__ = ["HardwareCatalog", "load_hardware"]

_HW_KEYS = {"label", "hardware_cost", "power_watts", "lifespan_years", "maintenance_per_month", "rent_per_month",
            "rent_per_hour", "electricity_per_kwh"}  # fmt: skip


@dataclass(frozen=True)
class HardwareCatalog:
    """The hardware profiles, by name, and the default electricity price."""

    profiles: dict[str, Hardware]
    electricity_per_kwh: float
    source: str

    def get(self, name: str) -> Hardware | None:
        return self.profiles.get(name.strip().lower())


def _read_toml(text: str, where: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ConfigError(f"{where}: reading TOML on Python 3.10 needs the 'tomli' package: pip install tomli") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML ({' '.join(str(exc).split())}): fix the syntax") from None


def load_hardware(path: str | Path | None = None) -> HardwareCatalog:
    """The hardware profiles: the ones shipped in costtrack/data/hardware.toml, or those in `path`."""
    if path is None:
        where = "costtrack/data/hardware.toml"
        # Beside the package's modules (importlib.resources trips over some editable installs).
        text = (Path(__file__).resolve().parent.parent.parent / "data" / "hardware.toml").read_text(encoding="utf-8")
    else:
        where = f"hardware file {path}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where} cannot be read ({exc.strerror or exc}): check the path") from None
    data = _read_toml(text, where)
    unknown = sorted(set(data) - {"defaults", "hardware"})
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {unknown[0]!r}: use [defaults] and [hardware.NAME] tables")
    defaults = data.get("defaults", {})
    electricity = defaults.get("electricity_per_kwh", 0.12)
    if isinstance(electricity, bool) or not isinstance(electricity, (int, float)) or electricity < 0:
        raise ConfigError(f"{where}: [defaults] electricity_per_kwh must be a number of USD, 0 or more")
    profiles: dict[str, Hardware] = {}
    for name, entry in data.get("hardware", {}).items():
        here = f"{where}: [hardware.{name}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{here} must be a table")
        bad = sorted(set(entry) - _HW_KEYS)
        if bad:
            raise ConfigError(f"{here} has unknown key {bad[0]!r}: allowed keys are {', '.join(sorted(_HW_KEYS))}")
        values: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "label":
                values[key] = str(value)
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{here} {key} must be a number, got {value!r}")
            else:
                values[key] = float(value)
        values.setdefault("electricity_per_kwh", float(electricity))
        profiles[name.lower()] = Hardware(name=name.lower(), source=where, **values)
    return HardwareCatalog(profiles=profiles, electricity_per_kwh=float(electricity), source=where)
