"""Cold start: waiting until a target answers GET /models."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import httpx2

if TYPE_CHECKING:
    pass

from .targets import NO_KEY, BenchError, Target


class _ModelsProbe:
    """GET a target's model list; True once it answers 2xx."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self._clients: dict[bool, httpx2.Client] = {}

    def __call__(self, target: Target) -> bool:
        return probe_models(target, client=self._client(not target.is_loopback))

    def _client(self, trust_env: bool) -> httpx2.Client:
        client = self._clients.get(trust_env)
        if client is None:
            client = self._clients[trust_env] = httpx2.Client(timeout=self.timeout, trust_env=trust_env)
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def probe_models(target: Target, *, client: httpx2.Client | None = None, timeout: float = 2.0) -> bool:
    """Whether `target` answers GET …/models with 2xx now (False: not listening, or not ready yet).

    401/403 mean the server is up but refuses the key: BenchError, as waiting would not help.
    """
    headers = {"authorization": f"Bearer {target.api_key or NO_KEY}"}
    if target.sdk == "anthropic":
        headers = {"x-api-key": target.api_key or NO_KEY, "anthropic-version": "2023-06-01"}
    own = client is None
    http = client or httpx2.Client(timeout=timeout, trust_env=not target.is_loopback)
    try:
        response = http.get(target.models_url, headers=headers)
    except httpx2.TransportError:
        return False
    finally:
        if own:
            http.close()
    if response.status_code in (401, 403):
        raise BenchError(
            f"{target.name} answered GET {target.models_url} with {response.status_code}: it refuses the API key; "
            f"check --api-key-env {target.name}=VAR"
        )
    return 200 <= response.status_code < 300


def wait_ready(
    targets: Sequence[Target],
    *,
    start: float | None = None,
    timeout: float = 300.0,
    interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    probe: Callable[[Target], bool] | None = None,
) -> dict[str, float]:
    """Seconds from `start` (default: now) until each target answers its model list (the cold-start experiment).

    Every target not yet ready is probed in turn, then `sleep(interval)`, until all
    answer; a target still silent `timeout` seconds after `start` is a BenchError.
    The result's resolution is `interval` plus one probe. `clock`, `sleep` and
    `probe` (``probe(target) -> bool``) are injectable for tests.
    """
    begin = clock() if start is None else start
    own_probe = _ModelsProbe() if probe is None else None
    check = probe if probe is not None else own_probe
    assert check is not None
    pending = list(targets)
    ready: dict[str, float] = {}
    try:
        while True:
            for target in list(pending):
                if check(target):
                    ready[target.name] = max(clock() - begin, 0.0)
                    pending.remove(target)
            if not pending:
                return ready
            if clock() - begin >= timeout:
                names = ", ".join(f"{t.name} ({t.models_url})" for t in pending)
                raise BenchError(f"{names} did not answer GET /models within {timeout:g} s; is it running? (--ready-timeout)")
            sleep(interval)
    finally:
        if own_probe is not None:
            own_probe.close()


