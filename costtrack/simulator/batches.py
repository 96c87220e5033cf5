"""Batch API state: routes, uploaded files and batches, and parsing of multipart uploads and batch input lines."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

BATCH_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/files$"), "files_create"),
    ("GET", re.compile(r"/files/[^/]+/content$"), "files_content"),
    ("GET", re.compile(r"/files/[^/]+$"), "files_retrieve"),
    ("POST", re.compile(r"(?<!/messages)/batches$"), "batches_create"),
    ("POST", re.compile(r"(?<!/messages)/batches/[^/]+/cancel$"), "batches_cancel"),
    ("GET", re.compile(r"(?<!/messages)/batches/[^/]+$"), "batches_retrieve"),
)
BATCH_ENDPOINTS = frozenset(endpoint for _, _, endpoint in BATCH_ROUTES)
#: The endpoints a simulated batch can run (the ones costtrack records).
BATCH_LINE_ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass
class SimFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class SimBatch:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    metadata: dict[str, Any] | None
    model: str | None
    lines: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    status: str = "validating"
    step: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None

    def object(self) -> dict[str, Any]:
        failed = sum(1 for r in self.results if r["response"]["status_code"] >= 400)
        usage = {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}
        for r in self.results:
            u = r["response"]["body"].get("usage") if r["response"]["status_code"] < 400 else None
            if not isinstance(u, dict):
                continue
            in_details = u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}
            out_details = u.get("completion_tokens_details") or u.get("output_tokens_details") or {}
            usage["input_tokens"] += int(u.get("prompt_tokens", u.get("input_tokens", 0)) or 0)
            usage["output_tokens"] += int(u.get("completion_tokens", u.get("output_tokens", 0)) or 0)
            usage["cached_tokens"] += int(in_details.get("cached_tokens", 0) or 0)
            usage["reasoning_tokens"] += int(out_details.get("reasoning_tokens", 0) or 0)
        counted = self.status != "validating" and self.status != "failed"
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": {"object": "list", "data": self.problems} if self.problems else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "expires_at": self.created_at + 86_400,
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": None,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {
                "total": len(self.lines) if counted else 0,
                "completed": len(self.results) - failed,
                "failed": failed,
            },
            "usage": {
                "input_tokens": usage["input_tokens"],
                "input_tokens_details": {"cached_tokens": usage["cached_tokens"]},
                "output_tokens": usage["output_tokens"],
                "output_tokens_details": {"reasoning_tokens": usage["reasoning_tokens"]},
                "total_tokens": usage["input_tokens"] + usage["output_tokens"],
            },
            "metadata": self.metadata,
        }


def multipart(content_type: str, content: bytes) -> tuple[dict[str, str], dict[str, tuple[str | None, bytes]]] | None:
    """(form fields, files as (filename, bytes)) of a multipart/form-data body, or None if it is not one."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        return None
    delimiter = b"--" + match.group(1).encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str | None, bytes]] = {}
    for part in content.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            return None
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disposition = ""
        for header in head.decode("latin-1").split("\r\n"):
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = value
        params = dict(re.findall(r';\s*([\w*]+)="([^"]*)"', disposition))
        if "name" not in params:
            return None
        if "filename" in params:
            files[params["name"]] = (params["filename"], data)
        else:
            fields[params["name"]] = data.decode("utf-8", "replace")
    return fields, files


def batch_lines(content: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The requests of a batch input file, and the problems that fail its validation (with 1-based line numbers)."""
    lines: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()

    def problem(code: str, number: int, message: str, param: str | None = None) -> None:
        problems.append({"code": code, "line": number, "message": message, "param": param})

    for number, raw in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            problem("invalid_json_line", number, "This line is not parseable as valid JSON.")
            continue
        if not isinstance(line, dict):
            problem("invalid_json_line", number, "This line is not a JSON object.")
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            problem("missing_required_parameter", number, "Missing required parameter: 'custom_id'.", "custom_id")
            continue
        if custom_id in seen:
            problem("duplicate_custom_id", number, f"The custom_id for this request is a duplicate of another request: {custom_id}.", "custom_id")
            continue
        seen.add(custom_id)
        if str(line.get("method", "")).upper() != "POST":
            problem("invalid_method", number, "The method of every request must be POST.", "method")
            continue
        if line.get("url") != endpoint:
            problem("mismatched_endpoint", number, f"The url of this request ({line.get('url')!r}) does not match the batch's endpoint {endpoint!r}.", "url")
            continue
        if not isinstance(line.get("body"), dict):
            problem("missing_required_parameter", number, "Missing required parameter: 'body'.", "body")
            continue
        lines.append(line)
    return lines, problems
