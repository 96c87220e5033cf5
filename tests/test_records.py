"""CallRecord ids: UUIDv7, unique whatever the app does with the global `random`, and across forks."""

from __future__ import annotations

import multiprocessing
import random
import sys
import uuid

import pytest

from costtrack.records import new_id


def _random_part(record_id: str) -> int:
    return int(record_id, 16) & ((1 << 80) - 1)


def test_ids_are_uuid7_and_time_ordered():
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    stamps = [int(i, 16) >> 80 for i in ids]
    assert stamps == sorted(stamps)
    assert all(len(i) == 32 and i == f"{int(i, 16):032x}" for i in ids)  # 32 lowercase hex digits, zero-padded


def test_an_app_seeding_the_global_random_does_not_repeat_ids():
    # Workers that each call random.seed(0) drew the same "random" bits, and their rows were dropped as duplicates.
    random.seed(0)
    first = [_random_part(new_id()) for _ in range(5)]
    random.seed(0)
    again = [_random_part(new_id()) for _ in range(5)]
    assert not set(first) & set(again)


def _child_ids(conn) -> None:
    conn.send([_random_part(new_id()) for _ in range(5)])
    conn.close()


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX only")
def test_a_forked_child_draws_other_ids_than_its_parent():
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_child_ids, args=(child_end,))
    child.start()
    theirs = parent_end.recv()
    child.join()
    ours = [_random_part(new_id()) for _ in range(5)]
    assert not set(ours) & set(theirs)
