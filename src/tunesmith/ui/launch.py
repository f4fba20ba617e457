"""Training, resuming and evaluating as processes of their own, detached from the UI.

Each is ``python -m tunesmith.cli ...`` with an argument list (never a shell), in a new session, so closing
the UI (Ctrl-C in its terminal, or killing it) reaches neither the process nor its children. Stop sends
SIGINT, exactly what Ctrl-C does: the trainer finishes the step, saves a checkpoint and marks the run
interrupted. What was launched is recorded in the run directory (``ui-<kind>.json``, log in ``<kind>.log``),
so a UI opened later still knows it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.rundir import atomic_write, new_run_dir

# Processes this UI started and has not reaped yet (a finished child stays a zombie until waited for).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def launch_train(config_yaml: str, name: str, runs_dir: Path, cwd: Path) -> Path:
    """Write the config into a new run directory and start ``tunesmith train`` on it; returns the run directory."""
    run_dir = new_run_dir(runs_dir, name)
    config_path = run_dir / "launch.yaml"
    atomic_write(config_path, config_yaml)
    command = ["train", str(config_path), "--output-dir", str(runs_dir), "--run-dir", str(run_dir)]
    spawn(command, run_dir, "train", cwd)
    return run_dir


def resume_train(run_dir: Path, runs_dir: Path, cwd: Path) -> None:
    """Continue an interrupted (or failed) run from its last checkpoint, with its own resolved config."""
    status = read_status(run_dir)
    if status["state"] not in ("interrupted", "failed") or not status["resumable"]:
        raise TunesmithError(f"run {run_dir.name}: is {status['state']}; only an interrupted or failed run resumes")
    command = ["train", str(run_dir / "config.yaml"), "--resume", str(run_dir), "--output-dir", str(runs_dir)]
    spawn(command, run_dir, "train", cwd)


def start_eval(run_dir: Path, cwd: Path, data: Path | None = None) -> None:
    """Run ``tunesmith eval`` on a completed run (base vs tuned, samples) in the background.

    ``data``: evaluate on this table (rendered with the run's templates) instead of its held-out split.
    """
    if read_status(run_dir)["state"] != "completed":
        raise TunesmithError(f"run {run_dir.name}: only a completed run can be evaluated")
    if process_alive(_launched_pid(run_dir, "eval")):
        raise TunesmithError(f"run {run_dir.name}: an evaluation is already running")
    (run_dir / "eval.log").unlink(missing_ok=True)  # this evaluation's messages only
    spawn(["eval", str(run_dir), *(["--data", str(data)] if data is not None else [])], run_dir, "eval", cwd)


EXPORT_QUANTS = ("f16", "bf16", "q8_0", "q4_0")


def start_export(run_dir: Path, to: str, quant: str | None, cwd: Path) -> None:
    """Run ``tunesmith export`` on a completed run in the background (output under ``run_dir/export/``)."""
    from tunesmith.export import KINDS

    if to not in KINDS:
        raise TunesmithError(f"to: {to!r}: choose one of {', '.join(KINDS)}")
    if quant is not None and quant not in EXPORT_QUANTS:
        raise TunesmithError(f"quant: {quant!r}: choose one of {', '.join(EXPORT_QUANTS)}")
    if read_status(run_dir)["state"] != "completed":
        raise TunesmithError(f"run {run_dir.name}: only a completed run can be exported")
    if process_alive(_launched_pid(run_dir, "export")):
        raise TunesmithError(f"run {run_dir.name}: an export is already running")
    (run_dir / "export.log").unlink(missing_ok=True)  # this export's messages only
    spawn(["export", str(run_dir), "--to", to, *(["--quant", quant] if quant and to != "merged" else [])], run_dir,
          "export", cwd)  # fmt: skip


def export_status(run_dir: Path) -> dict[str, Any]:
    """Whether an export runs, its error if the last one failed, and the folders exported so far (with sizes)."""
    running = process_alive(_launched_pid(run_dir, "export"))
    log = log_tail(run_dir / "export.log", 40)
    error = last_error_line(run_dir / "export.log") if not running and "error:" in log else None
    folders = []
    for folder in sorted((run_dir / "export").glob("*")) if (run_dir / "export").is_dir() else []:
        files = [(f.relative_to(folder).as_posix(), f.stat().st_size) for f in sorted(folder.rglob("*")) if f.is_file()]
        folders.append({"name": folder.name, "files": files})
    return {"running": running, "error": error, "folders": folders}


def spawn(arguments: list[str], run_dir: Path, kind: str, cwd: Path) -> int:
    """Start ``tunesmith ARGUMENTS`` detached; its output goes to ``run_dir/<kind>.log``."""
    command = [sys.executable, "-m", "tunesmith.cli", *arguments]
    with (run_dir / f"{kind}.log").open("ab") as log:
        process = subprocess.Popen(  # an argument list: nothing from a form reaches a shell
            command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    _CHILDREN[process.pid] = process
    record = {"pid": process.pid, "command": command, "started": time.time()}
    atomic_write(run_dir / f"ui-{kind}.json", json.dumps(record) + "\n")
    return process.pid


def stop_run(run_dir: Path) -> None:
    """Ask a running training to stop as Ctrl-C does (SIGINT): finish the step, checkpoint, mark interrupted.

    The request is recorded (``ui-stop.json``, for that process) so the page says "stopping" at once, while
    the trainer finishes what it is in the middle of. Asked again once it is stopping, it aborts at once, as
    a second Ctrl-C does: the run is interrupted at its last checkpoint.
    """
    pid = training_pid(run_dir)
    if pid is None:
        raise TunesmithError(f"run {run_dir.name}: not running")
    atomic_write(run_dir / "ui-stop.json", json.dumps({"pid": pid, "requested_at": time.time()}) + "\n")
    os.kill(pid, signal.SIGINT)


def stop_requested(run_dir: Path, pid: int | None) -> bool:
    """Whether Stop was clicked for the training process ``pid`` (a resumed run is a new process)."""
    return pid is not None and _read_json(run_dir / "ui-stop.json").get("pid") == pid


def training_pid(run_dir: Path) -> int | None:
    """The live training process of a run, if any (checked to be a tunesmith process, not a reused pid)."""
    record = _read_json(run_dir / "run.json")
    for pid in (_launched_pid(run_dir, "train"), record.get("pid")):
        if isinstance(pid, int) and process_alive(pid) and _is_tunesmith(pid):
            return pid
    return None


def process_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live process (children this UI started are reaped first)."""
    if pid is None:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def read_status(run_dir: Path) -> dict[str, Any]:
    """What a run is doing: ``state`` (starting, running, stopping, completed, failed, interrupted), error, eval."""
    record = _read_json(run_dir / "run.json")
    pid = training_pid(run_dir)
    alive = pid is not None
    state = str(record.get("status") or ("starting" if alive else "failed"))
    if state in ("interrupted", "failed") and alive:
        state = "running"  # resumed: the new process has not rewritten run.json yet
    error = record.get("error") if state == "failed" else None
    if state == "running" and not alive:
        state, error = "failed", "the training process is gone (killed?); resume continues from the last checkpoint"
    if state == "failed" and not error:
        error = last_error_line(run_dir / "train.log") or "the training process ended without writing run.json"
    if state in ("running", "starting") and stop_requested(run_dir, pid):
        state = "stopping"
    evaluating = process_alive(_launched_pid(run_dir, "eval"))
    eval_error = None if evaluating or (run_dir / "eval.json").is_file() else _eval_failure(run_dir)
    return {
        "state": state,
        "error": error,
        "evaluating": evaluating,
        "eval_error": eval_error,
        "alive": alive,
        "pid": pid,
        "resumable": bool(record) and not alive,  # --resume needs the run.json training writes once it starts
    }


def last_error_line(log: Path) -> str | None:
    """The CLI's one-line error (``error: ...``) from a log, else its last line."""
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return None
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("error:")]
    found = errors or lines
    return found[-1] if found else None


def log_tail(log: Path, lines: int = 15) -> str:
    """The end of a process log (progress bars' carriage returns turned into lines)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def _eval_failure(run_dir: Path) -> str | None:
    if not (run_dir / "ui-eval.json").is_file():
        return None
    return last_error_line(run_dir / "eval.log") or "the evaluation ended without writing eval.json"


def _launched_pid(run_dir: Path, kind: str) -> int | None:
    pid = _read_json(run_dir / f"ui-{kind}.json").get("pid")
    return pid if isinstance(pid, int) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _is_tunesmith(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the recorded pid
    return b"tunesmith" in command


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
