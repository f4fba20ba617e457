"""Drive the real `tunesmith` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TUNESMITH_CACHE": str(cache), "COLUMNS": "200"}


@pytest.fixture()
def tunesmith(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run `tunesmith ARGS...` and return the completed process (text mode, never raises on exit code)."""
    env = cli_env(tmp_path / "cache")

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tunesmith.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=timeout,
        )

    run.env = env  # type: ignore[attr-defined]
    return run
