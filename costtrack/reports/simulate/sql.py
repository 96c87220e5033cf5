"""Portable SQL: timestamps, UTC days and tags read the same on SQLite and Postgres."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, Float, Text, and_, case, cast, func, literal, or_, type_coerce
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.sql import ColumnElement

from ...errors import ConfigError
from ...store.schema import records
from ...usage import (
    BATCH_SOURCE_ENDINGS,
    BATCH_TAG,
    LEGACY_BATCH_ID_PREFIXES,
    LEGACY_BATCH_ID_TAG,
    LEGACY_BATCH_TAG,
    LEGACY_TIER_TAG,
    MAX_EXTRA_COUNT,
    TIER_TAG,
)


def epoch_of(dialect: str, column: Any) -> ColumnElement[float]:
    """Seconds since 1970 of a timestamp column, as a float, on SQLite and Postgres."""
    if dialect == "sqlite":
        # Stored as UTC text 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds, plus the fraction as written. julianday()
        # keeps only milliseconds, so a gap just over a cache TTL could read as within it (and not on Postgres).
        seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), Float)
        return seconds + cast(func.substr(column, 20), Float)
    return func.date_part("epoch", column)


def day_of(dialect: str, column: Any) -> ColumnElement[Any]:
    """The UTC day of a timestamp column: 'YYYY-MM-DD' on SQLite, the UTC midnight (timestamptz) on Postgres.

    `as_day` turns either into 'YYYY-MM-DD' (Postgres returns instants in the session's time zone).
    """
    if dialect == "sqlite":
        return func.substr(column, 1, 10)  # stored as UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff'
    return func.date_trunc("day", column, "UTC")


def as_day(value: Any) -> str:
    """A `day_of` value as 'YYYY-MM-DD' (UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date().isoformat() if value.tzinfo else value.date().isoformat()
    return str(value)


_TAG_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_tag_key(key: str) -> str:
    if not _TAG_KEY.match(key):
        raise ConfigError(f"tag name {key!r} is not supported: use letters, digits, '_', '-' or '.'")
    return key


def tag_text(dialect: str, key: str) -> ColumnElement[str]:
    """A tag's value as text ('true'/'false' for booleans, NULL when absent), the same on both backends."""
    _check_tag_key(key)
    if dialect == "sqlite":
        path = f'$."{key}"'
        kind = func.json_type(records.c.tags, path)
        return case(
            (kind == "true", literal("true")),
            (kind == "false", literal("false")),
            # A number as written (`->`): json_extract makes it a float, printed to 15 digits (1731241234.12346).
            (kind.in_(("integer", "real")), type_coerce(records.c.tags.op("->")(literal(path)), Text)),
            else_=cast(func.json_extract(records.c.tags, path), Text),
        )
    return records.c.tags.op("->>")(literal(key))


def tag_number(dialect: str, key: str) -> ColumnElement[float]:
    """A numeric tag's value as a float; NULL when absent or not a number."""
    _check_tag_key(key)
    tags = records.c.tags
    if dialect == "sqlite":
        path = f'$."{key}"'
        return case((func.json_type(tags, path).in_(("integer", "real")), func.json_extract(tags, path) * 1.0))
    value = tags.op("->")(literal(key))
    return case((func.jsonb_typeof(value) == "number", cast(tags.op("->>")(literal(key)), Float)))


def tag_count(dialect: str, key: str) -> ColumnElement[int]:
    """A count kept in a tag (usage.EXTRA_TAGS): its value when a positive whole JSON number, else NULL, as
    usage.extras_from_tags reads it back for `costtrack reprice` (2.5, "3", true, -1 or 10**20 count as none)."""
    _check_tag_key(key)
    tags = records.c.tags
    if dialect == "sqlite":
        path = f'$."{key}"'
        value = func.json_extract(tags, path)
        return case((and_(func.json_type(tags, path) == "integer", value > 0, value < MAX_EXTRA_COUNT), value))
    text = tags.op("->>")(literal(key))
    # jsonb keeps 2.0 as written: a whole number is digits only (18 at most: a bigint, as SQLite's integers)
    whole = and_(func.jsonb_typeof(tags.op("->")(literal(key))) == "number", text.op("~")("^[0-9]{1,18}$"))
    return case((whole, cast(text, BigInteger)))


def has_any_tag(dialect: str, keys: Sequence[str]) -> ColumnElement[bool]:
    """Rows whose tags may name one of `keys` (SQLite: a text search for their common prefix, cheap and never missing
    one; Postgres: jsonb's `?|`, which reads no value)."""
    for key in keys:
        _check_tag_key(key)
    if dialect == "sqlite":
        prefix = keys[0]
        for key in keys:
            while not key.startswith(prefix):
                prefix = prefix[:-1]
        return type_coerce(records.c.tags, Text).like(f'%"{prefix}%')
    return records.c.tags.op("?|")(array(list(keys), type_=Text))


def tag_filter(dialect: str, key: str, value: str) -> ColumnElement[bool]:
    """Records whose tag `key` equals `value` (compared as text: run=1 matches 1 and "1")."""
    return tag_text(dialect, key) == value


def tag_is_true(dialect: str, key: str) -> ColumnElement[bool]:
    """Records whose tag `key` is JSON true (not the text "true"), as Python's `tags.get(key) is True`."""
    _check_tag_key(key)
    if dialect == "sqlite":
        return func.json_type(records.c.tags, f'$."{key}"') == "true"
    value = records.c.tags.op("->")(literal(key))
    return and_(func.jsonb_typeof(value) == "boolean", records.c.tags.op("->>")(literal(key)) == "true")


def batched(dialect: str) -> ColumnElement[bool]:
    """Records of calls sent through a Batch API, read as usage.batched reads one record."""
    c = records.c
    batch_id = type_coerce(tag_text(dialect, LEGACY_BATCH_ID_TAG), Text)
    # substr, not LIKE: SQLite's LIKE ignores case (BATCH_7 matched), Python's startswith does not.
    provider_id = or_(*(func.substr(batch_id, 1, len(prefix)) == prefix for prefix in LEGACY_BATCH_ID_PREFIXES))
    unpriced_then = and_(c.price_source.is_(None), provider_id)  # a number or boolean reads as no such text
    evidence = [unpriced_then, *(c.price_source.endswith(e, autoescape=True) for e in BATCH_SOURCE_ENDINGS)]
    legacy = and_(tag_is_true(dialect, LEGACY_BATCH_TAG), or_(*evidence))
    return or_(tag_is_true(dialect, BATCH_TAG), legacy)


def tiered(dialect: str) -> ColumnElement[bool]:
    """Records of calls served at a service tier, read as usage.served_tier reads one record."""
    written = records.c.price_source.like(literal("%(").concat(tag_text(dialect, LEGACY_TIER_TAG)).concat(")"))
    legacy = and_(has_tag(dialect, LEGACY_TIER_TAG), written)
    return or_(has_tag(dialect, TIER_TAG), legacy)


def has_tag(dialect: str, key: str) -> ColumnElement[bool]:
    """Records whose tags have the top-level key `key` (SQLite: a text search first, so that only the JSON of rows
    that name it is parsed; it alone also matched a value "route", a nested key, another case)."""
    _check_tag_key(key)
    if dialect == "sqlite":
        named = type_coerce(records.c.tags, Text).like(f'%"{key}"%')
        return and_(named, func.json_type(records.c.tags, f'$."{key}"').is_not(None))
    return records.c.tags.op("?")(literal(key))
