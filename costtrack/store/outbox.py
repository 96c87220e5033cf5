"""The outbox: durable JSON Lines spill files that keep records while the database cannot take them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..records import CallRecord

__all__ = ["Outbox", "default_outbox_dir", "iter_outbox", "sanitised"]


def default_outbox_dir() -> Path:
    """$COSTTRACK_OUTBOX_DIR, else $XDG_CACHE_HOME/costtrack/outbox, else ~/.cache/costtrack/outbox."""
    env = os.environ.get("COSTTRACK_OUTBOX_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "costtrack" / "outbox"


class Outbox:
    """Durable spill files for one database in one directory.

    File names: ``<dbkey>-<pid>-<random>.jsonl``, one JSON-encoded CallRecord per line.
    The process writing a file holds an exclusive ``flock`` on it while it lives; a
    file whose lock can be taken belongs to a dead process (or to nobody) and may be
    claimed: lock it, then rename it (the old name disappearing is the claim).
    Records that the database rejects for good go to ``rejected-<dbkey>-....jsonl``,
    which is never replayed automatically.
    """

    def __init__(self, directory: str | os.PathLike[str], key: str) -> None:
        self.directory = Path(directory)
        self.key = key
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        #: Records in this process's current file.
        self.count = 0

    # -- writing
    def _new_file(self, kind: str = "") -> tuple[int, Path]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{kind}{self.key}-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        final = self.directory / name
        tmp = final.with_name(name + ".tmp")
        # Read-write: the owner replays its own file once the database is back.
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            # Lock before the file can be seen under a name others look for.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, final)
            self._fsync_dir()
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return fd, final

    def _fsync_dir(self) -> None:
        try:
            dfd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)

    def append(self, records: Sequence[CallRecord]) -> None:
        """Write `records` durably (fsync'd) to this process's file. Raises OSError."""
        if not records:
            return
        data = b"".join(map(_line, records))
        with self._lock:
            if self._fd is None:
                self._fd, self._path = self._new_file()
            fd = self._fd
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError:
                # A disk full mid-write left part of a line: cut it off, or the retry's first line would be glued
                # to it and both unreadable (the record lost). If even that fails, the next spill starts a new file.
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    self._fd, self._path = None, None  # still locked: replayed once this process is gone
                raise
            self.count += len(records)

    def reject(self, records: Sequence[CallRecord]) -> Path:
        """Keep records the database refused for good in a file that is never replayed."""
        return self.write_closed(records, kind="rejected-")

    def write_closed(self, records: Sequence[CallRecord], kind: str = "") -> Path:
        """Write records to a new file and let go of it at once (any writer may replay it)."""
        data = b"".join(map(_line, records))  # before the file exists: nothing left half-made if this fails
        fd, path = self._new_file(kind=kind)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def take_own(self) -> tuple[int, Path] | None:
        """Detach this process's file (still locked) so new spills start a new one."""
        with self._lock:
            if self._fd is None:
                return None
            taken = (self._fd, self._path)
            self._fd, self._path, self.count = None, None, 0
        return taken  # type: ignore[return-value]

    # -- claiming files of dead processes
    def claim_orphans(self) -> Iterator[tuple[int, Path]]:
        """Claim, one at a time, the files for this database no live process holds."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return  # no outbox yet (or none possible: spilling reports that)
        own = self._path.name if self._path is not None else None
        prefix = f"{self.key}-"
        for name in names:
            if not name.startswith(prefix) or not name.endswith(".jsonl") or name == own:
                continue
            path = self.directory / name
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                claimed = path.with_name(f"{self.key}-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl")
                os.rename(path, claimed)  # gone already: another process claimed it
            except OSError:
                os.close(fd)
                continue
            yield fd, claimed

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._path = None

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's file without touching its lock."""
        self._lock = threading.Lock()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd, self._path, self.count = None, None, 0


def iter_outbox(fd: int, chunk: int = 5000) -> Iterator[tuple[list[CallRecord], int]]:
    """The records of a claimed outbox file in chunks, each with how many lines were unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    with os.fdopen(os.dup(fd), "rb") as f:
        good: list[CallRecord] = []
        bad = 0
        for line in f:
            if not line.strip():
                continue
            try:
                good.append(CallRecord.model_validate_json(line))
            except Exception:
                bad += 1
            if len(good) >= chunk:
                yield good, bad
                good, bad = [], 0
        if good or bad:
            yield good, bad


def sanitised(record: CallRecord) -> CallRecord:
    """A copy the databases and JSON can hold: no NUL characters, no lone surrogates, bytes and tuples as text and lists."""

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            value = value.replace("\x00", "\ufffd")
            return value.encode("utf-8", "replace").decode("utf-8")
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace").replace("\x00", "\ufffd")
        if isinstance(value, dict):
            return {fix(k): fix(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [fix(v) for v in value]
        return value

    data = {k: fix(v) for k, v in record.__dict__.items()}
    return CallRecord.model_construct(**data)


#: The tag a record kept without the tags no JSON could hold (nested thousands deep) carries instead.
TAGS_DROPPED_TAG = "costtrack.tags_dropped"


def without_tags(record: CallRecord) -> CallRecord:
    """A sanitised copy whose tags, which no JSON could hold, are replaced by TAGS_DROPPED_TAG: the call is kept."""
    copy = sanitised(record.model_construct(**{**record.__dict__, "tags": {}}))
    copy.__dict__["tags"] = {TAGS_DROPPED_TAG: True}
    return copy


def _line(record: CallRecord) -> bytes:
    """One JSON line; values JSON has no form for are written as str(value), as the database's tags are; a record
    pydantic cannot write whole (a tag of non-UTF-8 bytes, a lone surrogate) goes sanitised, one it cannot write at
    all (tags nested thousands deep) without its tags. One record never costs a spill the others."""
    for kept in fallbacks(record):
        try:
            return kept.model_dump_json(fallback=str).encode() + b"\n"
        except (ValueError, RecursionError):
            continue
    raise ValueError("a record no JSON can hold")  # not reached: without_tags leaves only plain fields


def fallbacks(record: CallRecord) -> Iterator[CallRecord]:
    """`record`, then copies a database or JSON is likelier to hold, each made only when asked for: sanitised, then
    without its tags (tags too deep to sanitise are skipped straight to that)."""
    yield record
    try:
        copy = sanitised(record)
    except RecursionError:
        pass
    else:
        yield copy
    yield without_tags(record)
