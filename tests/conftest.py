"""Fixtures shared by the whole suite.

Backends: ``database_url`` is parametrised over ``sqlite`` (a fresh, unmigrated file
under tmp_path) and ``postgres`` (one database per test session, created on the
server at $COSTTRACK_TEST_POSTGRES_URL, default postgres@127.0.0.1:5432, migrated
once, its records truncated before each test). A test that takes ``database_url``
(or ``engine``, ``tracker``) therefore runs once per backend.

Services: a test needing a service calls :func:`require_service` (the fixtures here
do): it skips with the reason when the service cannot be reached, unless
``COSTTRACK_REQUIRE_SERVICES=1``, which turns the skip into a failure (CI sets it).

Time: nothing here waits on real time; ``fake_clock`` is a clock to inject.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest

from costtrack.records import CallRecord

REQUIRE_SERVICES_ENV = "COSTTRACK_REQUIRE_SERVICES"
POSTGRES_ADMIN_URL = os.environ.get(
    "COSTTRACK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# --------------------------------------------------------------------------- services


def services_required() -> bool:
    return os.environ.get(REQUIRE_SERVICES_ENV, "").strip() not in ("", "0", "false", "no")


def require_service(name: str, host: str, port: int, *, timeout: float = 2.0) -> None:
    """Skip the test unless `host:port` accepts TCP connections; fail instead when services are required.

    Usage: ``require_service("Redis", "127.0.0.1", 6379)`` at the top of a test or fixture.
    """
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
        if services_required():
            pytest.fail(f"{reason}, and {REQUIRE_SERVICES_ENV}=1 requires it", pytrace=False)
        pytest.skip(f"{reason}; set {REQUIRE_SERVICES_ENV}=1 to make this a failure")


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def free_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- time


class FakeClock:
    """A monotonic clock that moves only when told; `sleep` advances it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


# --------------------------------------------------------------------------- records


@pytest.fixture
def make_record() -> Callable[..., CallRecord]:
    """A factory: ``make_record(**overrides)`` -> a valid CallRecord, distinct each call.

    Timestamps go up by one millisecond per record from a fixed instant, so order is
    deterministic; pass ``timestamp=`` to choose.
    """
    counter = itertools.count()
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def make(**overrides: Any) -> CallRecord:
        n = next(counter)
        fields: dict[str, Any] = {
            "timestamp": base + timedelta(milliseconds=n),
            "provider": "openai",
            "model": "gpt-4o-mini",
            "model_requested": "gpt-4o-mini",
            "operation": "chat",
            "endpoint": "/api/chat",
            "tokens_input": 100 + n,
            "tokens_output": 20,
            "cost_usd": 0.000027,
            "latency_ms": 123.5,
            "price_source": "genai-prices",
        }
        fields.update(overrides)
        return CallRecord(**fields)

    return make


# --------------------------------------------------------------------------- databases


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's database URL or writes to the real outbox directory."""
    monkeypatch.delenv("COSTTRACK_DATABASE_URL", raising=False)
    monkeypatch.setenv("COSTTRACK_OUTBOX_DIR", str(tmp_path_factory.mktemp("outbox")))
    # configure() keeps what earlier calls set: each test starts from none.
    import costtrack.tracker

    monkeypatch.setattr(costtrack.tracker, "_settings", {}, raising=False)


