"""Errors costtrack raises to its callers; inside a wrapped call only `BudgetExceeded` (a hard limit), by design."""

from __future__ import annotations

__all__ = ["ConfigError", "CosttrackError", "DatabaseURLError", "PricesFileError"]


class CosttrackError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ConfigError(CosttrackError, ValueError):
    """A setting is missing or malformed."""


class PricesFileError(ConfigError):
    """The price overrides file cannot be read or is malformed."""


class DatabaseURLError(ConfigError):
    """The database URL is malformed, or its driver is not installed, or it cannot be reached."""
