"""``tunesmith train --nproc N``: start N training processes with torchrun, data parallel.

The launcher checks the config and the data, warms the tokenised cache (so every rank reads the same
cache instead of tokenising N times), makes the run directory, then runs ``torch.distributed.run`` with
the same ``tunesmith train`` command and ``--run-dir``. If the workers die without saying so, run.json is
set to failed, so a crashed run never looks completed; when the launcher was asked to stop, it is set to
interrupted instead (torchrun itself exits with code 1 whenever it is stopped by a signal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig, load_config
from tunesmith.console import say
from tunesmith.rundir import RunRecord, new_run_dir


@dataclass(frozen=True)
class Topology:
    """Where the processes run: N per machine, M machines, this machine's rank, the rendezvous address."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None


def launch(config_path: Path, overrides: list[str], output_dir: Path, resume: Path | None, topology: Topology) -> int:
    """Run the config on ``topology.nproc`` local processes (times ``nnodes`` machines); return the exit code."""
    from tunesmith.train.distributed import check_engine, free_port

    cfg = load_config(config_path, overrides)
    check_engine(cfg)
    _warm_token_cache(cfg)
    run_dir = resume or (new_run_dir(output_dir, cfg.name) if topology.node_rank == 0 else None)
    port = topology.master_port or free_port()
    command = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={topology.nproc}", f"--nnodes={topology.nnodes}", f"--node-rank={topology.node_rank}",
        f"--master-addr={topology.master_addr}", f"--master-port={port}",
        f"--shutdown-timeout={_shutdown_timeout()}",
        "-m", "tunesmith.cli", "train", str(config_path), "--output-dir", str(output_dir),
        *[arg for item in overrides for arg in ("--set", item)],
    ]  # fmt: skip
    if resume is not None:
        command += ["--resume", str(resume)]
    elif run_dir is not None:
        command += ["--run-dir", str(run_dir)]
    say(f"launch: {topology.nproc} processes x {topology.nnodes} machines (rendezvous {topology.master_addr}:{port})")
    code, stopped = _run_forwarding_signals(command)
    if run_dir is not None:
        _never_left_running(run_dir, code, stopped)
    # torchrun answers any stop signal with exit code 1; a stop the user asked for reads as Ctrl-C does.
    return 130 if stopped and code != 0 else code


# Seconds torchrun gives the workers after a stop signal before it kills them. Its own default (30 s) is
# shorter than a stop can take: the step in progress, an evaluation under way and the checkpoint come first,
# and on a loaded machine or a real model that is minutes. A second Ctrl-C still aborts the workers at once.
SHUTDOWN_TIMEOUT_SECONDS = 600


def _shutdown_timeout() -> int:
    # torchrun's own variable, so a user (or a test) can still choose it.
    return int(os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT_SECONDS))


def _warm_token_cache(cfg: RunConfig) -> None:
    from tunesmith.console import quiet_libraries
    from tunesmith.data.forms import prepare_form_data, read_data
    from tunesmith.models import load_tokenizer, resolve_model

    quiet_libraries()
    tokenizer = load_tokenizer(resolve_model(cfg.model.name, cfg.model.revision), cfg.model)
    prepare_form_data(cfg, read_data(cfg), tokenizer)  # the data form's own reader (conversations, pairs, ...)


def _never_left_running(run_dir: Path, code: int, stopped: bool) -> None:
    # A worker killed outright (OOM, SIGKILL, torchrun's shutdown timeout) cannot record its own end; the
    # launcher does it for it. After a requested stop the run is interrupted, not failed, whatever the exit
    # code: rank 0 may have been killed while saving, and the last complete checkpoint still resumes it.
    from tunesmith.train.runner import last_complete_checkpoint

    record = RunRecord(run_dir)
    if record.status != "running" or code == 0:
        return
    if not (stopped or code in (130, -2)):
        record.set_status("failed", error=f"workers exited with code {code}")
        return
    resumable = last_complete_checkpoint(run_dir / "checkpoints") is not None
    hint = {"hint": f"resume with --resume {run_dir}"} if resumable else {}
    record.set_status("interrupted", stopped_by="launcher", workers_exit_code=code, **hint)


def _run_forwarding_signals(command: list[str]) -> tuple[int, bool]:
    """Run torchrun; return its exit code and whether the launcher was asked to stop meanwhile.

    Ctrl-C reaches the whole process group already; a SIGTERM sent to the launcher alone is passed on.
    Either way the launcher stays alive until the workers have saved their checkpoint and stopped.
    """
    child = subprocess.Popen(command)
    asked: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        asked.append(signum)

    def on_sigterm(signum: int, frame: Any) -> None:
        asked.append(signum)
        child.send_signal(signal.SIGTERM)

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm),
    }
    try:
        return child.wait(), bool(asked)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
