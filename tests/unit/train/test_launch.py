"""The multi-process launcher's side of a stop: what it records when the workers could not, and its exit code."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from tunesmith.rundir import RunRecord
from tunesmith.train.launch import _never_left_running, _run_forwarding_signals

# Stands in for torchrun: it answers SIGTERM with exit code 1, as torchrun's SignalException does.
# It touches the file named by its argument once its handler is in place.
TORCHRUN_LIKE = (
    "import pathlib, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))\n"
    "pathlib.Path(sys.argv[1]).touch()\n"
    "time.sleep(60)\n"
)


def running_run(tmp_path: Path, checkpoint: bool) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    RunRecord(run).set_status("running")
    if checkpoint:
        (run / "checkpoints" / "checkpoint-3").mkdir(parents=True)
        (run / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    return run


def test_a_stop_the_launcher_passed_on_is_seen_even_though_torchrun_exits_1(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    command = [sys.executable, "-c", TORCHRUN_LIKE, str(ready)]
    before = signal.getsignal(signal.SIGTERM)

    def terminate_when_ready() -> None:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # what `kill LAUNCHER_PID` does; the launcher passes it on

    threading.Thread(target=terminate_when_ready, daemon=True).start()
    assert _run_forwarding_signals(command) == (1, True)
    assert signal.getsignal(signal.SIGTERM) is before, "the launcher's own handler is gone once torchrun ended"


def test_without_a_stop_a_plain_exit_is_not_taken_for_one() -> None:
    assert _run_forwarding_signals([sys.executable, "-c", "raise SystemExit(1)"]) == (1, False)


def test_workers_killed_while_stopping_leave_an_interrupted_resumable_run(tmp_path: Path) -> None:
    run = running_run(tmp_path, checkpoint=True)
    _never_left_running(run, 1, stopped=True)
    record = RunRecord(run)
    assert record.status == "interrupted" and record.data["hint"] == f"resume with --resume {run}"
    assert record.data["workers_exit_code"] == 1 and "error" not in record.data


def test_workers_that_die_unasked_leave_a_failed_run(tmp_path: Path) -> None:
    run = running_run(tmp_path, checkpoint=True)
    _never_left_running(run, 1, stopped=False)
    assert RunRecord(run).status == "failed" and RunRecord(run).data["error"] == "workers exited with code 1"


def test_a_status_the_workers_wrote_is_left_alone(tmp_path: Path) -> None:
    run = running_run(tmp_path, checkpoint=False)
    RunRecord(run).set_status("interrupted", hint="theirs")
    _never_left_running(run, 1, stopped=True)
    assert RunRecord(run).data["hint"] == "theirs"
