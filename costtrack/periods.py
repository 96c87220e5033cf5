"""Time periods from the command line: `7d`, `24h`, `2026-11`, ISO dates, and the month they fall in."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from .errors import ConfigError

__all__ = ["as_utc", "month_range", "parse_instant", "parse_range", "parse_since"]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


#: The instants a command takes: a day's, a month's or a week's bounds around them stay representable.
_EARLIEST = datetime(1, 1, 8, tzinfo=timezone.utc)
_LATEST = datetime(9998, 12, 31, tzinfo=timezone.utc)


def as_utc(value: datetime) -> datetime:
    """`value` with a time zone: a naive datetime (an injected clock's) is UTC, as everywhere in costtrack."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def parse_instant(text: str, flag: str | None = None) -> datetime:
    """An ISO date or datetime; naive values are UTC. Years 0001 to 9998 (a period around it must fit). `flag`: the
    option it was given to, named in the error."""
    named = f"{flag} " if flag else ""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except ValueError:
        raise ConfigError(f"{named}{text!r} is not a date: use an ISO date or datetime such as 2026-11-01 or "
                          "2026-11-01T12:00") from None
    except OverflowError:
        value = _EARLIEST - timedelta(days=1)  # an offset took it before year 1
    if not _EARLIEST <= value <= _LATEST:
        raise ConfigError(f"{named}{text!r} is out of range: give a date from 0001-01-08 to 9998-12-31")
    return value


def parse_since(text: str, now: datetime) -> datetime:
    """`7d`, `24h`, `30m`, `2w` before `now`, or an ISO date/datetime."""
    match = _RELATIVE.match(text)
    if match:
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        except OverflowError:
            raise ConfigError(f"--since {text!r} reaches before year 1: give a shorter duration or an ISO date") from None
    try:
        return parse_instant(text)
    except ConfigError as exc:
        if "out of range" in str(exc):
            raise ConfigError(f"--since {exc}") from None
        raise ConfigError(f"--since {text!r} is not understood: use a duration like 7d, 24h, 30m, or an ISO date like 2026-11-01") from None


def month_range(text: str) -> tuple[datetime, datetime]:
    """`2026-11` → [2026-11-01, 2026-12-01) in UTC."""
    match = re.fullmatch(r"\s*(\d{4})-(\d{1,2})\s*", text)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ConfigError(f"--month {text!r} is not a month: use YYYY-MM, e.g. 2026-11")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= year <= 9998:
        raise ConfigError(f"--month {text!r} is out of range: give a year from 0001 to 9998")
    start = datetime(year, month, 1, tzinfo=timezone.utc)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def parse_range(text: str, flag: str | None = None) -> tuple[datetime, datetime]:
    """`A..B` with ISO dates or datetimes; a bare date B means the whole of that day. `flag`: see parse_instant."""
    named = f"{flag} " if flag else ""
    if ".." not in text:
        raise ConfigError(f"{named}{text!r} is not a period: use START..END, e.g. 2026-11-01..2026-11-07")
    left, right = text.split("..", 1)
    start = parse_instant(left, flag)
    end = parse_instant(right, flag)
    if len(right.strip()) == 10:  # a date: include that whole day
        end += timedelta(days=1)
    if end <= start:
        raise ConfigError(f"{named}period {text!r} ends before it starts")
    return start, end

