"""The OpenAI Batch API at half price: run_batch and arun_batch, their results and errors, and the progress bar."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from ..call_context import CallContext, current
from ..calls import Call
from ..errors import CosttrackError
from ..logs import log
from ..providers import operation_for_path
from ..usage import BATCH_ID_TAG, BATCH_TAG

if TYPE_CHECKING:
    from rich.console import Console

    from ..tracker import Tracker
    from ..transport import Instrument

__all__ = [
    "BatchFailedError",
    "BatchItemError",
    "BatchJobError",
    "BatchResults",
    "BatchTimeoutError",
    "arun_batch",
    "run_batch",
]

# `run_batch` / `arun_batch` upload the requests as a JSONL file, create a batch, poll it, download its
# output and error files and record one CallRecord per answered request, priced with the Batch API
# discount. The upload, the polls and the downloads are not LLM calls: the wrapped transport never records
# them (it records only POST .../chat/completions, /responses, /embeddings and /messages).

#: The Batch API endpoints run_batch accepts (the operations costtrack records), by operation.
BATCH_URLS = {
    "chat.completions": "/v1/chat/completions",
    "responses": "/v1/responses",
    "embeddings": "/v1/embeddings",
}
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: How long a timed-out batch is polled after its cancel request (OpenAI: "cancelling" for up to 10 minutes).
CANCEL_WAIT = 600.0
_UPLOAD_NAME = "costtrack-batch.jsonl"
_MISSING_CODES = {"cancelled": "batch_cancelled", "expired": "batch_expired"}


# --------------------------------------------------------------------------- errors and results


class BatchItemError(Exception):
    """One request of a batch that got no answer. Returned in its place in the results, not raised.

    `status_code` is the HTTP status the provider gave the request (None when it never ran: the batch was
    cancelled or expired first, `code` "batch_cancelled" / "batch_expired"); `code`, `message` and `body`
    come from the provider's error.
    """

    def __init__(
        self,
        index: int,
        custom_id: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        message: str | None = None,
        body: Any = None,
    ) -> None:
        self.index = index
        self.custom_id = custom_id
        self.status_code = status_code
        self.code = code
        self.message = message or ""
        self.body = body
        status = f"HTTP {status_code}" if status_code is not None else "not run"
        super().__init__(f"batch request {index} ({custom_id}): {status}, {code or 'error'}: {self.message}".rstrip(": "))


class BatchResults(list):  # type: ignore[type-arg]
    """The answers of a batch, in the order of the requests: an SDK object (ChatCompletion, Response,
    CreateEmbeddingResponse) per answered request, a `BatchItemError` per failed one.

    Also: `batch` (the final SDK Batch object), `id`, `errors` (the BatchItemErrors, in request order),
    `ok` (no errors) and `wall_time_s` (from the batch's creation to its end, by the injected clock).
    """

    def __init__(self, items: Iterable[Any] = (), *, batch: Any = None, wall_time_s: float | None = None) -> None:
        super().__init__(items)
        self.batch = batch
        self.wall_time_s = wall_time_s

    @property
    def id(self) -> str | None:
        """The batch id."""
        return getattr(self.batch, "id", None)

    @property
    def errors(self) -> list[BatchItemError]:
        """The failed requests, in request order."""
        return [item for item in self if isinstance(item, BatchItemError)]

    @property
    def ok(self) -> bool:
        """Whether every request was answered."""
        return not self.errors


class BatchJobError(CosttrackError):
    """A batch as a whole did not complete; `batch` is the SDK Batch object as last seen."""

    def __init__(self, message: str, batch: Any, results: BatchResults | None = None) -> None:
        super().__init__(message)
        self.batch = batch
        self.results = results


class BatchFailedError(BatchJobError):
    """The provider refused the batch (status "failed": its input file did not validate); nothing was billed."""


class BatchTimeoutError(BatchJobError):
    """`timeout` passed before the batch ended.

    With `cancel_on_timeout` (the default) the batch was cancelled: `results` holds what it answered before
    (recorded, as it was billed), the rest as BatchItemErrors. Otherwise `results` is None and the batch
    keeps running at the provider (`batch.id`).
    """


# --------------------------------------------------------------------------- progress bar


class Bar:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, progress: bool | Console, description: str, total: int | None, clock: Callable[[], float]) -> None:
        self._progress: Any = None
        if progress is False or progress is None:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = progress if isinstance(progress, Console) else Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, auto_refresh=False, get_time=clock,
        )  # fmt: skip
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def update(self, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **fields)
            self._progress.refresh()

    def batch(self, batch: Any) -> None:
        if self._progress is None:
            return
        counts = getattr(batch, "request_counts", None)
        done = (counts.completed + counts.failed) if counts is not None else 0
        fields: dict[str, Any] = {"completed": done, "description": f"batch {batch.status}"}
        if counts is not None and counts.total:
            fields["total"] = counts.total
        self.update(**fields)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


# --------------------------------------------------------------------------- the batch job


def _instrument_of(client: Any) -> Instrument | None:
    """The costtrack instrument inside a wrapped client, or None for a bare one."""
    from ..transport import AsyncCostTransport, CostTransport

    transport = getattr(getattr(client, "_client", None), "_transport", None)
    if isinstance(transport, (CostTransport, AsyncCostTransport)):
        return transport.instrument
    return None


def is_async_client(client: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(getattr(client, "embeddings", None), "create", None)) or type(
        client
    ).__name__.startswith("Async")


def _batch_url(url: str) -> tuple[str, str]:
    """(operation, /v1 URL) for a batch endpoint given as a URL or an operation name."""
    if url in BATCH_URLS:
        return url, BATCH_URLS[url]
    operation = operation_for_path(url.rstrip("/"))
    if operation not in BATCH_URLS:
        raise ValueError(f"run_batch runs {', '.join(BATCH_URLS.values())} requests, not {url!r}")
    return operation, BATCH_URLS[operation]


def _result_type(operation: str) -> Any:
    if operation == "chat.completions":
        from openai.types.chat import ChatCompletion

        return ChatCompletion
    if operation == "responses":
        from openai.types.responses import Response

        return Response
    from openai.types import CreateEmbeddingResponse

    return CreateEmbeddingResponse


@dataclass
class _Job:
    provider: str
    tracker: Tracker
    operation: str
    url: str
    bodies: list[dict[str, Any]]
    context: CallContext
    wrap_endpoint: str | None
    completion_window: str
    metadata: Mapping[str, str] | None
    poll_interval: float
    timeout: float | None
    cancel_on_timeout: bool
    clock: Callable[[], float]
    progress: bool | Console

    @property
    def custom_ids(self) -> list[str]:
        return [f"costtrack-{i}" for i in range(len(self.bodies))]

    def jsonl(self) -> bytes:
        lines = (
            json.dumps({"custom_id": cid, "method": "POST", "url": self.url, "body": body}, separators=(",", ":"), ensure_ascii=False)
            for cid, body in zip(self.custom_ids, self.bodies)
        )  # fmt: skip
        return ("\n".join(lines) + "\n").encode()


def _job(
    client: Any,
    requests: Iterable[Mapping[str, Any]],
    *,
    is_async: bool,
    url: str,
    endpoint: str | None,
    tags: Mapping[str, Any] | None,
    tracker: Tracker | None,
    completion_window: str,
    metadata: Mapping[str, str] | None,
    poll_interval: float,
    timeout: float | None,
    cancel_on_timeout: bool,
    clock: Callable[[], float],
    progress: bool | Console,
) -> _Job:
    root = type(client).__module__.split(".", 1)[0]
    if root != "openai":
        raise TypeError(
            f"run_batch() runs OpenAI Batch API jobs and takes an openai client (OpenAI, AsyncOpenAI), "
            f"not {type(client).__module__}.{type(client).__qualname__}"
        )
    if is_async_client(client) != is_async:
        raise TypeError("use `await arun_batch(...)` with an async client" if not is_async else "arun_batch() needs an AsyncOpenAI client; use run_batch() with OpenAI")
    if poll_interval < 0 or (timeout is not None and timeout < 0):
        raise ValueError("poll_interval and timeout must not be negative")
    operation, full_url = _batch_url(url)
    bodies: list[dict[str, Any]] = []
    for i, request in enumerate(requests):
        if not isinstance(request, Mapping):
            raise TypeError(f"request {i}: each request is a request body (a dict), not {type(request).__name__}")
        if not isinstance(request.get("model"), str):
            raise ValueError(f"request {i}: the request body has no 'model'")
        if request.get("stream"):
            raise ValueError(f"request {i}: the Batch API does not stream; remove 'stream'")
        bodies.append(dict(request))
    instrument = _instrument_of(client)
    from ..tracker import default_tracker
    from ..wrap import detect_provider

    if tracker is None:
        tracker = instrument.tracker if instrument is not None else default_tracker()
    outer = current()
    merged_tags = {**(instrument.tags if instrument is not None else {}), **outer.tags, **(tags or {})}
    return _Job(
        provider=instrument.provider if instrument is not None else detect_provider("openai", getattr(client, "base_url", "")),
        tracker=tracker,
        operation=operation,
        url=full_url,
        bodies=bodies,
        context=CallContext(endpoint=endpoint or outer.endpoint, user=outer.user, tags=merged_tags),
        wrap_endpoint=instrument.endpoint if instrument is not None else None,
        completion_window=completion_window,
        metadata=metadata,
        poll_interval=poll_interval,
        timeout=timeout,
        cancel_on_timeout=cancel_on_timeout,
        clock=clock,
        progress=progress,
    )


# The job is written once, as a generator of the I/O it needs ("upload", "create", "retrieve", "cancel",
# "content", "sleep"); run_batch and arun_batch only differ in how they carry that I/O out.
_Op = tuple[str, Any]


def _flow(job: _Job) -> Generator[_Op, Any, BatchResults]:
    if not job.bodies:
        return BatchResults(wall_time_s=0.0)
    bar = Bar(job.progress, "batch uploading", len(job.bodies), job.clock)
    batch: Any = None
    try:
        upload = yield ("upload", job.jsonl())
        create: dict[str, Any] = {"input_file_id": upload.id, "endpoint": job.url, "completion_window": job.completion_window}
        if job.metadata is not None:
            create["metadata"] = dict(job.metadata)
        batch = yield ("create", create)
        submitted_at = job.tracker.now()
        started = job.clock()
        bar.batch(batch)
        deadline = None if job.timeout is None else started + job.timeout
        while batch.status not in _TERMINAL:
            now = job.clock()
            if deadline is not None and now >= deadline:
                batch = yield from _give_up(job, batch, bar)
                if batch.status == "completed":
                    break  # it finished before the cancel took effect
                results = None
                if batch.status in _TERMINAL:
                    results = yield from _collect(job, batch, submitted_at, job.clock() - started)
                raise BatchTimeoutError(
                    f"batch {batch.id} did not finish within {job.timeout:g}s (status {batch.status!r})"
                    + ("" if results is None else f"; {len(results) - len(results.errors)} of {len(results)} requests answered"),
                    batch,
                    results,
                )
            yield ("sleep", job.poll_interval if deadline is None else min(job.poll_interval, deadline - now))
            batch = yield ("retrieve", batch.id)
            bar.batch(batch)
        if batch.status == "failed":
            problems = getattr(getattr(batch, "errors", None), "data", None) or []
            detail = "; ".join(f"line {p.line}: {p.message}" if p.line is not None else str(p.message) for p in problems[:5])
            raise BatchFailedError(f"batch {batch.id} failed validation: {detail or 'no details given'}", batch)
        return (yield from _collect(job, batch, submitted_at, job.clock() - started))
    except (Exception, KeyboardInterrupt, asyncio.CancelledError) as exc:
        if batch is not None and batch.status not in _TERMINAL and not isinstance(exc, BatchJobError):
            log.warning("costtrack: stopped waiting for batch %s (%s); it keeps running at the provider", batch.id, type(exc).__name__)
        raise
    finally:
        bar.close()


def _give_up(job: _Job, batch: Any, bar: Bar) -> Generator[_Op, Any, Any]:
    """Cancel a timed-out batch (when asked to) and wait for it to settle."""
    if not job.cancel_on_timeout:
        return batch
    try:
        batch = yield ("cancel", batch.id)
    except Exception:  # noqa: BLE001 - e.g. it ended meanwhile and can no longer be cancelled
        log.warning("costtrack: could not cancel batch %s", batch.id, exc_info=True)
        batch = yield ("retrieve", batch.id)
    bar.batch(batch)
    until = job.clock() + CANCEL_WAIT
    while batch.status not in _TERMINAL and job.clock() < until:
        yield ("sleep", job.poll_interval)
        batch = yield ("retrieve", batch.id)
        bar.batch(batch)
    return batch


def _parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    out = []
    for raw in data.decode("utf-8", "replace").splitlines():
        if raw.strip():
            try:
                line = json.loads(raw)
            except ValueError:
                log.warning("costtrack: skipped a malformed line in a batch result file")
                continue
            if isinstance(line, dict):
                out.append(line)
    return out


def _collect(job: _Job, batch: Any, submitted_at: datetime, wall: float) -> Generator[_Op, Any, BatchResults]:
    """Download the output and error files, record each answered request, and build the results."""
    lines: list[dict[str, Any]] = []
    for file_id in (getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None)):
        if file_id:
            lines.extend(_parse_jsonl((yield ("content", file_id))))
    ids = {cid: i for i, cid in enumerate(job.custom_ids)}
    items: list[Any] = [None] * len(job.bodies)
    answered: list[tuple[int, int, dict[str, Any]]] = []
    result_type = _result_type(job.operation)
    for line in lines:
        index = ids.get(str(line.get("custom_id")))
        if index is None or items[index] is not None:
            continue
        cid = job.custom_ids[index]
        response = line.get("response")
        if isinstance(response, dict) and isinstance(response.get("body"), dict):
            status = response.get("status_code")
            status = status if isinstance(status, int) else 200
            body = response["body"]
            answered.append((index, status, body))
            if status < 400:
                items[index] = result_type.construct(**body)
            else:
                error = body.get("error") if isinstance(body.get("error"), dict) else {}
                items[index] = BatchItemError(
                    index, cid, status_code=status, code=error.get("code") or error.get("type"), message=error.get("message"), body=body
                )  # fmt: skip
        else:
            error = line.get("error") if isinstance(line.get("error"), dict) else {}
            items[index] = BatchItemError(index, cid, code=error.get("code"), message=error.get("message"), body=line.get("error"))
    missing = _MISSING_CODES.get(batch.status, "no_result")
    for index, item in enumerate(items):
        if item is None:
            items[index] = BatchItemError(
                index, job.custom_ids[index], code=missing, message=f"no result for this request (batch {batch.status})"
            )  # fmt: skip
    for index, status, body in sorted(answered, key=lambda a: a[0]):
        _record(job, batch.id, index, status, body, submitted_at)
    return BatchResults(items, batch=batch, wall_time_s=wall)


def _record(job: _Job, batch_id: str, index: int, status: int, body: dict[str, Any], submitted_at: datetime) -> None:
    """One answered batch request as a record: same parsing and pricing as a live call, at the batch discount."""
    try:
        request = job.bodies[index]
        call = Call(
            tracker=job.tracker,
            provider=job.provider,
            api="openai",
            operation=job.operation,
            context=job.context,
            endpoint=job.wrap_endpoint,
            request_bytes=json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode(),
            body=request,
            attempt=1,
            timestamp=submitted_at,
            started=0.0,
        )
        call.batch = True
        call.status_code = status
        call.chunks = [json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()]
        call.extra_tags = {BATCH_TAG: True, BATCH_ID_TAG: batch_id}
        # call.ended stays None: a batch request has no latency of its own (latency_ms is null).
        job.tracker.submit(call)
    except Exception:  # noqa: BLE001 - recording never breaks the job
        log.warning("costtrack: could not record batch request %d of %s", index, batch_id, exc_info=True)


def _drive(flow: Generator[_Op, Any, BatchResults], client: Any, sleep: Callable[[float], None]) -> BatchResults:
    resume: Callable[[Any], _Op] = flow.send
    value: Any = None
    while True:
        try:
            op = resume(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            value, resume = _do(client, sleep, op), flow.send
        except BaseException as exc:  # noqa: BLE001 - handed to the flow, which cleans up and re-raises (or recovers)
            value, resume = exc, flow.throw


def _do(client: Any, sleep: Callable[[float], None], op: _Op) -> Any:
    kind, arg = op
    if kind == "sleep":
        return sleep(arg)
    if kind == "upload":
        return client.files.create(file=(_UPLOAD_NAME, arg), purpose="batch")
    if kind == "retrieve":
        return client.batches.retrieve(arg)
    if kind == "cancel":
        return client.batches.cancel(arg)
    if kind == "content":
        return client.files.content(arg).content
    return client.batches.create(**arg)


async def _adrive(flow: Generator[_Op, Any, BatchResults], client: Any, sleep: Callable[[float], Awaitable[Any]]) -> BatchResults:
    resume: Callable[[Any], _Op] = flow.send
    value: Any = None
    while True:
        try:
            op = resume(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            value, resume = await _ado(client, sleep, op), flow.send
        except BaseException as exc:  # noqa: BLE001 - handed to the flow
            value, resume = exc, flow.throw


async def _ado(client: Any, sleep: Callable[[float], Awaitable[Any]], op: _Op) -> Any:
    kind, arg = op
    if kind == "sleep":
        return await sleep(arg)
    if kind == "upload":
        return await client.files.create(file=(_UPLOAD_NAME, arg), purpose="batch")
    if kind == "retrieve":
        return await client.batches.retrieve(arg)
    if kind == "cancel":
        return await client.batches.cancel(arg)
    if kind == "content":
        return (await client.files.content(arg)).content
    return await client.batches.create(**arg)


def run_batch(
    client: Any,
    requests: Iterable[Mapping[str, Any]],
    *,
    url: str = "/v1/chat/completions",
    endpoint: str | None = None,
    tags: Mapping[str, Any] | None = None,
    tracker: Tracker | None = None,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    poll_interval: float = 30.0,
    timeout: float | None = None,
    cancel_on_timeout: bool = True,
    progress: bool | Console = True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchResults:
    """Run request bodies through the OpenAI Batch API (50% off) and return the answers in request order.

        results = costtrack.run_batch(client, [{"model": "gpt-4o-mini", "messages": [...]}, ...],
                                      endpoint="/jobs/nightly")
        for answer in results:
            if isinstance(answer, costtrack.BatchItemError): ...
            else: print(answer.choices[0].message.content)

    `client` is an `openai.OpenAI`, wrapped by costtrack or not. `url` is the batch's endpoint:
    "/v1/chat/completions" (default), "/v1/responses" or "/v1/embeddings" (or the operation name).
    Uploads the JSONL file, creates the batch, polls it every `poll_interval` seconds (a rich
    progress bar on stderr unless `progress=False`; a rich Console to draw on instead), downloads the
    output and error files, and records one CallRecord per answered request (see the README).

    Raises BatchFailedError when the batch fails validation, BatchTimeoutError after `timeout` seconds
    (the batch is cancelled first unless `cancel_on_timeout=False`). Errors of single requests do not
    raise: they come back as BatchItemError in their place. `sleep` and `clock` can be injected.
    """
    job = _job(
        client, requests, is_async=False, url=url, endpoint=endpoint, tags=tags, tracker=tracker,
        completion_window=completion_window, metadata=metadata, poll_interval=poll_interval, timeout=timeout,
        cancel_on_timeout=cancel_on_timeout, clock=clock, progress=progress,
    )  # fmt: skip
    return _drive(_flow(job), client, sleep)


async def arun_batch(
    client: Any,
    requests: Iterable[Mapping[str, Any]],
    *,
    url: str = "/v1/chat/completions",
    endpoint: str | None = None,
    tags: Mapping[str, Any] | None = None,
    tracker: Tracker | None = None,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    poll_interval: float = 30.0,
    timeout: float | None = None,  # noqa: ASYNC109 - the batch job's deadline, as run_batch's
    cancel_on_timeout: bool = True,
    progress: bool | Console = True,
    sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchResults:
    """`run_batch` for an `openai.AsyncOpenAI` client; `sleep` is an async sleep (default anyio.sleep: asyncio or trio)."""
    job = _job(
        client, requests, is_async=True, url=url, endpoint=endpoint, tags=tags, tracker=tracker,
        completion_window=completion_window, metadata=metadata, poll_interval=poll_interval, timeout=timeout,
        cancel_on_timeout=cancel_on_timeout, clock=clock, progress=progress,
    )  # fmt: skip
    return await _adrive(_flow(job), client, sleep)
