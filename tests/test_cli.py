"""The command line's entry point: output that cannot be written, for every command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COSTTRACK = [sys.executable, "-m", "costtrack"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["prices"], ["prices", "show", "gpt-4o-mini"], ["stats"]])
def test_output_that_cannot_be_written_is_one_line_exit_2(args, tmp_path):
    """`costtrack stats > /dev/full` (a full disk) ended in a 50-line traceback, exit 1 (review finding): for
    `alerts check` exit 1 means a threshold was crossed."""
    database = ["--database-url", f"sqlite:///{tmp_path}/none.db"] if args == ["stats"] else []
    with open("/dev/full", "w") as full:
        run = subprocess.run([*COSTTRACK, *args, *database], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    if args == ["stats"]:  # an empty database: its own one-line error, which is not the output
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and "no records" in run.stderr.lower()
        return
    assert run.returncode == 2, run.stderr
    assert run.stderr == "costtrack: error: No space left on device (writing the output)\n"


@pytest.mark.parametrize("args", [[], ["prices"], ["db"], ["report"]])
def test_a_groups_help_into_a_closed_pipe_stops_quietly(args):
    """`costtrack prices | true`: the help a bare group prints met the closed pipe in a traceback (review finding)."""
    process = subprocess.Popen([*COSTTRACK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before anything is written
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 1 and stderr == b""


@pytest.mark.parametrize("args", [["stats"], ["prices", "show", "gpt-4o-mini"], ["export"]])
def test_a_closed_standard_output_is_one_line_exit_2(args, tmp_path, make_record):
    """`costtrack stats >&-` (Python then has no sys.stdout) ended in a 45-line traceback, exit 1; `prices show` exited
    0 having printed nothing (review finding)."""
    import costtrack

    tracker = costtrack.Tracker(f"sqlite:///{tmp_path}/records.db", budgets=[])
    tracker.add(make_record())
    tracker.close()
    database = [] if args[0] == "prices" else ["--database-url", f"sqlite:///{tmp_path}/records.db"]
    run = subprocess.run([*COSTTRACK, *args, *database], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         timeout=120, pass_fds=(), preexec_fn=lambda: os.close(1))  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "standard output is closed" in run.stderr


@pytest.mark.parametrize("args", [
    ["stats", "--since", ""], ["export", "--since="], ["report", "audit", "--until", " "], ["stats", "--month", ""],
    ["alerts", "check", "--at", ""], ["alerts", "check", "--thresholds", ""], ["cache", "clear", "--redis-url", ""],
    ["simulate", "--since", ""],
])  # fmt: skip
def test_an_option_given_an_empty_value_is_an_error_not_left_out(args, tmp_path, capsys):
    """`export --since "$UNSET"` exported everything, `cache clear --redis-url ''` cleared the local Redis: an empty
    value was read as the option left out (CLI review)."""
    from costtrack.cli import run

    assert run([*args, "--database-url", f"sqlite:///{tmp_path}/none.db"]) == 2
    err = capsys.readouterr().err
    option = next(a for a in args if a.startswith("--")).rstrip("=")
    assert err.count("\n") == 1 and f"{option} is empty" in err, err


def test_a_flag_and_a_value_that_is_empty_on_purpose_are_left_to_the_command(capsys):
    """Only options that take a value are checked: `--json ''` is an extra argument, as before."""
    from costtrack.cli import run

    assert run(["prices", "show", "gpt-4o-mini", "--json", ""]) == 2
    assert "unexpected extra argument" in capsys.readouterr().err


def test_a_command_that_prints_nothing_runs_with_its_standard_output_closed(tmp_path):
    """The first fix refused every command with a closed output, `export -o FILE` too (diff review): only a write fails."""
    run = subprocess.run([*COSTTRACK, "prices", "cost", "gpt-4o-mini", "--input-tokens", "10", "--output-tokens", "1",
                          "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                         preexec_fn=lambda: os.close(1))  # fmt: skip
    assert run.returncode == 2 and "standard output is closed" in run.stderr  # it prints: one line, exit 2
    db = tmp_path / "x.db"
    made = subprocess.run([*COSTTRACK, "db", "upgrade", "--database-url", f"sqlite:///{db}"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0
    out = tmp_path / "out.csv"
    # An empty database: export says so on stderr (exit 2) without touching stdout; the point is no refusal up front.
    run = subprocess.run([*COSTTRACK, "export", "-o", str(out), "--database-url", f"sqlite:///{db}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                         preexec_fn=lambda: os.close(1))  # fmt: skip
    assert "standard output is closed" not in run.stderr and "no records" in run.stderr