@pytest.fixture
def outbox_dir(tmp_path: Any) -> Any:
    """A per-test outbox directory (not created until used)."""
    return tmp_path / "outbox"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the test Postgres server (skips/fails per require_service)."""
    host, port = _host_port(POSTGRES_ADMIN_URL, 5432)
    require_service("Postgres", host, port)
    return POSTGRES_ADMIN_URL


def _admin_execute(admin_url: str, *statements: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


class PostgresDatabases:
    """Creates throwaway databases on the test server and drops them at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []
        self._counter = itertools.count()

    def create(self, label: str = "") -> str:
        from sqlalchemy.engine import make_url

        name = f"costtrack_test_{os.getpid()}{'_' + label if label else ''}_{next(self._counter)}"
        _admin_execute(self.admin_url, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in self.created:
            try:
                _admin_execute(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:  # pragma: no cover - best effort cleanup
                pass


@pytest.fixture(scope="session")
def postgres_databases(postgres_server: str) -> Iterator[PostgresDatabases]:
    dbs = PostgresDatabases(postgres_server)
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def _postgres_session_url(postgres_databases: PostgresDatabases) -> str:
    from costtrack.store.database import upgrade

    url = postgres_databases.create()
    upgrade(url)
    return url


@pytest.fixture
def postgres_url(_postgres_session_url: str) -> str:
    """The session's migrated Postgres database, emptied for this test."""
    _admin_execute(_postgres_session_url, "TRUNCATE records")
    return _postgres_session_url


@pytest.fixture
def fresh_postgres_url(postgres_databases: PostgresDatabases) -> str:
    """A new, empty (unmigrated) Postgres database for this test only."""
    return postgres_databases.create("fresh")


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    """A SQLite file under tmp_path that does not exist yet."""
    return f"sqlite:///{tmp_path / 'costtrack.db'}"


@pytest.fixture
def empty_sqlite_url(sqlite_url: str) -> str:
    """A SQLite file with the records schema and no records."""
    from costtrack.store.database import ensure_schema, make_engine

    engine = make_engine(sqlite_url)
    ensure_schema(engine)
    engine.dispose()
    return sqlite_url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs against SQLite and against Postgres."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """An empty database with no schema yet: a new SQLite file, then a new Postgres database."""
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def backend(database_url: str) -> str:
    """'sqlite' or 'postgresql', for the current database_url."""
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


@pytest.fixture
def engine(database_url: str) -> Iterator[Any]:
    """An Engine on `database_url` with the schema in place."""
    from costtrack.store.database import ensure_schema, make_engine

    eng = make_engine(database_url)
    ensure_schema(eng)
    yield eng
    eng.dispose()


# --------------------------------------------------------------------------- tracker


@pytest.fixture
def tracker(database_url: str, outbox_dir: Any) -> Iterator[Any]:
    """A Tracker writing to `database_url` (so once per backend), closed afterwards."""
    from costtrack.tracker import Tracker

    t = Tracker(database_url, outbox_dir=outbox_dir)
    yield t
    t.close()


@pytest.fixture
def records(tracker: Any) -> Callable[..., list[CallRecord]]:
    """``records(since=None, until=None)``: the tracker's stored records, after a flush."""
    return tracker.records


# --------------------------------------------------------------------------- network


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `start()`/`stop()` make a server appear and vanish.

    Stopped, the port refuses connections (nothing listens); `stop()` also cuts the
    connections in flight, as a server restart would.
    """

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not on Linux)
            except OSError:
                pass
            server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    """``tcp_proxy(host, port)`` -> a stopped TcpProxy to host:port; all stopped after the test."""
    proxies: list[TcpProxy] = []

    def make(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


class BlockedDatabase:
    """A URL whose database is unreachable until `unblock()`; then it is the real one.

    SQLite: the file's parent directory is a regular file (so even root cannot create
    the database; chmod would not stop root); unblock() replaces it by a directory.
    Postgres: the URL points at a local port where nothing listens; unblock() starts a
    TCP proxy there to the test database.
    """

    def __init__(self, url: str, unblock: Callable[[], None], block: Callable[[], None]) -> None:
        self.url = url
        self._unblock = unblock
        self._block = block

    def unblock(self) -> None:
        self._unblock()

    def block(self) -> None:
        self._block()


@pytest.fixture
def blocked_database(database_url: str, tmp_path: Any, tcp_proxy: Callable[[str, int], TcpProxy]) -> BlockedDatabase:
    """The current backend's database, made unreachable until ``.unblock()`` (see BlockedDatabase)."""
    from sqlalchemy.engine import make_url

    if database_url.startswith("sqlite"):
        parent = tmp_path / "blocked"
        parent.write_text("a regular file where the database's directory should be\n")

        def unblock() -> None:
            if parent.is_file():
                parent.unlink()
            parent.mkdir(exist_ok=True)

        def block() -> None:
            raise NotImplementedError("re-blocking SQLite is not supported")

        return BlockedDatabase(f"sqlite:///{parent / 'costtrack.db'}", unblock, block)
    u = make_url(database_url)
    proxy = tcp_proxy(u.host or "127.0.0.1", u.port or 5432)
    url = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    return BlockedDatabase(url, proxy.start, proxy.stop)
