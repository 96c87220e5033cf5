"""`costtrack export`: every record as JSON lines or CSV, with the record's field names."""

from __future__ import annotations

import csv
import json
import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional, TextIO

import typer

from ..format import when
from ..periods import parse_since
from ..records import RECORD_FIELDS
from ..store.sql import count_records, iter_records
from . import _common

#: Exported columns: the record's fields; content only when it was stored.
EXPORT_FIELDS = tuple(name for name in RECORD_FIELDS if name not in ("request_body", "response_body"))


def export(
    format: Annotated[str, typer.Option("--format", "-f", help="jsonl or csv.")] = "jsonl",
    since: Annotated[Optional[str], typer.Option(help="Only records newer than this: 7d, 24h, or an ISO date.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout ('-': stdout).")] = None,
    with_content: Annotated[bool, typer.Option(help="Include stored prompts and responses (store_content=True).")] = False,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Write one line per record (field names as in the record; timestamps ISO 8601 UTC)."""
    if format not in ("jsonl", "csv"):
        _common.fail(f"--format {format!r} is not supported: use jsonl or csv")
    if output is not None and str(output) == "-":
        output = None  # `-o -`: the standard output, as the reports read it (it wrote a file named "-")
    start = parse_since(since, datetime.now(timezone.utc)) if since else None
    _common.check_output(output, database_url)
    engine = _common.read_engine(database_url)
    if not count_records(engine, since=start):
        # Like `stats` and `report`: nothing to export is said, not an empty file or a bare CSV header.
        _common.no_records(engine, f"since {when(start)}")
    fields = RECORD_FIELDS if with_content else EXPORT_FIELDS
    try:
        target = output.open("w", newline="", encoding="utf-8") if output else nullcontext(sys.stdout)
    except OSError as exc:
        _common.fail(f"cannot write {output}: {exc.strerror}")
    try:
        with target as stream:
            written = write(iter_records(engine, since=start), stream, format, fields)
            stream.flush()
    except BrokenPipeError:
        if output is None:
            raise  # the reader of a pipe has what it wanted (`export | head`): see cli.run
        _common.fail(f"cannot write {output}: broken pipe")
    except OSError as exc:  # a full disk: not a traceback
        _common.fail(f"cannot write {output or 'the export'}: {exc.strerror or exc}")
    if output:
        typer.echo(f"wrote {written:,} records to {output}", err=True)


def write(records: Any, stream: TextIO, format: str, fields: tuple[str, ...] = EXPORT_FIELDS) -> int:
    """Write records to a text stream; return how many."""
    written = 0
    if format == "csv":
        writer = csv.DictWriter(stream, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            row = record.export_dict()
            row["tags"] = json.dumps(row["tags"], sort_keys=True)
            writer.writerow(row)
            written += 1
    else:
        for record in records:
            row = record.export_dict()
            row["tags"] = _sorted(row["tags"])  # as in CSV: Postgres (jsonb) keeps its own key order, SQLite the app's
            stream.write(json.dumps({name: row[name] for name in fields}) + "\n")
            written += 1
    return written


def _sorted(value: Any) -> Any:
    """`value` with every object's keys in sorted order, nested ones too."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
