"""The OpenAI Batch and Files endpoints: uploads, batches that move a step a poll, output and error files."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import httpx2

from .batches import (
    BATCH_LINE_ENDPOINTS,
    FILE_PURPOSES,
    SimBatch,
    SimFile,
    batch_lines,
    multipart,
)
from .openai_chat import OpenAIChat
from .openai_embeddings import OpenAIEmbeddings
from .openai_responses import OpenAIResponses
from .outcomes import BadRequest, Outcome
from .replies import Replies


class BatchAPI(OpenAIChat, OpenAIResponses, OpenAIEmbeddings, Replies):
    """Answers the Batch and Files endpoints, each batch line with the builders that answer a live call."""

    def _batch_api(
        self, endpoint: str, body: dict[str, Any], request: httpx2.Request, n: int, outcome: Outcome
    ) -> httpx2.Response:
        path = request.url.path.rstrip("/")
        if endpoint == "files_create":
            return self._file_create(request, n, outcome)
        if endpoint == "batches_create":
            return self._batch_create(body, request, n, outcome)
        if endpoint in ("files_retrieve", "files_content"):
            file_id = path.rsplit("/files/", 1)[1].split("/")[0]
            sim_file = self.files.get(file_id)
            if sim_file is None:
                return self._error("openai", 404, request, n, message=f"No such File object: {file_id}", error_code="", param="id")
            if endpoint == "files_retrieve":
                return self._json("openai", n, sim_file.object(), outcome)
            headers = self._headers("openai", n, extra={"content-type": "application/octet-stream"})
            headers["content-length"] = str(len(sim_file.content))
            return httpx2.Response(200, content=sim_file.content, headers=headers)
        batch_id = path.rsplit("/batches/", 1)[1].split("/")[0]
        batch = self.batches.get(batch_id)
        if batch is None:
            return self._error("openai", 404, request, n, message=f"No batch found with id '{batch_id}'.", error_code="")
        if endpoint == "batches_cancel":
            if batch.status in ("validating", "in_progress", "finalizing"):
                batch.status = "cancelling"
                batch.cancelling_at = self._now(n)
            elif batch.status not in ("cancelling", "cancelled"):
                return self._error("openai", 409, request, n, message=f"Cannot cancel a batch with status '{batch.status}'.", error_code="")
            return self._json("openai", n, batch.object(), outcome)
        self._batch_step(batch, n)
        return self._json("openai", n, batch.object(), outcome)

    def _file_create(self, request: httpx2.Request, n: int, outcome: Outcome) -> httpx2.Response:
        parsed = multipart(request.headers.get("content-type", ""), request.content)
        if parsed is None:
            return self._error("openai", 400, request, n, message="Could not parse the multipart form.")
        fields, files = parsed
        if "file" not in files:
            return self._error("openai", 400, request, n, message="'file' is a required property", param="file")
        purpose = fields.get("purpose")
        if purpose not in FILE_PURPOSES:
            return self._error("openai", 400, request, n, message=f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'", param="purpose")
        filename, content = files["file"]
        file_id = self._file_id("upload", n)
        self.files[file_id] = SimFile(id=file_id, filename=filename or "upload", purpose=purpose, content=content, created_at=self._now(n))
        return self._json("openai", n, self.files[file_id].object(), outcome)

    def _file_id(self, kind: str, n: int) -> str:
        return "file-" + hashlib.sha256(f"{self.seed}:file:{kind}:{n}".encode()).hexdigest()[:22]

    def _batch_create(self, body: dict[str, Any], request: httpx2.Request, n: int, outcome: Outcome) -> httpx2.Response:
        window = body.get("completion_window")
        if window != "24h":
            return self._error("openai", 400, request, n, message=f"Invalid completion_window: {window!r}. Supported values are: '24h'.", param="completion_window")
        endpoint = body.get("endpoint")
        if endpoint not in BATCH_LINE_ENDPOINTS:
            return self._error(
                "openai", 400, request, n, param="endpoint",
                message=f"Invalid endpoint: {endpoint!r}. This simulator runs batches for {', '.join(BATCH_LINE_ENDPOINTS)}.",
            )  # fmt: skip
        file_id = body.get("input_file_id")
        sim_file = self.files.get(str(file_id))
        if sim_file is None:
            return self._error("openai", 404, request, n, message=f"No such File object: {file_id}", error_code="", param="input_file_id")
        if sim_file.purpose != "batch":
            return self._error("openai", 400, request, n, message=f"File {file_id} has purpose '{sim_file.purpose}'; a batch needs purpose 'batch'.", param="input_file_id")
        lines, problems = batch_lines(sim_file.content, endpoint)
        created = self._now(n)
        models = [line["body"].get("model") for line in lines if isinstance(line["body"].get("model"), str)]
        batch = SimBatch(
            id=self._id("batch_", n),
            endpoint=endpoint,
            input_file_id=sim_file.id,
            completion_window=window,
            created_at=created,
            metadata=body.get("metadata") if isinstance(body.get("metadata"), dict) else None,
            model=models[0] if models else None,
            lines=lines,
            problems=problems,
        )
        self.batches[batch.id] = batch
        return self._json("openai", n, batch.object(), outcome)

    def _batch_step(self, batch: SimBatch, n: int) -> None:
        """One poll: the batch moves one step (see the module docstring)."""
        now = self._now(n)
        total = len(batch.lines)
        if batch.status == "validating":
            if batch.problems or not batch.lines:
                batch.status, batch.failed_at = "failed", now
                batch.problems = batch.problems or [{"code": "empty_file", "line": None, "message": "The input file is empty.", "param": None}]
                return
            batch.status, batch.in_progress_at, batch.step = "in_progress", now, 1
            self._batch_process(batch, 0)
        elif batch.status == "in_progress":
            batch.step += 1
            if batch.step <= self.batch_polls:
                self._batch_process(batch, total * (batch.step - 1) // self.batch_polls)
            else:
                self._batch_process(batch, total)
                batch.status, batch.finalizing_at = "finalizing", now
        elif batch.status == "finalizing":
            self._batch_files(batch, n)
            batch.status, batch.completed_at = "completed", now
        elif batch.status == "cancelling":
            self._batch_files(batch, n)
            batch.status, batch.cancelled_at = "cancelled", now

    def _batch_process(self, batch: SimBatch, upto: int) -> None:
        """Answer the batch's lines up to `upto` (exclusive), each like a live call."""
        while len(batch.results) < upto:
            line = batch.lines[len(batch.results)]
            n = self._next()
            status, body = self._batch_line_answer(batch.endpoint, line, n)
            batch.results.append(
                {
                    "id": self._id("batch_req_", n, 32),
                    "custom_id": line["custom_id"],
                    "response": {"status_code": status, "request_id": self._id("req_", n, 32), "body": body},
                    "error": None,
                }
            )

    def _batch_line_answer(self, endpoint: str, line: dict[str, Any], n: int) -> tuple[int, dict[str, Any]]:
        body = line["body"]
        request = httpx2.Request("POST", "https://api.openai.com" + endpoint, json=body)
        status = self._batch_line_failures.pop(line["custom_id"], None)
        if status is None and self.error_rate > 0:
            rng = random.Random(f"{self.seed}:batch-error:{n}")
            if rng.random() < self.error_rate:
                status = 500
        if status is not None:
            return status, self._error("openai", status, request, n).json()
        try:
            if endpoint == "/v1/chat/completions":
                return 200, self._chat_body(body, n, self._chat_plan(body), usage=True)
            if endpoint == "/v1/responses":
                return 200, self._responses_body(body, n, self._responses_plan(body), usage=True)
            return 200, self._embedding_body(body, usage=True)
        except BadRequest as err:
            return 400, self._error("openai", 400, request, n, message=str(err)).json()

    def _batch_files(self, batch: SimBatch, n: int) -> None:
        """Write the output and error files (each in an order of its own, as the real API may)."""
        answered = [r for r in batch.results if r["response"]["status_code"] < 400]
        failed = [r for r in batch.results if r["response"]["status_code"] >= 400]
        for kind, results in (("output", answered), ("error", failed)):
            if not results:
                continue
            results = list(results)
            random.Random(f"{self.seed}:{batch.id}:{kind}").shuffle(results)
            content = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in results).encode()
            file_id = self._file_id(f"{batch.id}:{kind}", n)
            self.files[file_id] = SimFile(
                id=file_id, filename=f"{batch.id}_{kind}.jsonl", purpose="batch_output", content=content, created_at=self._now(n)
            )
            if kind == "output":
                batch.output_file_id = file_id
            else:
                batch.error_file_id = file_id
