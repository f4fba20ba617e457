from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.rundir import RunRecord, atomic_write, new_run_dir, read_run


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    atomic_write(tmp_path / "a" / "run.json", "{}")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["run.json"]


def test_run_dirs_are_unique_within_a_second(tmp_path: Path) -> None:
    first, second = new_run_dir(tmp_path, "x"), new_run_dir(tmp_path, "x")
    assert first != second and first.is_dir() and second.is_dir()


def test_status_is_recorded_and_reread(tmp_path: Path) -> None:
    RunRecord(tmp_path).set_status("running")
    assert RunRecord(tmp_path).status == "running"


def test_read_run_refuses_what_is_not_a_completed_run(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match="run directory not found"):
        read_run(tmp_path / "missing")
    with pytest.raises(TunesmithError, match="not a tunesmith run directory"):
        read_run(tmp_path)
    (tmp_path / "config.yaml").write_text("data: {train: a.csv, prompt: x, response: y}\n")
    RunRecord(tmp_path).set_status("interrupted")
    with pytest.raises(TunesmithError, match="run is interrupted, not completed .*--resume"):
        read_run(tmp_path)
