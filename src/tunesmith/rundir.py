"""The run directory: the interface between commands. Files are written atomically; status goes last."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from tunesmith.errors import TunesmithError

Status = Literal["running", "completed", "failed", "interrupted"]


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_dir(output_dir: Path, name: str) -> Path:
    """Create ``output_dir/<name>-<timestamp>`` (suffixed when two runs start in the same second)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = output_dir / (f"{name}-{stamp}" if attempt == 1 else f"{name}-{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise TunesmithError(f"--output-dir {output_dir}: cannot create a new run directory")


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float as None: JSON has no NaN, and a browser's JSON.parse refuses it.

    An undefined score (BLEU with no text turn to compare) is NaN in memory; run.json records it as null.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


class RunRecord:
    """run.json of one run directory: versions, hashes, status and timings."""

    def __init__(self, run_dir: Path, writable: bool = True) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "run.json"
        self.writable = writable  # in a multi-process run only rank 0 writes
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def update(self, **fields: Any) -> None:
        """Merge fields and rewrite run.json atomically."""
        self.data.update(fields)
        if self.writable:
            atomic_write(self.path, json.dumps(json_safe(self.data), indent=2, default=str) + "\n")

    def set_status(self, status: Status, **fields: Any) -> None:
        """Record a status change (and when it happened)."""
        self.update(status=status, status_at=now_iso(), **fields)

    @property
    def status(self) -> str | None:
        """The recorded status, or None for a directory that is not a run."""
        return self.data.get("status")


def environment_versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced."""
    import peft
    import torch
    import transformers

    from tunesmith import __version__

    return {
        "tunesmith": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "platform": platform.platform(),
    }


class Stopwatch:
    """Named wall-clock timings (seconds) for run.json."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def measure(self, name: str) -> _Lap:
        """``with watch.measure("train"): ...`` records the block's duration."""
        return _Lap(self, name)


class _Lap:
    def __init__(self, watch: Stopwatch, name: str) -> None:
        self.watch, self.name = watch, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.watch.timings[self.name] = round(self.watch.timings.get(self.name, 0.0) + elapsed, 3)


def read_run(run_dir: Path, require_completed: bool = True) -> tuple[Any, RunRecord]:
    """The resolved config and record of a run directory; clear errors for anything else."""
    from tunesmith.config import read_yaml_mapping, validate_config

    if not run_dir.is_dir():
        raise TunesmithError(f"{run_dir}: run directory not found")
    record = RunRecord(run_dir)
    if record.status is None or not (run_dir / "config.yaml").is_file():
        raise TunesmithError(f"{run_dir}: not a tunesmith run directory (no run.json / config.yaml)")
    if require_completed and record.status != "completed":
        raise TunesmithError(
            f"{run_dir}: run is {record.status}, not completed",
            hint=f"resume it with: tunesmith train CONFIG --resume {run_dir}",
        )
    config = validate_config(read_yaml_mapping(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    return config, record
