"""Turn ``model.name`` into something transformers can load, offline whenever possible."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from tunesmith.errors import TunesmithError
from tunesmith.models.embedded import EMBEDDED
from tunesmith.models.gguf import converted_gguf

Source = Literal["embedded", "gguf", "local", "hub", "run"]


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights are: a local directory, or a hub id with its revision."""

    name: str
    location: str
    source: Source
    revision: str | None = None

    @property
    def local_files_only(self) -> bool:
        """Whether loading must not touch the network."""
        return self.source != "hub" or _hub_offline()


def resolve_model(name: str, revision: str | None = None) -> ResolvedModel:
    """Resolve an embedded alias, a .gguf file, a local directory or a hub id."""
    if name in EMBEDDED:
        path = EMBEDDED[name].locate()
        location = converted_gguf(path) if path.suffix == ".gguf" else path
        return ResolvedModel(name, str(location), "embedded")
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise TunesmithError(f"model.name {name!r}: GGUF file not found")
        return ResolvedModel(name, str(converted_gguf(path.resolve())), "gguf")
    if path.is_dir() and (path / "run.json").is_file():
        return _resolve_run(name, path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TunesmithError(
                f"model.name {name!r}: directory has no config.json",
                hint="point at a Hugging Face model directory (save_pretrained output)",
            )
        return ResolvedModel(name, str(path.resolve()), "local")
    if _looks_like_path(name):
        raise TunesmithError(f"model.name {name!r}: no such file or directory")
    return _resolve_hub_id(name, revision)


def _resolve_run(name: str, run_dir: Path) -> ResolvedModel:
    # A completed run is a starting point (SFT, then preference tuning): its tuned weights in model/.
    from tunesmith.rundir import RunRecord

    status = RunRecord(run_dir).status
    if status != "completed":
        raise TunesmithError(
            f"model.name {name!r}: the run is {status}, not completed; only a completed run can be a starting point",
            hint=f"finish it first: tunesmith train CONFIG --resume {run_dir}",
        )
    if not (run_dir / "model").is_dir():
        raise TunesmithError(f"model.name {name!r}: the run has no model/ directory")
    return ResolvedModel(name, str((run_dir / "model").resolve()), "run")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.sep + os.sep in name


def _resolve_hub_id(repo_id: str, revision: str | None) -> ResolvedModel:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        cached = snapshot_download(repo_id, revision=revision, local_files_only=True)
        return ResolvedModel(repo_id, cached, "local", revision)
    except HFValidationError as err:
        known = ", ".join(EMBEDDED)
        raise TunesmithError(
            f"model.name {repo_id!r}: not an embedded alias ({known}), a local path or a valid hub id"
        ) from err
    except LocalEntryNotFoundError:
        pass
    if _hub_offline() or not _hub_reachable():
        why = "HF_HUB_OFFLINE is set" if _hub_offline() else "the Hugging Face hub cannot be reached"
        raise TunesmithError(
            f"model.name {repo_id!r}: {why} and the model is not in the local cache",
            hint=f"download it where you are online (hf download {repo_id} --local-dir DIR), "
            "then set model.name to DIR",
        )
    return ResolvedModel(repo_id, repo_id, "hub", revision)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(timeout: float = 3.0) -> bool:
    # A quick TCP probe: without it, an unreachable hub costs ~30 s of library retries before failing.
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname or "", endpoint.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True
