"""CallRecord: the one shape of a recorded call that every layer passes on."""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RECORD_FIELDS", "CallRecord", "Status", "new_id"]

Status = Literal["ok", "error", "incomplete"]


# costtrack's own generator, seeded from os.urandom in each process (and again in a forked child):
# an app that seeds the global `random` (random.seed(0) in every worker) must not make ids collide.
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)
_random_bits = _rng.getrandbits


def new_id() -> str:
    """A new record id: a UUIDv7 as 32 hex digits: time-ordered, so inserts append to the primary-key index.

    The random part comes from a private `random.Random` seeded from os.urandom (reseeded
    in forked children), not from os.urandom per id: ids need uniqueness, not secrecy, and
    os.urandom releases the GIL, which costs the writer thread a switch interval per record
    beside a busy app thread.
    """
    value = (time.time_ns() // 1_000_000) << 80 | _random_bits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return value.to_bytes(16, "big").hex()  # 32 hex digits, as f"{value:032x}" at half its cost


_set = object.__setattr__
_new = object.__new__


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CallRecord(BaseModel):
    """One attempt sent to a provider (or answered from the cache), as stored and exported."""

    # NaN/Infinity (in a tag) as "NaN"/"Infinity" text in its JSON (the outbox), as the database stores them.
    model_config = ConfigDict(extra="forbid", validate_assignment=False, ser_json_inf_nan="strings")

    id: str = Field(default_factory=new_id)
    timestamp: datetime = Field(default_factory=_utcnow)
    provider: str
    model: str | None = None
    model_requested: str | None = None
    operation: str
    endpoint: str
    tokens_input: int = 0
    tokens_output: int = 0
    tokens_cached_input: int = 0
    tokens_cache_write: int = 0
    tokens_reasoning: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cache_hit: bool = False
    cost_saved_usd: float | None = None
    status: Status = "ok"
    error_type: str | None = None
    request_hash: str | None = None
    attempt: int = 1
    user: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    price_source: str | None = None
    # Kept apart from tokens_cache_write so 1-hour writes can be re-priced later.
    tokens_cache_write_1h: int = 0
    # Only filled when the tracker was configured with store_content=True.
    request_body: str | None = None
    response_body: str | None = None

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> CallRecord:
        """A record from every field's value, already of its type, in field order: no validation.

        For records costtrack builds itself (one per call, in the writer thread), where
        pydantic's validation would only re-check what the code just computed, at a third
        of the record's cost. `tests/test_calls.py` checks such records validate.
        """
        record = _new(cls)
        _set(record, "__dict__", values)
        _set(record, "__pydantic_fields_set__", set(_FIELD_NAMES))  # copied from a set: half of set(values)
        _set(record, "__pydantic_extra__", None)
        _set(record, "__pydantic_private__", None)
        return record

    def export_dict(self) -> dict[str, Any]:
        """The record as exported: field names of the record, timestamp in ISO 8601 UTC."""
        data = self.model_dump()
        data["timestamp"] = self.timestamp.astimezone(timezone.utc).isoformat()
        return data


#: Field names in export order.
RECORD_FIELDS: tuple[str, ...] = tuple(CallRecord.model_fields)
_FIELD_NAMES = frozenset(RECORD_FIELDS)  # a trusted record's fields set: it has every field
