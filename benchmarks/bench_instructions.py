"""Instructions per call (callgrind), bare vs wrapped: a repeatable measure on a machine whose timings drift.

    python benchmarks/bench_instructions.py [--calls 200] [--stream]

Runs itself under `valgrind --tool=callgrind` (needs valgrind, its headers and gcc) and
counts, per call, the instructions of: a bare SDK call; a wrapped one on the calling thread
(the writer replaced by a list, so only the app's side is counted); building its record
(`Call.to_record`: parsing, hashing, pricing); and inserting it into SQLite (batches of
--calls). It prints each and the added share of the bare call. Instructions are not time:
they miss cache misses and the parallel writer thread's interference, and under valgrind
SHA-256 runs without the CPU's SHA instructions (so hashing counts high). The phases run with the
garbage collector off, so a count does not depend on where its collections happen to fall
(bench_gc.py counts those). Use it to compare changes; bench_wrap.py gives the times.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

_CONTROL_C = """#include <valgrind/callgrind.h>
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""
PHASES = ("bare", "wrapped", "prepare", "store")


def child(calls: int, stream: bool, control: str) -> None:
    """The measured run, under callgrind: one stats dump per phase."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import httpx2
    import openai

    import costtrack
    from costtrack.store.database import ensure_schema, make_engine
    from costtrack.store.sql import insert_records

    from bench_wrap import handler, one_call

    cg = ctypes.CDLL(control)

    class Keep:
        on_records = None

        def __init__(self) -> None:
            self.calls: list[object] = []

        def submit(self, item: object) -> None:
            self.calls.append(item)

        def flush(self, timeout: float | None = None) -> bool:
            return True

        def close(self) -> None:
            pass

    keep = Keep()
    tmp = tempfile.mkdtemp()
    tracker = costtrack.Tracker(f"sqlite:///{tmp}/unused.db", writer=keep, budgets=[])  # type: ignore[arg-type]
    bare = openai.OpenAI(api_key="sk-bench", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
    wrapped = tracker.wrap(bare)
    engine = make_engine(f"sqlite:///{tmp}/bench.db")
    ensure_schema(engine)
    for _ in range(calls):  # warm up imports, price cache, and the statements of a batch of `calls` records
        one_call(bare, stream)
        one_call(wrapped, stream)
    insert_records(engine, [call.to_record() for call in keep.calls])  # type: ignore[attr-defined]
    keep.calls.clear()
    records: list[object] = []

    def phase(name: str, work: object) -> None:
        # Without the collector: where its collections fall among a few hundred calls moved a phase's count
        # by 20,000 instructions a call from one build to the next. bench_gc.py counts them instead.
        gc.collect()
        gc.disable()
        cg.cg_zero()
        work()  # type: ignore[operator]
        cg.cg_dump(name.encode())
        gc.enable()

    phase("bare", lambda: [one_call(bare, stream) for _ in range(calls)])
    phase("wrapped", lambda: [one_call(wrapped, stream) for _ in range(calls)])
    phase("prepare", lambda: records.extend(call.to_record() for call in keep.calls[:calls]))  # type: ignore[attr-defined]
    phase("store", lambda: insert_records(engine, records))  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per phase (default 200)")
    parser.add_argument("--stream", action="store_true", help="streaming chat completions")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.calls, args.stream, args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "cgctl.c"
        source.write_text(_CONTROL_C)
        library = Path(tmp) / "cgctl.so"
        try:
            subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            sys.exit(f"bench_instructions: cannot build the callgrind control library ({exc}); install gcc and valgrind")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.%p", sys.executable, __file__,
                   "--calls", str(args.calls), "--child", str(library)] + (["--stream"] if args.stream else [])  # fmt: skip
        run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        if run.returncode != 0:
            sys.exit(f"bench_instructions: the run under valgrind failed:\n{run.stderr[-2000:]}")
        counts: dict[str, int] = {}
        for dump in Path(tmp).glob("cg.*.*"):
            text = dump.read_text(errors="replace")
            name = re.search(r"^desc: Trigger: Client Request: (\S+)", text, re.M)
            total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if name and total:
                counts[name.group(1)] = int(total.group(1)) // args.calls
    missing = [p for p in PHASES if p not in counts]
    if missing:
        sys.exit(f"bench_instructions: no counts for {', '.join(missing)}")
    kind = "streaming" if args.stream else "non-streaming"
    bare = counts["bare"]
    app = counts["wrapped"] - bare
    added = app + counts["prepare"] + counts["store"]
    print(f"{kind}: instructions per call, {args.calls} calls per phase")
    print(f"  bare SDK call           {bare:>10,}")
    print(f"  calling thread, added   {app:>10,}  ({app / bare:.2%})")
    print(f"  writer: build record    {counts['prepare']:>10,}  ({counts['prepare'] / bare:.2%})")
    print(f"  writer: SQLite insert   {counts['store']:>10,}  ({counts['store'] / bare:.2%})")
    print(f"  added in all            {added:>10,}  ({added / bare:.2%})")


if __name__ == "__main__":
    main()
