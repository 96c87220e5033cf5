"""Storage: the records table, database URLs and migrations, fast inserts, the background writer."""

from __future__ import annotations

from .database import (
    DEFAULT_URL,
    ENV_VAR,
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    resolve_url,
    safe_url,
    upgrade,
)
from .outbox import default_outbox_dir
from .schema import metadata, records
from .sql import count_records, insert_records, iter_records, update_answer_costs, update_costs
from .writer import Writer

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "Writer",
    "count_records",
    "current_revision",
    "default_outbox_dir",
    "ensure_schema",
    "head_revision",
    "insert_records",
    "iter_records",
    "make_engine",
    "metadata",
    "records",
    "resolve_url",
    "safe_url",
    "update_answer_costs",
    "update_costs",
    "upgrade",
]
